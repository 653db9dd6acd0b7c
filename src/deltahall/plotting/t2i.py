"""Figures 5-7 of Section 7.3 (text-to-image), drawn from rows and arrays they are given.

Reading a run directory (``metrics.csv``, ``loss.csv``, the detector, the samples) is
:func:`deltahall.experiments.t2i.results.save_figures`' job; it calls these functions.

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
from typing import Any

import numpy as np
import numpy.typing as npt

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


def figure7(calibration_scores: Sequence[npt.ArrayLike], thresholds: npt.ArrayLike, *,
            class_names: Sequence[str], percentile: float, title: str = "") -> Any:
    """Held-out log-densities of each state under its own mixture, thresholds dashed.

    Parameters
    ----------
    calibration_scores : sequence of arrays, one per state
        The detector's held-out log-densities (``calibration_scores_``).
    thresholds : array-like of shape (n_states,)
        The detector's thresholds (``thresholds_``).
    class_names : sequence of str, one per state
    percentile : float
        The threshold percentile, for the legend.
    """
    k = len(calibration_scores)
    thr = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if not (thr.size == len(class_names) == k):
        raise ValueError(f"`calibration_scores`, `thresholds` and `class_names` must have one entry per state; "
                         f"got {k}, {thr.size} and {len(class_names)}.")
    plt = pyplot()
    fig, axes = plt.subplots(1, k, figsize=(3.6 * k, 3.2), squeeze=False)
    for j, ax in enumerate(axes[0]):
        c = np.asarray(calibration_scores[j], dtype=np.float64)
        t = float(thr[j])
        ax.hist(c, bins=min(40, max(8, c.size // 4)), color="#888888", alpha=0.8)
        ax.axvline(t, ls="--", color=RED, label=f"threshold {t:.2f} ({percentile:g}th pct.)")
        ax.set_title(f"state {class_names[j]!r} (n = {c.size} held out)", fontsize=9)
        ax.set_xlabel("log-density under its GMM")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("count")
    fig.suptitle(title or "Figure 7: HDR calibration per state", fontsize=10)
    fig.tight_layout()
    return fig


def rate_vs_percentile(percentiles: npt.ArrayLike, curves: Mapping[str, npt.ArrayLike], *,
                       threshold_percentile: float, step: int) -> Any:
    """Rate of each prompt's samples at one checkpoint as the threshold percentile varies.

    ``curves`` maps a prompt to its rate at each of ``percentiles`` (the detector's
    ``rate_curve``); ``threshold_percentile`` (the detector's own) is marked dashed.
    """
    plt = pyplot()
    pct = np.asarray(percentiles, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    for prompt, rate in curves.items():
        ax.plot(pct, np.asarray(rate, dtype=np.float64), label=_label(prompt))
    ax.axvline(threshold_percentile, ls="--", color="k", lw=0.8)
    ax.set_xlabel("threshold percentile p (region mass 1 - p/100)")
    ax.set_ylabel("hallucination rate")
    ax.set_title(f"Rate vs threshold percentile, step {step}", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
