"""Plotting functions draw what they are given: rows and arrays in, matplotlib figures out, no files read."""

from __future__ import annotations

import numpy as np
import pytest

from deltahall.plotting import pyplot
from deltahall.plotting.qa import figure4, loss_figure
from deltahall.plotting.t2i import figure5, figure6, figure7, rate_vs_percentile


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    pyplot().close("all")


def _summary() -> list[dict]:
    rows = []
    for metric in ("resemblance_incorrect", "resemblance_incorrect_with_prompt"):
        for model, base in (("a", 0.5), ("b", 0.3)):
            for epoch in (0, 1, 2):
                m = base + 0.01 * epoch
                rows.append(
                    {
                        "metric": metric,
                        "model": model,
                        "epoch": epoch,
                        "mean": m,
                        "min": m - 0.02,
                        "max": m + 0.02,
                    }
                )
    return rows


def test_figure4_draws_one_line_per_model_from_the_summary_rows() -> None:
    fig = figure4(_summary(), plumbing=True)
    left, right = fig.axes
    for ax in (left, right):
        assert [line.get_label() for line in ax.get_lines()] == ["a", "b"]
        assert list(ax.get_lines()[1].get_ydata()) == pytest.approx([0.3, 0.31, 0.32])
        assert [t.get_text() for t in ax.get_xticklabels()] == ["orig.", "1", "2"]
    assert "plumbing" in fig._suptitle.get_text()


def test_loss_figure_one_line_per_model_and_seed() -> None:
    rows = [{"model": "a", "seed": s, "epoch": e, "loss": 1.0 / e} for s in (0, 1) for e in (1, 2)]
    (ax,) = loss_figure(rows).axes
    assert [line.get_label() for line in ax.get_lines()] == ["a seed 0", "a seed 1"]


def _metrics() -> list[dict]:
    return [
        {
            "step": s,
            "prompt_index": p,
            "prompt": prompt,
            "rate": 0.1 * p + 0.01 * s,
            "loss": float("nan") if s == 0 else 1.0 / s,
            "mean_embedding_inside": s != 2,
        }
        for s in (0, 2, 4)
        for p, prompt in enumerate(("", "a photo of a cat"))
    ]


def test_t2i_figures_from_rows_and_arrays() -> None:
    metrics = _metrics()
    fig5 = figure5(metrics, [{"step": s, "loss": 1.0 / s} for s in range(1, 5)], floor=0.1)
    assert fig5.axes[0].get_lines()[0].get_ydata() == pytest.approx([0.05, 0.07, 0.09])
    fig6 = figure6(metrics, floor=0.1)
    assert len(fig6.axes) == 2
    crosses = [
        line
        for line in fig6.axes[1].get_lines()
        if line.get_label() == "mean embedding outside HCDR"
    ]
    assert len(crosses) == 1 and list(crosses[0].get_xdata()) == [2]
    fig7 = figure7(
        [np.arange(20.0), np.arange(30.0)],
        np.array([2.0, 3.0]),
        class_names=["0", "1"],
        percentile=10,
    )
    assert len(fig7.axes) == 2 and "n = 30" in fig7.axes[1].get_title()
    pct = np.linspace(0, 50, 6)
    fig = rate_vs_percentile(
        pct, {"": pct / 100, "a photo of a cat": pct / 50}, threshold_percentile=10, step=4
    )
    assert len(fig.axes[0].get_lines()) == 3  # two prompts and the dashed percentile


def test_figure7_needs_one_entry_per_state() -> None:
    with pytest.raises(ValueError, match=r"one entry per state; got 2, 3 and 2"):
        figure7([np.zeros(3), np.zeros(3)], [1.0, 2.0, 3.0], class_names=["a", "b"], percentile=10)
