"""Figures 5-7 of Section 7.3 (text-to-image), drawn from rows and arrays they are given.

Reading a run directory (``metrics.csv``, ``loss.csv``, ``instrument.json``, the samples) is
:func:`deltahall.experiments.t2i.results.save_figures`' job; it calls these functions.

- Figure 5: hallucination rate (mean over prompts, left axis, with the Wilson 95 % interval
  of the pooled count) and training loss (right axis) against training steps; the floor
  (held-out real images flagged) dotted, its interval shaded.
- Figure 6: the rate of each prompt against steps with its Wilson interval and the floor; a
  red cross marks checkpoints where the mean embedding (the estimate :math:`A^*(X)`) falls
  outside the HCDR.
- Figure 7: per-state histograms of the calibration log-densities with the thresholds
  (dashed), as in Appendix A.
- Extra: the final checkpoint's rate as a function of the level α (threshold percentile 100 α).

Where the rows carry the other rule's rate (``rate_<beside>``), it is drawn dashed beside
the headline rule's, so one set of samples shows one rate per rule, each labelled.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from deltahall.plotting import pyplot
from deltahall.stats import proportion

GREEN, BLUE, RED, GREY = "#2a9d50", "#1f5fbf", "#d62728", "#7f7f7f"


def _label(prompt: str) -> str:
    return f'"{prompt}"' if prompt else "(empty prompt: unconditional)"


def _by_step(metrics: Sequence[Mapping[str, Any]]) -> list[int]:
    return sorted({int(r["step"]) for r in metrics})


def _rule_name(rule: str | None) -> str:
    return (
        {"conformal": "conformal", "percentile": "paper's percentile rule"}.get(
            str(rule), str(rule)
        )
        if rule
        else ""
    )


def _floor_line(ax: Any, floor: float | None, floor_ci: Sequence[float] | None = None) -> None:
    if floor is not None:
        ax.axhline(
            floor,
            ls=":",
            color="k",
            lw=1,
            label=f"floor: held-out real images flagged ({floor:.2f})",
        )
        if floor_ci is not None:
            ax.axhspan(float(floor_ci[0]), float(floor_ci[1]), color=GREY, alpha=0.15, lw=0)


def _pooled(
    rows: Sequence[Mapping[str, Any]], key: str = "n_outside"
) -> tuple[float, float] | None:
    """Wilson interval of the count pooled over ``rows`` (None when the rows carry no counts)."""
    if not rows or any(key not in r or "K" not in r for r in rows):
        return None
    p = proportion(sum(int(r[key]) for r in rows), sum(int(r["K"]) for r in rows))
    return p.ci


def figure5(
    metrics: Sequence[Mapping[str, Any]],
    losses: Sequence[Mapping[str, Any]],
    *,
    floor: float | None = None,
    floor_ci: Sequence[float] | None = None,
    rule: str | None = None,
    beside: str | None = None,
    title: str = "",
) -> Any:
    """Rate (mean over prompts; green, left) and training loss (blue, right) vs steps.

    ``floor``: the flagged share of held-out real images (``floor_ci`` its interval, shaded),
    drawn dotted: a generator that reproduced the real distribution would sit near it, not at
    zero. The rate's band is the Wilson 95 % interval of the count pooled over prompts (when the
    rows carry ``n_outside`` and ``K``); ``beside``: the other rule's mean rate, dashed.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    steps = _by_step(metrics)
    at = {s: [r for r in metrics if int(r["step"]) == s] for s in steps}
    rate = [np.mean([float(r["rate"]) for r in at[s]]) for s in steps]
    name = _rule_name(rule)
    ax.plot(
        steps,
        rate,
        "o-",
        color=GREEN,
        label="hallucination rate (mean over prompts)" + (f", {name}" if name else ""),
    )
    cis = [_pooled(at[s]) for s in steps]
    if steps and all(c is not None for c in cis):
        ax.fill_between(
            steps,
            [c[0] for c in cis],  # type: ignore[index]
            [c[1] for c in cis],  # type: ignore[index]
            color=GREEN,
            alpha=0.15,
            lw=0,
        )
    if beside and all(f"rate_{beside}" in r for r in metrics):
        ax.plot(
            steps,
            [np.mean([float(r[f"rate_{beside}"]) for r in at[s]]) for s in steps],
            "^--",
            color=GREEN,
            alpha=0.6,
            ms=4,
            label=f"same samples, {_rule_name(beside)}",
        )
    _floor_line(ax, floor, floor_ci)
    ax.set_xlabel("training step")
    ax.set_ylabel("hallucination rate", color=GREEN)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    if losses:
        x = np.array([int(r["step"]) for r in losses])
        y = np.array([float(r["loss"]) for r in losses])
        ax2.plot(x, y, color=BLUE, alpha=0.2, lw=0.8)
        ck = [
            (s, float(r["loss"]))
            for s in steps
            for r in metrics
            if int(r["step"]) == s
            and int(r["prompt_index"]) == 0
            and not math.isnan(float(r["loss"]))
        ]
        if ck:
            ax2.plot(
                *zip(*ck, strict=True), "s-", color=BLUE, label="training loss (mean over interval)"
            )
    ax2.set_ylabel("training loss", color=BLUE)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper right")
    ax.set_title(title or "Figure 5: hallucination rate and training loss", fontsize=10)
    fig.tight_layout()
    return fig


