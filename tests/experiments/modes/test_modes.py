"""The known-truth experiment ``deltahall modes``: truth column, tiny run, CLI, bad inputs, resume."""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import multivariate_normal

pytest.importorskip("torch")

from deltahall.experiments._run import RunOptions  # noqa: E402
from deltahall.experiments.modes import PRESETS, ModesConfig, run  # noqa: E402
from deltahall.experiments.modes import truth as tr  # noqa: E402

#: The tiny preset cut further, so that a whole run takes a few seconds in the default suite.
MICRO = dict(
    n_train=500,
    timesteps=20,
    width=16,
    batch_size=100,
    train_steps=20,
    checkpoint_every=10,
    num_samples=120,
    sample_batch_size=120,
    n_reference=1000,
    n_holdout=100,
    n_val=100,
    alpha=0.1,
    generations=2,
    strategies=("none", "hcdr"),
    recursive_train_steps=10,
    recursive_n_train=300,
)
MICRO_ARGS = [
    a
    for k, v in MICRO.items()
    for a in (
        [f"--{k.replace('_', '-')}", *map(str, v)]
        if isinstance(v, tuple)
        else [f"--{k.replace('_', '-')}", str(v)]
    )
]


def micro(out: Path, **changes: object) -> ModesConfig:
    return PRESETS["tiny"].replace(
        **{**MICRO, **changes}, run=RunOptions(out_dir=out, progress=False, threads=1)
    )


@pytest.fixture(scope="module")
def micro_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("modes") / "run"
    run(micro(out))
    return out


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_truth_column_equals_recomputation_from_csv_and_truth_json(micro_run: Path) -> None:
    t = json.loads((micro_run / "truth.json").read_text(encoding="utf-8"))
    files = sorted((micro_run / "samples").glob("step-*.csv"))
    assert [f.name for f in files] == ["step-0.csv", "step-10.csv", "step-20.csv"]
    n_hall = 0
    for f in files:
        rows = _read(f)
        assert len(rows) == 120
        x = np.array([[float(r["x0"]), float(r["x1"])] for r in rows])
        logf = np.stack(
            [
                multivariate_normal(mean=m, cov=s**2 * np.eye(2)).logpdf(x)
                for m, s in zip(t["means"], t["stds"], strict=True)
            ],
            axis=1,
        )
        best = logf.max(axis=1)
        expected = best <= math.log(t["delta"])
        got = np.array([r["truth_hallucinated"] == "1" for r in rows])
        clear = np.abs(best - math.log(t["delta"])) > 1e-9  # nothing sits on the boundary to 1e-9
        assert clear.all()
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_allclose(
            [float(r["true_max_log_density"]) for r in rows], best, rtol=1e-10, atol=1e-8
        )
        n_hall += int(got.sum())
    assert 0 < n_hall < 3 * 120  # both classes occur
    assert len(t["means"]) == 25 and t["stds"] == [0.05] * 25
    assert math.isclose(
        math.log(t["delta"]), tr.mixture("2d").states[0].log_peak - 8.0, rel_tol=1e-12
    )


def test_micro_run_outputs(micro_run: Path) -> None:
    res = json.loads((micro_run / "result.json").read_text(encoding="utf-8"))
    assert [m["step"] for m in res["metrics"]] == [0, 10, 20]
    untrained = res["metrics"][0]
    assert untrained["true_rate"] > 0.9  # a random network does not land on 25 sharp modes
    for m in res["metrics"]:
        assert m["true_lo"] <= m["true_rate"] <= m["true_hi"]
    assert {r["strategy"] for r in res["recursive"]} == {"none", "hcdr"}
    assert [r["generation"] for r in res["recursive"]] == [0, 1, 0, 1]
    assert set(res["verdicts"]) == {"a_rate_to_zero", "b_best_detector"}
    cols = _read(micro_run / "samples" / "step-20.csv")[0].keys()
    assert {
        "x0",
        "x1",
        "truth_hallucinated",
        "true_max_log_density",
        "p_value",
        "flagged",
        "trajectory_variance",
    } <= set(cols)
    assert (micro_run / "figures" / "rate_vs_steps.png").is_file()
    assert (micro_run / "figures" / "recursive.png").is_file()
    json.loads((micro_run / "result.json").read_text(encoding="utf-8"), parse_constant=_refuse)


