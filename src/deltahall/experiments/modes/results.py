"""``result.json``, the figures and the plain verdicts of a ``modes`` run directory.

This module reads run directories (``metrics.csv``, ``samples/step-<k>.csv``, ``truth.json``,
``manifest.json``) and hands arrays to :mod:`deltahall.plotting.modes`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from deltahall.experiments.modes import detectors as det
from deltahall.experiments.modes import truth as tr
from deltahall.io import RunDir
from deltahall.io.rundir import read_csv, read_run_json

#: The peer's published headline (Aithal et al. 2024, Section 5): trajectory-variance filtering
#: removes over 95 % of hallucinations while keeping 96 % of in-support samples.
PEER_HEADLINE = {"removed": 0.95, "kept": 0.96}


def read_result(run_dir: str | Path) -> dict[str, Any]:
    """``result.json`` of a finished ``modes run`` (config, truth, metrics, verdicts).

    Raises
    ------
    FileNotFoundError
        If ``run_dir`` has no ``result.json``.
    """
    if not (Path(run_dir) / "result.json").is_file():
        raise FileNotFoundError(
            f"no result.json in {run_dir}; is it a finished `modes run` directory?"
        )
    out: dict[str, Any] = read_run_json(run_dir, "result.json")
    return out


def read_samples(run_dir: str | Path, step: int) -> dict[str, np.ndarray]:
    """``samples/step-<step>.csv`` as float/int/bool arrays (``x``: ``(K, d)``)."""
    rows = read_csv(Path(run_dir) / "samples" / f"step-{step}.csv")
    if not rows:
        raise FileNotFoundError(f"no samples in {run_dir}/samples/step-{step}.csv")
    cols = ["x0"] + (["x1"] if "x1" in rows[0] else [])
    return {
        "x": np.array([[float(r[c]) for c in cols] for r in rows], dtype=np.float64),
        "truth_hallucinated": np.array([r["truth_hallucinated"] == "1" for r in rows]),
        "true_max_log_density": np.array([float(r["true_max_log_density"]) for r in rows]),
        "trajectory_variance": np.array([float(r["trajectory_variance"]) for r in rows]),
        "p_value": np.array([float(r["p_value"]) for r in rows]),
    }


def verdicts(history: list[dict[str, Any]], table: dict[str, Any]) -> dict[str, str]:
    """(a) does the true rate go to zero as the loss falls; (b) which detector finds the truth best."""
    trained = [r for r in history if int(r["step"]) > 0]
    if len(trained) < 2:
        a = "too few trained checkpoints to judge"
    else:
        f, last = trained[0], trained[-1]
        falls = last["val_loss"] < f["val_loss"]
        zero = last["true_hi"] < 1e-3
        a = (
            f"validation loss {f['val_loss']:.4f} (step {f['step']}) -> {last['val_loss']:.4f} (step {last['step']}), "
            f"{'falls' if falls else 'does not fall'}; true rate {f['true_rate']:.4f} -> {last['true_rate']:.4f} "
            f"(95% CI {last['true_lo']:.4f}-{last['true_hi']:.4f}): "
            + (
                "it reaches zero"
                if zero
                else "it does NOT go to zero (the interval excludes 0)"
                if last["true_lo"] > 0
                else "zero is inside the interval, but the rate is not shown to vanish"
            )
        )
    aucs = {
        k: table[k]["auroc"] for k in det.DETECTORS if table.get(k, {}).get("auroc") is not None
    }
    if aucs:
        best = max(aucs, key=lambda k: aucs[k])
        b = (
            f"best AUROC against the truth at the last checkpoint: {best} ({aucs[best]:.4f}); "
            + ", ".join(f"{k} {v:.4f}" for k, v in aucs.items())
        )
    else:
        b = "no true hallucination (or no in-support sample) at the last checkpoint: AUROC undefined"
    return {"a_rate_to_zero": a, "b_best_detector": b}


def write_results(
    rd: RunDir,
    config: Any,
    history: list[dict[str, Any]],
    tables: dict[str, Any],
    recursive: list[dict[str, Any]],
) -> dict[str, Any]:
    """Write ``recursive.csv`` and the figures; returns ``result.json``'s body (the shared runner,
    :func:`deltahall.experiments._run.execute`, writes it once the run's body has returned)."""
    last = str(history[-1]["step"])
    table = tables[last]
    if recursive:
        rd.write_csv("recursive.csv", recursive)
    headline = {"peer_variance": PEER_HEADLINE, "keep_in_support": config.keep_in_support}
    for k in det.DETECTORS:
        headline[k] = {
            "removed_at_keep": table[k]["removed_at_keep"],
            "kept_at_remove95": table[k]["kept_at_remove95"],
        }
    body = {
        "experiment": "modes",
        "config": {k: v for k, v in config.to_dict().items() if k != "run"},
        "truth": json.loads(rd.path("truth.json").read_text(encoding="utf-8")),
        "final_step": int(last),
        "final": history[-1],
        "detectors_final": table,
        "headline_final": headline,
        "metrics": history,
        "detectors": tables,
        "recursive": recursive,
        "verdicts": verdicts(history, table),
    }
    save_figures(rd.root)
    return body


