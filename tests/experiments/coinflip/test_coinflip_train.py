import pytest

import deltahall.experiments.coinflip.train as train_mod
from deltahall.experiments._run import RunOptions
from deltahall.experiments.coinflip.evaluate import metric_columns
from deltahall.experiments.coinflip.train import batch_loss
from deltahall.experiments.coinflip.train import run as _run
from deltahall.io.rundir import read_csv


def run(cfg, out_dir=None, *, resume_from=None):
    """Run ``cfg`` with its run options set (the config carries them; the manifest records them)."""
    import dataclasses

    return _run(
        dataclasses.replace(
            cfg, run=RunOptions(out_dir=out_dir, resume_from_checkpoint=resume_from)
        )
    )


torch = pytest.importorskip("torch")


@pytest.mark.parametrize("objective", ["mse", "ce"])
def test_tiny_run_writes_every_column(tmp_path, tiny, objective):
    cfg = tiny(objective=objective)
    res = run(cfg, tmp_path / "r")
    rows = read_csv(tmp_path / "r" / "metrics.csv")
    cols = metric_columns(cfg)
    assert len(rows) == 2 and list(rows[0]) == cols
    assert all(rows[i][c] != "" for i in range(2) for c in cols)
    for name in (
        "manifest.json",
        "reference.json",
        "result.json",
        "predictions.csv",
        "timing.json",
    ):
        assert (tmp_path / "r" / name).is_file()
    f = res.final
    assert f["cp_raw"] == 0.0 and f["hall_raw_d0.1"] == 1.0  # a real-valued output is never a count
    assert 0 < f["cp_est"] <= res.reference["cp_mode"] + 1e-12
    assert f["train_mse"] >= 0 and "hall_est_d0.25" in cols


def test_two_runs_with_one_seed_give_identical_csvs(tmp_path, tiny):
    cfg = tiny(
        seed=3, dropout=0.1
    )  # dropout on: the per-sample path and dropout RNG are seeded too
    run(cfg, tmp_path / "a")
    run(cfg, tmp_path / "b")
    for name in ("metrics.csv", "predictions.csv"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    run(tiny(seed=4, dropout=0.1), tmp_path / "c")
    assert (tmp_path / "a" / "metrics.csv").read_text() != (
        tmp_path / "c" / "metrics.csv"
    ).read_text()


@pytest.mark.parametrize("objective,dropout", [("mse", 0.0), ("ce", 0.1)])
def test_resumed_run_equals_uninterrupted_run(tmp_path, tiny, monkeypatch, objective, dropout):
    cfg = tiny(epochs=3, objective=objective, dropout=dropout)
    run(cfg, tmp_path / "full")
    real_save = train_mod.save_checkpoint

    def save_then_die(*args, **kw):
        path = real_save(*args, **kw)
        if args[1] == 2:
            raise KeyboardInterrupt  # killed right after epoch 2's checkpoint
        return path

    monkeypatch.setattr(train_mod, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "cut")
    monkeypatch.setattr(train_mod, "save_checkpoint", real_save)
    assert len(read_csv(tmp_path / "cut" / "metrics.csv")) == 2
    res = run(cfg, tmp_path / "cut", resume_from="latest")
    assert len(res.epoch_seconds) == 1  # only epoch 3 was trained again
    for name in ("metrics.csv", "predictions.csv"):
        assert (tmp_path / "full" / name).read_text() == (tmp_path / "cut" / name).read_text()


def test_resume_refuses_other_config_and_silent_overwrite(tmp_path, tiny):
    run(tiny(), tmp_path / "r")
    with pytest.raises(ValueError, match=r"settings differ in 1 key: lr: 0.001 -> 0.01"):
        run(tiny(lr=1e-2), tmp_path / "r", resume_from="latest")
    with pytest.raises(ValueError, match="already holds a run"):
        run(tiny(), tmp_path / "r")
    with pytest.raises(FileNotFoundError, match="resume_from_checkpoint"):
        run(tiny(), tmp_path / "r", resume_from=str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="needs `out_dir`"):
        run(tiny(), None, resume_from="latest")


@pytest.mark.parametrize("objective", ["mse", "ce"])
def test_grouped_loss_equals_per_sample_loss_and_gradient(tiny, objective):
    from deltahall.experiments.coinflip.model import build_model

    cfg = tiny(n=3, objective=objective)
    sets = torch.tensor([[0, 1, 2], [0, 2, 4], [1, 3, 5], [2, 3, 4]])
    idx = torch.tensor([0, 1, 1, 3, 0, 0, 2, 1, 3, 3])
    y = torch.tensor([0, 2, 1, 3, 1, 0, 2, 2, 1, 3])
    grads = []
    for grouped in (False, True):
        m = build_model(cfg, init_seed=0)
        loss = batch_loss(m, sets, idx, y, objective, 3, grouped=grouped)
        loss.backward()
        grads.append((float(loss.detach()), [p.grad.clone() for p in m.parameters()]))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-5)
    for g0, g1 in zip(grads[0][1], grads[1][1], strict=True):
        torch.testing.assert_close(g0, g1, rtol=1e-4, atol=1e-6)


def test_authors_bugs_change_scoring_and_estimate(tiny):
    ours = run(tiny(m=400))
    theirs = run(tiny(m=400, authors_bugs=("scoring", "ceil")))
    assert ours.reference["cp_bayes_round"] != theirs.reference["cp_bayes_round"]
    assert theirs.final["cp_est"] == theirs.final["cp_ceil"]