def _refuse(name: str) -> None:
    raise AssertionError(f"non-strict JSON constant {name}")


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"delta_sigmas": 1.0}, "`delta_sigmas` must give δ <= 1"),
        ({"checkpoint_every": 7}, "`checkpoint_every` must divide `train_steps`"),
        ({"data": "3d"}, "`data` must be one of"),
        ({"strategies": ("none", "best")}, "`strategies` must be one of"),
        ({"n_reference": 100}, "`n_reference` must give every state at least"),
        ({"variance_window": 500}, "`variance_window` must be <= `timesteps`"),
        ({"alpha": 0.0}, "`alpha` must be in"),
    ],
)
def test_bad_inputs_are_one_line_errors(
    tmp_path: Path, changes: dict[str, object], match: str
) -> None:
    with pytest.raises(ValueError, match=match) as info:
        micro(tmp_path / "bad", **changes)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "bad").exists()


def test_unknown_keys_refused() -> None:
    with pytest.raises(ValueError, match="unknown keys"):
        ModesConfig.from_dict({"n_train": 10, "epochs": 3})


def test_cpu_preset_is_a_complete_config() -> None:
    cpu = PRESETS["cpu"]
    assert (
        cpu.preset == "cpu"
        and cpu.generations == 5
        and cpu.strategies == ("none", "random", "variance", "hcdr")
    )
    assert ModesConfig.from_dict(cpu.to_dict()) == cpu


def _cli(argv: list[str]) -> int:
    from deltahall.cli import modes

    parser = argparse.ArgumentParser(prog="deltahall")
    sub = parser.add_subparsers(dest="command")
    modes.register(sub, "modes", "known truth")
    args = parser.parse_args(["modes", *argv])
    return int(args.handler(args))


def test_cli_run_and_report(
    tmp_path: Path, micro_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli"
    assert (
        _cli(
            [
                "run",
                "--preset",
                "tiny",
                "--out-dir",
                str(out),
                "--progress",
                "false",
                *MICRO_ARGS,
                "--data",
                "1d",
                "--n-reference",
                "400",
                "--generations",
                "1",
                "--eval-initial",
                "false",
                "--json",
            ]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    assert printed["final_step"] == 20 and printed["recursive"] == []
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["config"]["preset"] == "tiny" and manifest["config"]["width"] == 16
    assert manifest["config"]["data"] == "1d"
    assert "x1" not in _read(out / "samples" / "step-20.csv")[0]
    assert json.loads((out / "truth.json").read_text(encoding="utf-8"))["means"] == [
        [1.0],
        [2.0],
        [3.0],
    ]
    assert _cli(["report", "--run-dir", str(micro_run), "--out", str(tmp_path / "r.html")]) == 0
    assert "Known truth" in (tmp_path / "r.html").read_text(encoding="utf-8")
    with pytest.raises(ValueError, match="already holds a run"):
        _cli(["run", "--out-dir", str(out), "--progress", "false", *MICRO_ARGS])


_RUNNER = """
import sys
from pathlib import Path
from deltahall.experiments._run import RunOptions
from deltahall.experiments.modes import PRESETS
import json
changes = json.loads(sys.argv[2])
changes = {k: tuple(v) if isinstance(v, list) else v for k, v in changes.items()}
cfg = PRESETS["tiny"].replace(**changes, run=RunOptions(out_dir=Path(sys.argv[1]), progress=False, threads=1,
                              resume_from_checkpoint=sys.argv[3] or None))
from deltahall.experiments.modes import run
run(cfg)
"""


def _start(out: Path, resume: str = "") -> subprocess.Popen[bytes]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-c", _RUNNER, str(out), json.dumps(MICRO), resume],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _files(root: Path) -> dict[str, bytes]:
    skip = {"manifest.json", "timing.json", "derived.json"}  # derived.json records rebuilds
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
        and p.name not in skip
        and not p.name.startswith(".")
        and "figures" not in p.parts
        and "checkpoints" not in p.parts
    }


def test_sigkill_then_resume_is_byte_identical(tmp_path: Path, micro_run: Path) -> None:
    killed = tmp_path / "killed"
    proc = _start(killed)
    event = killed / "checkpoints" / "checkpoint-10"
    while not (event / "state.json").is_file():
        if proc.poll() is not None:
            pytest.fail(
                f"the run ended before checkpoint-10 appeared: {proc.stderr.read().decode() if proc.stderr else ''}"
            )
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "result.json").exists()
    resumed = _start(killed, "latest")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode() if resumed.stderr else ""
    assert _files(killed) == _files(micro_run)
    sessions = json.loads((killed / "manifest.json").read_text(encoding="utf-8"))["sessions"]
    assert [s["resumed_from"] is not None for s in sessions] == [False, True]
