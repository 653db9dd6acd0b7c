"""Figures of the coin-flip experiment (paper Figure 3 and a model-vs-truth plot)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from deltahall.plotting import pyplot


def figure3(
    histories: Mapping[int, Sequence[Sequence[Mapping[str, float]]]],
    *,
    loss: str = "train_loss",
    prob: str = "cp_est",
    floors: Mapping[int, float] | None = None,
    references: Mapping[int, float] | None = None,
    title: str = "",
) -> Any:
    """Figure 3: one panel per N, every round; training loss (left axis) and average
    conditional probability of the estimate on the validation set (right axis) per epoch.

    Parameters
    ----------
    histories : {N: [history of round 0, history of round 1, ...]}
        A history is a list of per-epoch rows (``metrics.csv``).
    floors : {N: Bayes-optimal MSE}, optional
        Drawn as a dotted line on the loss axis (meaningful for the mse objective).
    references : {N: conditional probability of round(E[Y|X])}, optional
        Drawn as a dotted line on the probability axis.
    """
    plt = pyplot()
    ns = sorted(histories)
    fig, axes = plt.subplots(1, len(ns), figsize=(4.6 * len(ns), 3.6), squeeze=False)
    for ax, n in zip(axes[0], ns, strict=True):
        ax2 = ax.twinx()
        for r, h in enumerate(histories[n]):
            ep = [row["epoch"] for row in h]
            ax.plot(
                ep,
                [row[loss] for row in h],
                color="tab:blue",
                alpha=0.75,
                lw=1.2,
                label=loss if r == 0 else None,
            )
            ax2.plot(
                ep,
                [row[prob] for row in h],
                color="tab:red",
                alpha=0.75,
                lw=1.2,
                ls="--",
                label=prob if r == 0 else None,
            )
        if floors and n in floors:
            ax.axhline(floors[n], color="tab:blue", ls=":", lw=1, label="Bayes MSE")
        if references and n in references:
            ax2.axhline(references[n], color="tab:red", ls=":", lw=1, label="P(round E[Y|X])")
        ax.set_title(f"N = {n} ({len(histories[n])} rounds)")
        ax.set_xlabel("epoch")
        ax.set_ylabel(loss, color="tab:blue")
        ax2.set_ylabel(prob, color="tab:red")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="center right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def estimates_vs_truth(
    predictions: Mapping[int, Sequence[Mapping[str, Any]]], *, title: str = ""
) -> Any:
    """The final models' real-valued output against E[Y|X], one panel per N.

    ``predictions`` maps N to rows of ``predictions.csv`` (pooled over rounds) with the keys
    ``bayes_mean`` and ``raw``. The diagonal is the Bayes-optimal estimate; horizontal grid
    lines mark the integers, the only values with non-zero conditional probability.
    """
    plt = pyplot()
    ns = sorted(predictions)
    fig, axes = plt.subplots(1, len(ns), figsize=(4.2 * len(ns), 3.8), squeeze=False)
    for ax, n in zip(axes[0], ns, strict=True):
        rows = predictions[n]
        x = [float(r["bayes_mean"]) for r in rows]
        y = [float(r["raw"]) for r in rows]
        ax.scatter(x, y, s=10, alpha=0.6)
        ax.plot([0, n], [0, n], color="k", lw=0.8, label="E[Y|X]")
        for k in range(n + 1):
            ax.axhline(k, color="0.85", lw=0.6, zorder=0)
        ax.set_xlabel("E[Y | X] (Bayes-optimal)")
        ax.set_ylabel("model output")
        ax.set_title(f"N = {n}")
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
