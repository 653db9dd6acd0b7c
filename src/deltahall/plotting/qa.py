"""Figure 4 of Section 7.2: resemblance against fine-tuning epochs, mean ± spread over seeds.

The functions draw from rows they are given; reading a run directory is
:mod:`deltahall.experiments.qa.results`' job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from deltahall.plotting import pyplot

_PANELS = (
    ("resemblance_incorrect", "answer only (default)"),
    ("resemblance_incorrect_with_prompt", "prompt included (authors' scoring)"),
)


def figure4(summary: Sequence[Mapping[str, Any]], *, plumbing: bool = False) -> Any:
    """Two panels (answer-only / prompt-included scoring of the same generations).

    Parameters
    ----------
    summary : sequence of mappings
        Rows of ``figure4_summary.csv`` (see
        :func:`deltahall.experiments.qa.results.summary_over_seeds`): ``metric``, ``model``,
        ``epoch`` (0 = the original model), ``mean``, ``min`` and ``max`` over seeds.
    plumbing : bool, default False
        Say in the title that the numbers come from the tiny offline model.

    Returns
    -------
    matplotlib.figure.Figure
        Each model is a line of the mean over seeds against epochs, with a band from the
        minimum to the maximum seed.
    """
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=False)
    epochs = sorted({int(s["epoch"]) for s in summary})
    for ax, (metric, title) in zip(axes, _PANELS, strict=True):
        rows = sorted((s for s in summary if s["metric"] == metric), key=lambda s: int(s["epoch"]))
        for model in dict.fromkeys(s["model"] for s in rows):
            pts = [s for s in rows if s["model"] == model]
            x = [int(p["epoch"]) for p in pts]
            line = ax.plot(x, [float(p["mean"]) for p in pts], marker="o", label=model)[0]
            ax.fill_between(x, [float(p["min"]) for p in pts], [float(p["max"]) for p in pts],
                            color=line.get_color(), alpha=0.2)
        ax.set_xticks(epochs, ["orig." if e == 0 else str(e) for e in epochs])
        ax.set_xlabel("fine-tuning epochs")
        ax.set_ylabel("resemblance to incorrect answers")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    sup = "Figure 4 layout: resemblance vs epochs (mean, band = min–max over seeds)"
    if plumbing:
        sup += "\nTINY OFFLINE MODEL — plumbing check, not a finding"
    fig.suptitle(sup, fontsize=10)
    fig.tight_layout()
    return fig


def loss_figure(loss_rows: Sequence[Mapping[str, Any]], *, plumbing: bool = False) -> Any:
    """Mean fine-tuning loss per epoch, one line per model × seed.

    ``loss_rows`` hold ``model``, ``seed``, ``epoch`` and ``loss`` (see
    :func:`deltahall.experiments.qa.results.read_loss_rows`).
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    keys = list(dict.fromkeys((r["model"], r["seed"]) for r in loss_rows))
    for model, seed in keys:
        pts = sorted((r["epoch"], r["loss"]) for r in loss_rows if (r["model"], r["seed"]) == (model, seed))
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"{model} seed {seed}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean training loss (answer tokens)")
    title = "Fine-tuning loss"
    if plumbing:
        title += " (tiny model: plumbing only)"
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
