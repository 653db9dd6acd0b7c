"""coinflip/results.py is the one module of the experiment that reads run folders back; the run
options every coin-flip config carries by default (issue 13)."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import pytest

import deltahall.experiments.coinflip as coinflip_pkg
import deltahall.experiments.coinflip.train as train_mod
from deltahall._validation import BadInput
from deltahall.experiments._run import RunOptions
from deltahall.experiments.coinflip.config import PRESETS, CoinFlipConfig
from deltahall.experiments.coinflip.results import (
    is_finished,
    load_runs,
    read_epoch_timing,
    read_sweep_timing,
)
from deltahall.experiments.coinflip.sweep import SweepConfig, run_sweep

#: Calls that read a file (as tests/test_layers.py's FILE_READS counts them).
_READS = {"open", "read_csv", "read_json", "read_run_json", "read_text", "read_bytes", "load"}


def _reads(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else getattr(f, "attr", "")
            if name in _READS:
                out.append(f"{path.name}:{node.lineno} {name}()")
    return out


def test_results_is_the_only_coinflip_module_that_reads_files() -> None:
    folder = Path(coinflip_pkg.__file__).parent
    readers = {p.name for p in folder.glob("*.py") if _reads(p)}
    assert readers == {"results.py"}, [r for p in folder.glob("*.py") for r in _reads(p)]


def test_readers_of_a_folder_without_the_files(tmp_path: Path) -> None:
    assert read_epoch_timing(tmp_path) == {}
    assert read_sweep_timing(tmp_path) == {"sessions": []}
    assert not is_finished(tmp_path) and load_runs(tmp_path) == []
    assert list(tmp_path.iterdir()) == []  # a reader creates nothing


def test_timing_of_a_run_and_a_sweep_read_back(tmp_path: Path, tiny) -> None:
    cfg = SweepConfig(
        ns=(2,),
        ms=(120,),
        rounds=1,
        objectives=("mse",),
        workers=0,
        n_permutations=9,
        base=tiny(m=120),
        run=RunOptions(out_dir=tmp_path / "s", progress=False),
    )
    run_sweep(cfg)
    (child,) = sorted((tmp_path / "s" / "runs").iterdir())
    assert is_finished(child) and sorted(read_epoch_timing(child)) == ["1", "2"]
    timing = read_sweep_timing(tmp_path / "s")
    assert [s["runs_trained"] for s in timing["sessions"]] == [1]
    (tmp_path / "s" / "sweep_timing.json").write_text("{nope", encoding="utf-8")
    with pytest.raises(ValueError, match="sweep_timing.json"):
        read_sweep_timing(tmp_path / "s")
    (child / "result.json").write_text(json.dumps({"x": 1}), encoding="utf-8")
    with pytest.raises(BadInput, match="not a coin-flip result"):
        load_runs(tmp_path / "s")


# --------------------------------------------------------------------------- run options
def test_the_configs_state_their_run_options() -> None:
    # No second default: the thread count is the config's (the first preset's), not the runner's.
    assert CoinFlipConfig().run == RunOptions(out_dir=None, threads=1)
    assert PRESETS.get("paper") == CoinFlipConfig()
    assert not hasattr(train_mod.EXPERIMENT, "threads")  # threads come from config.run only
    assert SweepConfig().run == RunOptions(out_dir=Path("runs/coinflip_sweep"), threads=1)
    assert not hasattr(RunOptions, "with_defaults")
    with pytest.raises(BadInput, match=r"`out_dir` must be the sweep's folder; got None"):
        SweepConfig(run=RunOptions(out_dir=None))


def test_threads_come_from_the_run_options(monkeypatch: pytest.MonkeyPatch, tiny) -> None:
    torch = pytest.importorskip("torch")
    seen: list[int] = []
    body = train_mod.EXPERIMENT.body

    def spy(config, opened):
        seen.append(torch.get_num_threads())
        return body(config, opened)

    monkeypatch.setattr(
        train_mod, "EXPERIMENT", dataclasses.replace(train_mod.EXPERIMENT, body=spy)
    )
    torch.set_num_threads(2)
    train_mod.run(tiny(epochs=1))  # the default: one thread
    train_mod.run(tiny(epochs=1).replace(threads=None))  # unset: torch's count, untouched
    assert seen == [1, 2] and torch.get_num_threads() == 2


def test_the_sweep_gives_its_runs_its_threads(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny
) -> None:
    seen: list[RunOptions] = []
    monkeypatch.setattr(train_mod, "run", lambda cfg: seen.append(cfg.run))
    for threads in (1, 3, None):
        seen.clear()
        run = RunOptions(out_dir=tmp_path / f"s{threads}", threads=threads, progress=False)
        cfg = SweepConfig(
            ns=(2,), ms=(120,), rounds=1, objectives=("mse",), workers=0, base=tiny(m=120), run=run
        )
        run_sweep(cfg)
        assert [r.threads for r in seen] == [threads]
        assert seen[0].out_dir == tmp_path / f"s{threads}" / "runs" / "mse_N2_M120_r0"
