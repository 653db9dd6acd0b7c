"""Figures 5-7 of Section 7.3 (text-to-image), drawn from a run directory's files.

- Figure 5: hallucination rate (mean over prompts, left axis) and training loss (right
  axis) against training steps.
- Figure 6: the rate of each prompt against steps; a red cross marks checkpoints where the
  mean embedding (the estimate :math:`A^*(X)`) falls outside the HCDR.
- Figure 7: per-state histograms of the held-out calibration log-densities with the
  thresholds (dashed), as in Appendix A.
- Extra: the final checkpoint's rate as a function of the threshold percentile.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deltahall.plotting import pyplot

GREEN, BLUE, RED = "#2a9d50", "#1f5fbf", "#d62728"


def _label(prompt: str) -> str:
    return f'"{prompt}"' if prompt else "(empty prompt: unconditional)"


def _by_step(metrics: Sequence[Mapping[str, Any]]) -> list[int]:
    return sorted({int(r["step"]) for r in metrics})


def _floor_line(ax: Any, floor: float | None) -> None:
    if floor is not None:
        ax.axhline(floor, ls=":", color="k", lw=1, label=f"real held-out images outside own region ({floor:.2f})")


def figure5(metrics: Sequence[Mapping[str, Any]], losses: Sequence[Mapping[str, Any]], *, floor: float | None = None,
            title: str = "") -> Any:
    """Rate (mean over prompts; green, left) and training loss (blue, right) vs steps.

    ``floor``: the fraction of real held-out images outside their own class's region
    (about the threshold percentile by construction), drawn dotted: a generator that
    reproduced the real distribution would sit near it, not at zero.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    steps = _by_step(metrics)
    rate = [np.mean([float(r["rate"]) for r in metrics if int(r["step"]) == s]) for s in steps]
    ax.plot(steps, rate, "o-", color=GREEN, label="hallucination rate (mean over prompts)")
    _floor_line(ax, floor)
    ax.set_xlabel("training step")
    ax.set_ylabel("hallucination rate", color=GREEN)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    if losses:
        x = np.array([int(r["step"]) for r in losses])
        y = np.array([float(r["loss"]) for r in losses])
        ax2.plot(x, y, color=BLUE, alpha=0.2, lw=0.8)
        ck = [(s, float(r["loss"])) for s in steps for r in metrics
              if int(r["step"]) == s and int(r["prompt_index"]) == 0 and not math.isnan(float(r["loss"]))]
        if ck:
            ax2.plot(*zip(*ck, strict=True), "s-", color=BLUE, label="training loss (mean over interval)")
    ax2.set_ylabel("training loss", color=BLUE)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper right")
    ax.set_title(title or "Figure 5: hallucination rate and training loss", fontsize=10)
    fig.tight_layout()
    return fig


def figure6(metrics: Sequence[Mapping[str, Any]], *, floor: float | None = None, title: str = "") -> Any:
    """One panel per prompt: rate vs steps; red crosses where the mean embedding is outside."""
    plt = pyplot()
    prompts = list(dict.fromkeys((int(r["prompt_index"]), str(r["prompt"])) for r in metrics))
    prompts.sort()
    n = max(1, len(prompts))
    fig, axes = plt.subplots(1, n, figsize=(3.4 * n, 3.3), sharey=True, squeeze=False)
    for ax, (p, prompt) in zip(axes[0], prompts, strict=True):
        rows = sorted((r for r in metrics if int(r["prompt_index"]) == p), key=lambda r: int(r["step"]))
        s = [int(r["step"]) for r in rows]
        ax.plot(s, [float(r["rate"]) for r in rows], "o-", color=GREEN)
        _floor_line(ax, floor)
        out = [(int(r["step"]), float(r["rate"])) for r in rows if not r["mean_embedding_inside"]]
        if out:
            ax.plot(*zip(*out, strict=True), "x", color=RED, ms=10, mew=2, label="mean embedding outside HCDR")
        ax.legend(fontsize=6)
        ax.set_title(_label(prompt), fontsize=9)
        ax.set_xlabel("training step")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("hallucination rate")
    fig.suptitle(title or "Figure 6: hallucination rate per prompt", fontsize=10)
    fig.tight_layout()
    return fig


