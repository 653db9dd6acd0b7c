import json

import pytest

from deltahall.experiments._run import RunOptions
from deltahall.experiments.coinflip.config import CoinFlipConfig
from deltahall.experiments.coinflip.report import section_from_sweep
from deltahall.experiments.coinflip.sweep import SweepConfig, round_seed, run_sweep
from deltahall.io import RunDir
from deltahall.io.rundir import read_csv


def _sweep(tmp_path, **kw):
    base = CoinFlipConfig(m=120, epochs=4, batch_size=32, n_layers=1, d_model=8, n_heads=2, d_ff=16)
    resume = kw.pop("resume", None)
    args = dict(
        ns=(2,),
        ms=(120,),
        rounds=2,
        objectives=("mse", "ce"),
        workers=0,
        n_permutations=99,
        base=base,
        run=RunOptions(out_dir=tmp_path / "s", resume_from_checkpoint=resume, progress=False),
    )
    args.update(kw)
    return SweepConfig(**args)


def test_sweep_runs_rounds_with_own_seeds_and_writes_tables(tmp_path):
    cfg = _sweep(tmp_path)
    res = run_sweep(cfg)
    assert len(res.runs) == 4
    seeds = {(r["objective"], r["seed"]) for r in res.runs}
    assert seeds == {(o, round_seed(0, 2, 120, r)) for o in ("mse", "ce") for r in range(2)}
    assert round_seed(0, 2, 120, 0) != round_seed(0, 2, 120, 1)
    pooled = read_csv(cfg.out_dir / "correlations.csv")
    assert {(r["objective"], r["probability"]) for r in pooled} == {
        (o, p) for o in ("mse", "ce") for p in ("cp_est", "cp_ceil")
    }
    assert sorted({r["points"] for r in pooled}) == ["4", "8"]  # all epochs; epochs 3-4
    sec = section_from_sweep(RunDir(cfg.out_dir), n_permutations=99)
    html = "".join(sec.parts)
    assert html.count("data:image/png;base64") == 4 and "Pearson" in html
    # rerunning skips finished runs; another config into the same dir is refused
    with pytest.raises(ValueError, match="already holds a run"):
        run_sweep(cfg)
    again = run_sweep(_sweep(tmp_path, resume="latest"))
    assert [r["train_mse"] for r in again.runs] == [r["train_mse"] for r in res.runs]
    timing = json.loads((cfg.out_dir / "sweep_timing.json").read_text())
    assert [s["runs_trained"] for s in timing["sessions"]] == [4, 0]
    with pytest.raises(ValueError, match="settings differ in 1 key: rounds: 2 -> 3"):
        run_sweep(_sweep(tmp_path, rounds=3, resume="latest"))


def test_sweep_config_errors():
    with pytest.raises(ValueError, match="`objectives` must be one of"):
        SweepConfig(objectives=("mae",))
    with pytest.raises(ValueError, match="`m` must be large enough"):
        SweepConfig(ms=(2,))
