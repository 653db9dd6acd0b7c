"""Figures of a measurement (``deltahall measure``), drawn from arrays they are given.

- :func:`rate_vs_alpha`: generated rate and real-test floor as the level α varies;
- :func:`per_prompt_rates`: each prompt's rate with its Wilson 95% interval;
- :func:`p_value_histogram`: the real test part's p-values (near uniform above 1/(m+1)
  when the calibration holds; piled at 1 where states overlap);
- :func:`image_grid`: a grid of images (flagged / accepted samples).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from deltahall.plotting import pyplot

__all__ = ["image_grid", "p_value_histogram", "per_prompt_rates", "rate_vs_alpha"]

RED, BLUE, GRAY = "#d62728", "#1f5fbf", "#555555"


def rate_vs_alpha(
    alphas: Sequence[float], rate: Sequence[float], floor: Sequence[float], *, alpha: float
) -> Any:
    """Generated rate and real-test floor against α, with the identity (the guarantee's bound)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    ax.plot(alphas, rate, "-", color=RED, label="generated: flagged fraction")
    ax.plot(alphas, floor, "-", color=BLUE, label="held-out real (floor)")
    ax.plot(
        [0, max(alphas)],
        [0, max(alphas)],
        ":",
        color=GRAY,
        label="y = α (guaranteed bound on real)",
    )
    ax.axvline(alpha, ls="--", color="k", lw=0.8, label=f"α = {alpha:g}")
    ax.set_xlabel("level α")
    ax.set_ylabel("flagged fraction")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def per_prompt_rates(
    rows: Sequence[Mapping[str, Any]], *, floor: float, floor_ci: Sequence[float]
) -> Any:
    """One bar per prompt (rate) with its Wilson interval; the floor and its interval shaded."""
    plt = pyplot()
    n = len(rows)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * n + 2.5), 3.6))
    x = np.arange(n)
    rate = np.array([float(r["rate"]) for r in rows])
    lo = np.array([float(r["rate_ci"][0]) for r in rows])
    hi = np.array([float(r["rate_ci"][1]) for r in rows])
    colors = [RED if not r.get("mean_embedding_inside", True) else "#e88" for r in rows]
    ax.bar(x, rate, color=colors)
    ax.errorbar(x, rate, yerr=[rate - lo, hi - rate], fmt="none", ecolor="k", capsize=3)
    ax.axhspan(float(floor_ci[0]), float(floor_ci[1]), color=BLUE, alpha=0.15)
    ax.axhline(floor, color=BLUE, ls=":", label=f"real floor {floor:.3f}")
    labels = [(str(r["prompt"]) or "(none)")[:24] for r in rows]
    ax.set_xticks(x)
    ax.set_xticklabels(
        labels, rotation=30 if n > 3 else 0, ha="right" if n > 3 else "center", fontsize=7
    )
    ax.set_ylabel("flagged fraction (Wilson 95%)")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, title="dark bar: mean embedding outside", title_fontsize=7)
    fig.tight_layout()
    return fig


def p_value_histogram(p_values: npt.ArrayLike, *, alpha: float, bins: int = 20) -> Any:
    """Histogram of the real test part's conformal p-values (density scale)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.0, 3.2))
    p = np.asarray(p_values, dtype=float)
    ax.hist(p, bins=np.linspace(0, 1, bins + 1), density=True, color=BLUE, alpha=0.75)
    ax.axhline(1.0, color=GRAY, ls=":", label="uniform")
    ax.axvline(alpha, color="k", ls="--", lw=0.8, label=f"α = {alpha:g}")
    ax.set_xlabel("p-value of held-out real samples")
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def image_grid(
    images: Sequence[npt.ArrayLike],
    *,
    titles: Sequence[str] | None = None,
    ncols: int = 8,
    title: str = "",
) -> Any:
    """A grid of images (arrays H x W or H x W x C, uint8 or float in [0, 1])."""
    plt = pyplot()
    n = max(len(images), 1)
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(1.2 * ncols, 1.3 * nrows + (0.3 if title else 0)), squeeze=False
    )
    for k, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if k < len(images):
            im = np.asarray(images[k])
            ax.imshow(im, cmap="gray" if im.ndim == 2 else None)
            if titles is not None:
                ax.set_title(str(titles[k])[:14], fontsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