def figure7(detector: Any, class_names: Sequence[str], *, title: str = "") -> Any:
    """Held-out log-densities of each state under its own mixture, thresholds dashed."""
    plt = pyplot()
    k = len(detector.calibration_scores_)
    fig, axes = plt.subplots(1, k, figsize=(3.6 * k, 3.2), squeeze=False)
    for j, ax in enumerate(axes[0]):
        c = np.asarray(detector.calibration_scores_[j])
        t = float(detector.thresholds_[j])
        ax.hist(c, bins=min(40, max(8, c.size // 4)), color="#888888", alpha=0.8)
        ax.axvline(t, ls="--", color=RED, label=f"threshold {t:.2f} ({detector.percentile:g}th pct.)")
        ax.set_title(f"state {class_names[j]!r} (n = {c.size} held out)", fontsize=9)
        ax.set_xlabel("log-density under its GMM")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("count")
    fig.suptitle(title or "Figure 7: HDR calibration per state", fontsize=10)
    fig.tight_layout()
    return fig


def rate_vs_percentile(detector: Any, embeddings: Mapping[str, Any], *, step: int) -> Any:
    """Rate of each prompt's samples at one checkpoint as the threshold percentile varies."""
    plt = pyplot()
    pct = np.linspace(0.0, 50.0, 51)
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    for prompt, E in embeddings.items():
        ax.plot(pct, detector.rate_curve(E, pct), label=_label(prompt))
    ax.axvline(detector.percentile, ls="--", color="k", lw=0.8)
    ax.set_xlabel("threshold percentile p (region mass 1 - p/100)")
    ax.set_ylabel("hallucination rate")
    ax.set_title(f"Rate vs threshold percentile, step {step}", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def real_floor(detector: Any) -> float:
    """Mean over classes of the held-out real fraction outside its own class's region."""
    return float(np.mean(1.0 - np.asarray(detector.holdout_coverage_, dtype=np.float64)))


def save_t2i_figures(run_dir: str | Path) -> list[Path]:
    """Draw every figure of a run directory into ``figures/`` (PNG + SVG); returns PNG paths."""
    from deltahall.detectors import HCDRDetector
    from deltahall.experiments.t2i.results import read_losses, read_metrics
    from deltahall.io import RunDir

    rd = RunDir(run_dir)
    metrics, losses = read_metrics(rd.root), read_losses(rd.root)
    manifest = rd.read_json("manifest.json")
    classes = manifest["config"]["classes"]
    det = HCDRDetector.load(rd.root / "detector.safetensors")
    plt = pyplot()
    out: list[Path] = []
    floor = real_floor(det)
    for name, fig in (("fig5_rate_and_loss", figure5(metrics, losses, floor=floor)),
                      ("fig6_rate_per_prompt", figure6(metrics, floor=floor)),
                      ("fig7_calibration", figure7(det, classes))):
        out.append(rd.save_figure(fig, name)[0])
        plt.close(fig)
    steps = _by_step(metrics)
    npz = rd.root / "samples" / f"step-{steps[-1]:06d}.npz" if steps else None
    if npz is not None and npz.is_file():
        prompts = {int(r["prompt_index"]): str(r["prompt"]) for r in metrics}
        with np.load(npz, allow_pickle=False) as f:
            emb = {prompts[p]: f[f"embeddings_p{p}"].astype(np.float64) for p in sorted(prompts) if f"embeddings_p{p}" in f}
        fig = rate_vs_percentile(det, emb, step=steps[-1])
        out.append(rd.save_figure(fig, "rate_vs_percentile")[0])
        plt.close(fig)
    return out
