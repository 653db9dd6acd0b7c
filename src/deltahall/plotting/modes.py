"""Figures of the known-truth experiment (``deltahall modes``), drawn from arrays and rows given.

Reading a run directory is :mod:`deltahall.experiments.modes.results`' job; it calls these.

- :func:`samples_figure`: generated samples over the mixture's density (contours in 2-D, the
  density curve in 1-D) with the true δ-hallucinations marked;
- :func:`rate_figure`: Figure 5 with the truth — the true rate with its Wilson interval, each
  detector's rate at the same false-flag rate, and the loss, against training steps;
- :func:`recursive_figure`: the true rate, mode coverage and total variation per generation and
  strategy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from deltahall.plotting import pyplot

RED, BLUE, GREY = "#d62728", "#1f5fbf", "#888888"
DETECTOR_STYLE = {
    "hcdr": ("HCDR (conformal)", "#2a9d50"),
    "hcdr_density": ("HCDR log-density", "#17becf"),
    "variance": ("trajectory variance", "#9467bd"),
    "knn": ("kNN distance", "#ff7f0e"),
}
STRATEGY_STYLE = {"none": "#333333", "random": GREY, "variance": "#9467bd", "hcdr": "#2a9d50"}


def samples_figure(
    x: npt.NDArray[np.float64],
    hallucinated: npt.NDArray[np.bool_],
    *,
    grid: tuple[npt.NDArray[np.float64], ...],
    log_density: npt.NDArray[np.float64],
    log_delta: float,
    title: str,
) -> Any:
    """Samples over the target density; true hallucinations in red.

    ``grid`` is ``(xs,)`` in 1-D or ``(xs, ys)`` in 2-D and ``log_density`` the mixture's
    log-density on it (shape ``(len(xs),)`` or ``(len(ys), len(xs))``).
    """
    plt = pyplot()
    h = np.asarray(hallucinated, dtype=bool)
    if x.shape[1] == 2:
        fig, ax = plt.subplots(figsize=(5.5, 5.5))
        xs, ys = grid
        levels = np.linspace(
            max(float(log_density.max()) - 30.0, log_delta - 20.0), float(log_density.max()), 8
        )
        ax.contour(xs, ys, log_density, levels=levels, colors=GREY, linewidths=0.5)
        ax.contour(
            xs, ys, log_density, levels=[log_delta], colors="k", linewidths=0.8, linestyles="--"
        )
        ax.scatter(
            x[~h, 0], x[~h, 1], s=2, color=BLUE, alpha=0.5, label=f"in support ({int((~h).sum())})"
        )
        ax.scatter(
            x[h, 0],
            x[h, 1],
            s=6,
            color=RED,
            marker="x",
            label=f"true δ-hallucination ({int(h.sum())})",
        )
        ax.set_xlabel("x0")
        ax.set_ylabel("x1")
        ax.set_aspect("equal")
    else:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        xs = grid[0]
        bins = np.linspace(float(xs.min()), float(xs.max()), 200)
        ax.hist(x[~h, 0], bins=bins, color=BLUE, alpha=0.6, label=f"in support ({int((~h).sum())})")
        ax.hist(
            x[h, 0], bins=bins, color=RED, alpha=0.8, label=f"true δ-hallucination ({int(h.sum())})"
        )
        ax.set_yscale("log")
        ax2 = ax.twinx()
        ax2.plot(xs, log_density, color=GREY, lw=0.8)
        ax2.axhline(log_delta, color="k", ls="--", lw=0.8)
        ax2.set_ylabel("log density (grey), log δ (dashed)")
        ax.set_xlabel("x0")
        ax.set_ylabel("samples")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    return fig


def rate_figure(metrics: Sequence[Mapping[str, Any]], *, alpha: float, title: str) -> Any:
    """True rate (with interval) and each detector's rate vs steps; validation loss on the right axis."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = np.array([int(r["step"]) for r in metrics])
    rate = np.array([float(r["true_rate"]) for r in metrics])
    lo = np.array([float(r["true_lo"]) for r in metrics])
    hi = np.array([float(r["true_hi"]) for r in metrics])
    ax.fill_between(steps, lo, hi, color=RED, alpha=0.2, lw=0)
    ax.plot(steps, rate, "o-", color=RED, label="true δ-hallucination rate (Wilson 95%)")
    for name, (label, color) in DETECTOR_STYLE.items():
        ax.plot(
            steps,
            [float(r[f"{name}_rate"]) for r in metrics],
            "s--",
            color=color,
            ms=3,
            label=f"{label}, flagged at real false-flag {alpha:g}",
        )
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("training step")
    ax.set_ylabel("rate")
    ax2 = ax.twinx()
    ax2.plot(
        steps, [float(r["val_loss"]) for r in metrics], "k:", label="validation loss (fixed noise)"
    )
    ax2.set_ylabel("loss (log scale)")
    ax2.set_yscale("log")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="center right")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def recursive_figure(rows: Sequence[Mapping[str, Any]], *, n_components: int, title: str) -> Any:
    """Three panels over generations, one line per strategy."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    strategies = list(dict.fromkeys(str(r["strategy"]) for r in rows))
    for s in strategies:
        rs = sorted((r for r in rows if r["strategy"] == s), key=lambda r: int(r["generation"]))
        g = [int(r["generation"]) for r in rs]
        color = STRATEGY_STYLE.get(s, "k")
        rate = np.array([float(r["true_rate"]) for r in rs])
        axes[0].errorbar(
            g,
            rate,
            yerr=[
                rate - np.array([float(r["true_lo"]) for r in rs]),
                np.array([float(r["true_hi"]) for r in rs]) - rate,
            ],
            marker="o",
            color=color,
            capsize=2,
            label=s,
        )
        axes[1].plot(g, [int(r["covered"]) for r in rs], "o-", color=color, label=s)
        axes[2].plot(g, [float(r["tv_from_uniform"]) for r in rs], "o-", color=color, label=s)
    axes[0].set_ylabel("true δ-hallucination rate")
    axes[1].set_ylabel(f"components covered (of {n_components})")
    axes[2].set_ylabel("TV of component shares from uniform")
    for ax in axes:
        ax.set_xlabel("generation")
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
