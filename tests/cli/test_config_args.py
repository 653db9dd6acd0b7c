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
    args = _parser().parse_args(
        ["--n", "5", "--mode", "ce", "--deltas", "0.5", "0.7", "--flag", "true", "--out", "o"]
    )
    cfg = config_from_args(Cfg, args)
    assert cfg.n == 5 and cfg.mode == "ce" and cfg.deltas == (0.5, 0.7) and cfg.flag is True
    assert cfg.out == Path("o")


def test_bad_choice_exits():
    with pytest.raises(SystemExit):
        _parser().parse_args(["--mode", "mae"])


def test_config_file_then_cli_wins(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("n = 3\nlr = 0.5\ndeltas = [0.3]\n")
    cfg = config_from_args(Cfg, _parser().parse_args(["--n", "4"]), config_file=f)
    assert (cfg.n, cfg.lr, cfg.deltas) == (4, 0.5, (0.3,))


def test_unknown_key_in_config_file_is_an_error(tmp_path):
    f = tmp_path / "c.json"
    f.write_text('{"nn": 3}')
    with pytest.raises(ValueError, match=r"unknown key 'nn'"):
        config_from_args(Cfg, _parser().parse_args([]), config_file=f)


def test_missing_config_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        config_from_args(Cfg, _parser().parse_args([]), config_file=tmp_path / "nope.toml")


def test_post_init_error_propagates():
    with pytest.raises(ValueError, match="`n` must be >= 1; got 0"):
        config_from_args(Cfg, _parser().parse_args(["--n", "0"]))


@dataclass(frozen=True)
class Inner:
    out_dir: Path | None = None
    threads: int | None = None


@dataclass(frozen=True)
class Outer:
    lr: float = 0.1
    run: Inner = field(default_factory=lambda: Inner(threads=1))


def _outer_parser():
    p = argparse.ArgumentParser()
    add_dataclass_arguments(p, Outer)
    return p


def test_nested_dataclass_fields_are_flat_options():
    args = _outer_parser().parse_args(["--out-dir", "o", "--lr", "0.5"])
    cfg = config_from_args(Outer, args)
    assert cfg == Outer(lr=0.5, run=Inner(out_dir=Path("o"), threads=1))
    assert config_from_args(Outer, _outer_parser().parse_args([])) == Outer()


def test_nested_values_from_a_file_flat_or_in_a_table(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('lr = 0.2\nout_dir = "a"\n')
    assert config_from_args(
        Outer, _outer_parser().parse_args([]), config_file=f
    ).run.out_dir == Path("a")
    f.write_text("[run]\nthreads = 3\n")
    cfg = config_from_args(Outer, _outer_parser().parse_args(["--threads", "4"]), config_file=f)
    assert cfg.run.threads == 4  # the command line wins
    f.write_text("[run]\nthreadz = 3\n")
    with pytest.raises(ValueError, match=r"table \[run\] has unknown keys \['threadz'\]"):
        config_from_args(Outer, _outer_parser().parse_args([]), config_file=f)


@pytest.mark.parametrize(
    ("name", "data", "match"),
    [
        ("bad.toml", b"lr = = 1\n", r"bad.toml: invalid TOML"),
        ("bad.json", b'{"lr": 1,\n "n": }', r"bad.json: invalid JSON at line 2"),
        ("bin.toml", b"lr = 1\n\xff\xfe\n", r"bin.toml is not UTF-8 text \(line 2"),
        ("list.json", b"[1, 2]", r"must hold a table/object"),
    ],
)
def test_config_file_errors_name_the_file_and_line(tmp_path, name, data, match):
    f = tmp_path / name
    f.write_bytes(data)
    with pytest.raises(ValueError, match=match):
        config_from_args(Cfg, _parser().parse_args([]), config_file=f)


def test_presets_are_the_base_then_file_then_command_line(tmp_path):
    """preset < config file < command line, on a toy config with a preset registry."""
    from deltahall._registry import UnknownName
    from deltahall.experiments._config import ExperimentConfig, presets_for

    @dataclass(frozen=True)
    class P(ExperimentConfig):
        n: int = 2
        lr: float = 1e-3

    P.PRESETS = presets_for(P, "toy", {"big": {"n": 9, "lr": 0.5}})
    p = argparse.ArgumentParser()
    add_dataclass_arguments(p, P)
    assert config_from_args(P, p.parse_args([])) == P()
    assert config_from_args(P, p.parse_args(["--preset", "big"])) == P(n=9, lr=0.5)
    f = tmp_path / "c.toml"
    f.write_text('preset = "big"\nn = 4\n')
    assert config_from_args(P, p.parse_args([]), config_file=f) == P(n=4, lr=0.5)
    args = p.parse_args(["--preset", "default", "--n", "5"])
    assert config_from_args(P, args, config_file=f) == P(n=5, lr=1e-3)
    f.write_text('preset = "huge"\n')
    with pytest.raises(
        UnknownName, match=r"unknown preset 'huge' for toy; known presets: default, big"
    ):
        config_from_args(P, p.parse_args([]), config_file=f)
    with pytest.raises(SystemExit):
        p.parse_args(["--preset", "huge"])
