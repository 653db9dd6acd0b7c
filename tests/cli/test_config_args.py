import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from deltahall.cli.config_args import add_dataclass_arguments, config_from_args


@dataclass(frozen=True)
class Cfg:
    n: int = field(default=2, metadata={"help": "number of states"})
    lr: float = 1e-3
    mode: Literal["mse", "ce"] = "mse"
    deltas: tuple[float, ...] = (0.1, 0.2)
    flag: bool = False
    out: Path = Path("runs/x")
    name: str | None = None

    def __post_init__(self):
        if self.n < 1:
            raise ValueError(f"`n` must be >= 1; got {self.n}.")


def _parser():
    p = argparse.ArgumentParser()
    add_dataclass_arguments(p, Cfg)
    return p


def test_defaults_live_in_dataclass():
    cfg = config_from_args(Cfg, _parser().parse_args([]))
    assert cfg == Cfg()


def test_cli_values_are_typed():
    args = _parser().parse_args(["--n", "5", "--mode", "ce", "--deltas", "0.5", "0.7", "--flag", "true", "--out", "o"])
    cfg = config_from_args(Cfg, args)
    assert cfg.n == 5 and cfg.mode == "ce" and cfg.deltas == (0.5, 0.7) and cfg.flag is True
    assert cfg.out == Path("o")


def test_bad_choice_exits():
    with pytest.raises(SystemExit):
        _parser().parse_args(["--mode", "mae"])


def test_config_file_then_cli_wins(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('n = 3\nlr = 0.5\ndeltas = [0.3]\n')
    cfg = config_from_args(Cfg, _parser().parse_args(["--n", "4"]), config_file=f)
    assert (cfg.n, cfg.lr, cfg.deltas) == (4, 0.5, (0.3,))


def test_unknown_key_in_config_file_is_an_error(tmp_path):
    f = tmp_path / "c.json"
    f.write_text('{"nn": 3}')
    with pytest.raises(ValueError, match=r"unknown keys \['nn'\]"):
        config_from_args(Cfg, _parser().parse_args([]), config_file=f)


def test_missing_config_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        config_from_args(Cfg, _parser().parse_args([]), config_file=tmp_path / "nope.toml")


def test_post_init_error_propagates():
    with pytest.raises(ValueError, match="`n` must be >= 1; got 0"):
        config_from_args(Cfg, _parser().parse_args(["--n", "0"]))
