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
            ax.fill_between(
                x,
                [float(p["min"]) for p in pts],
                [float(p["max"]) for p in pts],
                color=line.get_color(),
                alpha=0.2,
            )
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
        pts = sorted(
            (r["epoch"], r["loss"]) for r in loss_rows if (r["model"], r["seed"]) == (model, seed)
        )
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


def figure4_ci(
    rows: Sequence[Mapping[str, Any]], *, paper: Mapping[str, Mapping[int, Sequence[float]]]
) -> Any:
    """Figure 4 with 95 % intervals: our means per epoch, both scorings, beside the paper's numbers.

    Parameters
    ----------
    rows : sequence of mappings
        One per (model, scoring, epoch): ``scoring``, ``epoch`` (0 = original), ``incorrect``,
        ``incorrect_low``, ``incorrect_high``, ``n_seeds`` (see
        :func:`deltahall.experiments.qa.intervals.interval_tables`).
    paper : mapping
        ``model -> {epoch: (seed values...)}``: the paper's Table 1 (authors' scoring), drawn
        as dashed lines through the seed means, with the seeds as dots.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for scoring in dict.fromkeys(r["scoring"] for r in rows):
        for model in dict.fromkeys(r["model"] for r in rows):
            pts = sorted(
                (r for r in rows if r["scoring"] == scoring and r["model"] == model),
                key=lambda r: int(r["epoch"]),
            )
            if not pts:
                continue
            x = [int(p["epoch"]) for p in pts]
            y = [float(p["incorrect"]) for p in pts]
            err = [
                [v - float(p["incorrect_low"]) for v, p in zip(y, pts, strict=True)],
                [float(p["incorrect_high"]) - v for v, p in zip(y, pts, strict=True)],
            ]
            seeds = max(int(p["n_seeds"]) for p in pts)
            ax.errorbar(
                x,
                y,
                yerr=err,
                marker="o",
                capsize=3,
                label=f"{model}, {scoring} ({seeds} seed{'s' if seeds != 1 else ''}, 95 % CI)",
            )
    for model, by_epoch in paper.items():
        ep = sorted(by_epoch)
        line = ax.plot(
            ep,
            [sum(by_epoch[e]) / len(by_epoch[e]) for e in ep],
            ls="--",
            lw=1,
            label=f"paper: {model} (authors' scoring)",
        )[0]
        for e in ep:
            ax.plot(
                [e] * len(by_epoch[e]),
                list(by_epoch[e]),
                ls="none",
                marker=".",
                color=line.get_color(),
            )
    epochs = sorted({int(r["epoch"]) for r in rows} | {e for v in paper.values() for e in v})
    ax.set_xticks(epochs, ["orig." if e == 0 else str(e) for e in epochs])
    ax.set_xlabel("fine-tuning epochs")
    ax.set_ylabel("resemblance to incorrect answers")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.suptitle(
        "Figure 4 with intervals: mean over TruthfulQA questions, 95 % bootstrap CI", fontsize=10
    )
    fig.tight_layout()
    return fig