def save_figures(run_dir: str | Path | RunDir) -> list[Path]:
    """Draw the samples, rate and recursive figures of a run directory into ``figures/``.

    Every figure is drawn before the first is written (atomically), through ``run_dir`` when it
    is a :class:`~deltahall.io.rundir.RunDir` (as ``modes report`` gives it), else a new one.
    """
    from deltahall.plotting import pyplot
    from deltahall.plotting.modes import rate_figure, recursive_figure, samples_figure

    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    root = rd.root
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    cfg = manifest["config"]
    data = cfg["data"]
    t = json.loads((root / "truth.json").read_text(encoding="utf-8"))
    metrics = [{k: _num(v) for k, v in r.items()} for r in read_csv(root / "metrics.csv")]
    plt = pyplot()
    drawn: list[tuple[str, Any]] = []  # every figure drawn before the first write
    mix = tr.mixture(data)
    if data == "2d":
        xs = np.linspace(-5.0, 5.0, 401)
        gx, gy = np.meshgrid(xs, xs)
        logd = np.max(mix.log_component_pdf(np.c_[gx.ravel(), gy.ravel()]), axis=1).reshape(
            gx.shape
        )
        grid: tuple[np.ndarray, ...] = (xs, xs)
    else:
        xs = np.linspace(0.0, 4.0, 2001)
        logd = np.max(mix.log_component_pdf(xs[:, None]), axis=1)
        grid = (xs,)
    steps = [int(r["step"]) for r in metrics]
    for s in sorted({steps[-1], *(steps[len(steps) // 2 : len(steps) // 2 + 1])}):
        smp = read_samples(root, s)
        fig = samples_figure(
            smp["x"],
            smp["truth_hallucinated"],
            grid=grid,
            log_density=logd,
            log_delta=float(t["log_delta"]),
            title=f"step {s}: K={len(smp['x'])} samples; dashed: density = δ "
            f"({t['delta_sigmas']:g} sd from a mode); max-component log-density contours",
        )
        drawn.append((f"samples_step-{s}", fig))
    fig = rate_figure(
        metrics,
        alpha=float(cfg["alpha"]),
        title=f"Figure 5 with the truth ({data}, preset {cfg['preset']})",
    )
    drawn.append(("rate_vs_steps", fig))
    rec = root / "recursive.csv"
    if rec.is_file():
        rows = [{k: _num(v) for k, v in r.items()} for r in read_csv(rec)]
        fig = recursive_figure(
            rows,
            n_components=mix.n_states,
            title="Recursive training: each generation trained on the previous one's filtered samples",
        )
        drawn.append(("recursive", fig))
    out: list[Path] = []
    for name, fig in drawn:
        out += rd.save_figure(fig, name)[:1]
        plt.close(fig)
    return out


def _num(v: str) -> Any:
    if v == "":
        return None
    try:
        f = float(v)
    except ValueError:
        return v
    return int(f) if f.is_integer() and "." not in v and "e" not in v.lower() else f
