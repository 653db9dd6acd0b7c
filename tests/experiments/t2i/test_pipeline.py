"""End to end: the paper-scale code path on tiny local components, the digits preset at
reduced size, exact resume, interruption, and run-directory errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from deltahall.experiments.t2i import run
from deltahall.experiments.t2i.results import read_metrics


def _cfg(preset: str = "digits", **kw):
    """The T2IConfig preset ``preset`` with ``kw`` (run options by their names go into ``run``)."""
    from deltahall.experiments.t2i import T2IConfig as _C

    return _C.from_preset(preset, **kw)


TINY_DIGITS = dict(
    train_steps=4,
    checkpoint_every=2,
    num_samples=6,
    sample_batch_size=4,
    inference_steps=2,
    progress=False,
    device="cpu",
    grid_max=4,
)


def _nan_free(rows: list[dict]) -> list[dict]:
    """Rows with NaN replaced by None, so equal rows compare equal."""
    return [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
        for r in rows
    ]


def _no_pickles(root: Path) -> None:
    bad = [
        p
        for p in root.rglob("*")
        if p.suffix in (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
    ]
    assert not bad, bad


def test_paper_scale_code_path_end_to_end_from_local_folders(
    tmp_path: Path, sd_assets: dict[str, Path]
) -> None:
    cfg = _cfg(
        preset="afhq-sd15",
        model=str(sd_assets["model"]),
        embedder=str(sd_assets["clip"]),
        data=str(sd_assets["data"]),
        resolution=16,
        train_steps=2,
        checkpoint_every=1,
        checkpoints_total_limit=1,
        train_batch_size=4,
        num_samples=4,
        sample_batch_size=3,
        inference_steps=2,
        pca_dim=4,
        n_components=1,
        holdout_fraction=0.5,
        percentile=20.0,  # 20 images per class: 6 calibration images each, enough for alpha = 0.2
        mixed_precision="no",
        device="cpu",
        out_dir=tmp_path / "run",
        progress=False,
    )
    res = run(cfg)
    root = res.run_dir
    assert res.steps == [0, 1, 2]
    assert [r["prompt"] for r in res.metrics if r["step"] == 2] == list(cfg.prompts)
    assert all(r["K"] == 4 and 0.0 <= r["rate"] <= 1.0 for r in res.metrics)
    assert _nan_free(read_metrics(root)) == _nan_free(
        sorted(res.metrics, key=lambda r: (r["step"], r["prompt_index"]))
    )
    # checkpoints: total limit 1 keeps the last; UNet weights only (VAE and text encoder frozen, not saved)
    assert sorted(p.name for p in root.glob("checkpoint-*")) == ["checkpoint-2"]
    weights = load_file(str(root / "checkpoint-2" / "model.safetensors"))
    base = load_file(str(sd_assets["model"] / "unet" / "diffusion_pytorch_model.safetensors"))
    assert set(weights) == set(base)
    assert any(not torch.equal(weights[k], base[k]) for k in base)  # trained
    assert (root / "checkpoint-2" / "optimizer.safetensors").is_file()
    # the instrument, per-sample files, figures, manifest
    inst = json.loads((root / "instrument.json").read_text())
    assert (
        inst["classes"] == ["cat", "dog"]
        and inst["alpha"] == 0.2
        and inst["split"]["calibration"] == [6, 6]
    )
    with np.load(root / "samples" / "step-000002.npz", allow_pickle=False) as f:
        assert f["embeddings_p0"].shape == (4, 16)
        thr = np.asarray(inst["per_rule"]["conformal"]["thresholds"])
        inside = (f["log_densities_p0"].astype(np.float64) >= thr).any(axis=1)
        assert inside.tolist() == _inside(
            root, 2, 0
        )  # float32 log-densities: no sample sits on a threshold here
    assert {p.name for p in res.figures} >= {
        "fig5_rate_and_loss.png",
        "fig6_rate_per_prompt.png",
        "fig7_calibration.png",
    }
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["config"]["preset"] == "afhq-sd15" and manifest["seed"] == 0
    _no_pickles(root)


def _inside(root: Path, step: int, prompt: int) -> list[bool]:
    from deltahall.io.rundir import read_csv

    return [
        r["inside"] == "True"
        for r in read_csv(root / "samples" / f"step-{step:06d}.csv")
        if int(r["prompt_index"]) == prompt
    ]


def test_digits_reduced_run_writes_every_output(digits_dir: Path) -> None:
    res = run(_cfg(out_dir=digits_dir, **TINY_DIGITS))
    assert res.steps == [0, 2, 4]
    assert len(res.metrics) == 3 * 4
    losses = [r["loss"] for r in res.losses]
    assert [r["step"] for r in res.losses] == [1, 2, 3, 4] and all(np.isfinite(losses))
    step4 = [r for r in res.metrics if r["step"] == 4]
    assert all(
        r["loss"] == pytest.approx(np.mean(losses[2:])) for r in step4
    )  # mean over the interval
    assert all(np.isnan(r["loss"]) for r in res.metrics if r["step"] == 0)
    inst = json.loads((digits_dir / "instrument.json").read_text())
    floors = {rule: v["floor"] for rule, v in inst["per_rule"].items()}
    for r in res.metrics:
        assert r["n_outside"] == round(r["rate"] * r["K"])
        assert r["mean_embedding_inside"] == (r["mean_embedding_score"] >= 0)
        assert (
            r["rate_ci_low"] <= r["rate"] <= r["rate_ci_high"] and r["calibration"] == "conformal"
        )
        assert r["alpha"] == 0.1 and 0.0 <= r["excess_p_value"] <= 1.0
        # one fit per run: the same floor in every row, the one instrument.json records
        for rule, suffix in (("conformal", ""), ("percentile", "_percentile")):
            assert (
                r[f"floor{suffix}"],
                r[f"floor{suffix}_ci_low"],
                r[f"floor{suffix}_ci_high"],
            ) == (floors[rule]["rate"], *floors[rule]["ci"])
        assert r["n_outside_percentile"] == round(r["rate_percentile"] * r["K"])
    # measure.json: the final step through the same instrument, so its per-prompt rates are the final rows'
    final = json.loads((digits_dir / "measure.json").read_text())
    assert final["step"] == 4 and set(final["per_rule"]) == {"conformal", "percentile"}
    for rule, suffix in (("conformal", ""), ("percentile", "_percentile")):
        pp = {p["prompt"]: p for p in final["per_rule"][rule]["per_prompt"]}
        for r in (r for r in res.metrics if r["step"] == 4):
            assert (pp[r["prompt"]]["rate"], pp[r["prompt"]]["n_flagged"]) == (
                r[f"rate{suffix}"],
                r[f"n_outside{suffix}"],
            )
    assert {b["method"] for b in final["baselines"]} >= {
        "HCDR (conformal)",
        "HCDR (percentile)",
        "mahalanobis",
        "lof",
    }
    assert final["selection"]["rate_after"] == 0.0
    flagged = [r for r in res.metrics if r["n_outside"]]
    assert flagged and all(
        (digits_dir / "grids" / f"step-{r['step']:06d}_p{r['prompt_index']}.png").is_file()
        for r in flagged
    )
    summary = json.loads((digits_dir / "result.json").read_text())
    assert summary["final_step"] == 4 and set(summary["final"]) == set(_cfg().prompts)
    assert (digits_dir / "figures" / "rate_vs_percentile.png").is_file()
    _no_pickles(digits_dir)
    from deltahall.experiments.t2i.report import build_section

    html = "".join(build_section(digits_dir).parts)
    assert "Figure 5 claim on this run: interval loss" in html and "plumbing" not in html.lower()
    assert (
        "one rate per rule" in html
        and "paper&#x27;s percentile rule" in html
        and "Selection (keep" in html
    )
    assert (
        html.count("data:image/png;base64") >= 4 and "not evidence about Stable Diffusion" in html
    )


def test_resume_continues_exactly_like_an_uninterrupted_run(
    tmp_path: Path, digits_embedder_dir: Path
) -> None:
    import shutil

    dirs = {}
    for name in ("straight", "resumed"):
        dirs[name] = tmp_path / name
        shutil.copytree(digits_embedder_dir, dirs[name] / "embedder")
    base = dict(TINY_DIGITS, eval_initial=False, num_samples=4)
    run(_cfg(out_dir=dirs["straight"], **base))
    run(_cfg(out_dir=dirs["resumed"], **dict(base, train_steps=2)))
    res = run(_cfg(out_dir=dirs["resumed"], resume_from_checkpoint="latest", **base))
    assert res.steps == [2, 4]
    a = load_file(str(dirs["straight"] / "checkpoint-4" / "model.safetensors"))
    b = load_file(str(dirs["resumed"] / "checkpoint-4" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _nan_free(read_metrics(dirs["straight"])) == _nan_free(read_metrics(dirs["resumed"]))


def test_keyboard_interrupt_leaves_a_usable_checkpoint(
    digits_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import deltahall.experiments.t2i.train as train_mod

    real = train_mod.evaluate

    def interrupt_at_4(ctx, step, loss):  # type: ignore[no-untyped-def]
        if step == 4:
            raise KeyboardInterrupt
        return real(ctx, step, loss)

    cfg = _cfg(
        out_dir=digits_dir, **dict(TINY_DIGITS, train_steps=6, eval_initial=False, num_samples=4)
    )
    monkeypatch.setattr(train_mod, "evaluate", interrupt_at_4)
    with pytest.raises(KeyboardInterrupt):
        run(cfg)
    assert (digits_dir / "checkpoint-4" / "state.json").is_file()
    assert sorted({r["step"] for r in read_metrics(digits_dir)}) == [2]
    monkeypatch.setattr(train_mod, "evaluate", real)
    before = {q: q.read_bytes() for q in digits_dir.rglob("*") if q.is_file()}
    with pytest.raises(
        ValueError, match="already holds a run; pass --resume-from-checkpoint latest"
    ):
        run(cfg)  # a fresh run never overwrites a run
    assert {q: q.read_bytes() for q in digits_dir.rglob("*") if q.is_file()} == before
    res = run(cfg.replace(resume_from_checkpoint="latest"))
    assert res.steps == [2, 4, 6]


def test_resume_errors(digits_dir: Path) -> None:
    cfg = _cfg(
        out_dir=digits_dir, **dict(TINY_DIGITS, train_steps=2, eval_initial=False, num_samples=4)
    )
    run(cfg)
    with pytest.raises(
        FileNotFoundError, match="`resume_from_checkpoint` must be 'latest' or a checkpoint folder"
    ):
        run(cfg.replace(resume_from_checkpoint=str(digits_dir / "checkpoint-99")))
    with pytest.raises(
        ValueError, match=r"settings differ in 1 key: learning_rate: 0.001 -> 0.0001"
    ):
        run(cfg.replace(resume_from_checkpoint="latest", learning_rate=1e-4))