def figure6(
    metrics: Sequence[Mapping[str, Any]],
    *,
    floor: float | None = None,
    floor_ci: Sequence[float] | None = None,
    rule: str | None = None,
    beside: str | None = None,
    title: str = "",
) -> Any:
    """One panel per prompt: rate vs steps with its Wilson interval (``rate_ci_low``/``rate_ci_high``
    when present), the floor, the other rule dashed; red crosses where the mean embedding is outside."""
    plt = pyplot()
    prompts = list(dict.fromkeys((int(r["prompt_index"]), str(r["prompt"])) for r in metrics))
    prompts.sort()
    n = max(1, len(prompts))
    fig, axes = plt.subplots(1, n, figsize=(3.4 * n, 3.3), sharey=True, squeeze=False)
    for ax, (p, prompt) in zip(axes[0], prompts, strict=True):
        rows = sorted(
            (r for r in metrics if int(r["prompt_index"]) == p), key=lambda r: int(r["step"])
        )
        s = [int(r["step"]) for r in rows]
        y = [float(r["rate"]) for r in rows]
        ax.plot(s, y, "o-", color=GREEN, label=_rule_name(rule) or None)
        if rows and all("rate_ci_low" in r and "rate_ci_high" in r for r in rows):
            err = [
                [v - float(r["rate_ci_low"]) for v, r in zip(y, rows, strict=True)],
                [float(r["rate_ci_high"]) - v for v, r in zip(y, rows, strict=True)],
            ]
            ax.errorbar(s, y, yerr=err, fmt="none", ecolor=GREEN, alpha=0.6, capsize=2)
        if beside and rows and all(f"rate_{beside}" in r for r in rows):
            ax.plot(
                s,
                [float(r[f"rate_{beside}"]) for r in rows],
                "^--",
                color=GREEN,
                alpha=0.6,
                ms=4,
                label=_rule_name(beside),
            )
        _floor_line(ax, floor, floor_ci)
        out = [(int(r["step"]), float(r["rate"])) for r in rows if not r["mean_embedding_inside"]]
        if out:
            ax.plot(
                *zip(*out, strict=True),
                "x",
                color=RED,
                ms=10,
                mew=2,
                label="mean embedding outside HCDR",
            )
        ax.legend(fontsize=6)
        ax.set_title(_label(prompt), fontsize=9)
        ax.set_xlabel("training step")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("hallucination rate")
    fig.suptitle(
        title or "Figure 6: hallucination rate per prompt (Wilson 95% intervals)", fontsize=10
    )
    fig.tight_layout()
    return fig


def figure7(
    calibration_scores: Sequence[npt.ArrayLike],
    thresholds: npt.ArrayLike,
    *,
    class_names: Sequence[str],
    percentile: float,
    rule: str | None = None,
    title: str = "",
) -> Any:
    """Calibration log-densities of each state under its own density model, thresholds dashed.

    Parameters
    ----------
    calibration_scores : sequence of arrays, one per state
        The instrument's calibration scores of each state (``instrument.json``).
    thresholds : array-like of shape (n_states,)
        The rule's score thresholds (inside iff score >= threshold).
    class_names : sequence of str, one per state
    percentile : float
        The threshold percentile (100 α), for the legend.
    rule : str, optional
        The calibration rule the thresholds belong to, for the legend.
    """
    k = len(calibration_scores)
    thr = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if not (thr.size == len(class_names) == k):
        raise ValueError(
            f"`calibration_scores`, `thresholds` and `class_names` must have one entry per state; "
            f"got {k}, {thr.size} and {len(class_names)}."
        )
    plt = pyplot()
    fig, axes = plt.subplots(1, k, figsize=(3.6 * k, 3.2), squeeze=False)
    for j, ax in enumerate(axes[0]):
        c = np.asarray(calibration_scores[j], dtype=np.float64)
        t = float(thr[j])
        ax.hist(c, bins=min(40, max(8, c.size // 4)), color="#888888", alpha=0.8)
        how = (
            f"conformal, α = {percentile / 100:g}"
            if rule == "conformal"
            else f"{percentile:g}th pct."
        )
        ax.axvline(t, ls="--", color=RED, label=f"threshold {t:.2f} ({how})")
        ax.set_title(f"state {class_names[j]!r} (n = {c.size} calibration)", fontsize=9)
        ax.set_xlabel("log-density under its density model")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("count")
    fig.suptitle(title or "Figure 7: HDR calibration per state", fontsize=10)
    fig.tight_layout()
    return fig


def rate_vs_percentile(
    percentiles: npt.ArrayLike,
    curves: Mapping[str, npt.ArrayLike],
    *,
    threshold_percentile: float,
    step: int,
    rule: str | None = None,
) -> Any:
    """Rate of each prompt's samples at one checkpoint as the level varies (percentile = 100 α).

    ``curves`` maps a label (a prompt, or the held-out real images) to its flagged share at
    each of ``percentiles`` (the instrument's curve); ``threshold_percentile`` (the run's own
    level) is marked dashed.
    """
    plt = pyplot()
    pct = np.asarray(percentiles, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    for prompt, rate in curves.items():
        real = prompt.startswith("held-out real")
        ax.plot(
            pct,
            np.asarray(rate, dtype=np.float64),
            label=prompt if real else _label(prompt),
            **({"ls": ":", "color": "k"} if real else {}),
        )
    ax.axvline(threshold_percentile, ls="--", color="k", lw=0.8)
    ax.set_xlabel("level 100 α (threshold percentile)" + (f"; {_rule_name(rule)}" if rule else ""))
    ax.set_ylabel("hallucination rate")
    ax.set_title(f"Rate vs threshold percentile, step {step}", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
