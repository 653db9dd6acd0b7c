"""HCDR-guided selection lowers the true hallucination rate on blends and reports what it costs."""

from __future__ import annotations

import numpy as np
import pytest

from deltahall.measure import DetectorSettings, measure_embeddings
from deltahall.measure.selection import select_candidates, total_variation

from .conftest import blends, draw

S = DetectorSettings(pca_dim=None, normalize=False, n_components=1, covariance_type="full")


def _setup(seed: int = 0):
    rng = np.random.default_rng(seed)
    X, y = draw(rng, 450, np.repeat(np.arange(3), 150))
    # prompt "p": 50 real-like of state 0 only, 50 blends -> selection keeps state 0 only
    G = np.vstack([draw(rng, 50, np.zeros(50, dtype=int))[0], blends(rng, 50)])
    truth_blend = np.r_[np.zeros(50, bool), np.ones(50, bool)]
    m = measure_embeddings(X, y, G, prompts=["p"] * 100, settings=S)
    return m, truth_blend


def test_hcdr_selection_lowers_the_true_rate_and_reports_the_cost() -> None:
    m, truth = _setup()
    sel = select_candidates(
        m.gen_p,
        m.prompts,
        m.gen_nearest,
        m.gen_flagged,
        states=m.states,
        reference_sizes=m.state_sizes["total"],
        mode="hcdr",
        alpha=0.1,
    )
    true_before, true_after = truth.mean(), truth[sel.kept].mean()
    assert true_before == 0.5 and true_after < 0.1
    assert sel.rate_after == 0.0 and sel.rate_before == pytest.approx(m.rate.rate)
    assert 0.3 < sel.acceptance_rate < 0.55
    # cost: only state 0 survives; kept shares are far from the reference's uniform shares
    assert sel.states_generated == 3 and sel.states_surviving <= 2 and sel.shares["kept"][0] > 0.9
    assert sel.tv_kept_vs_reference == pytest.approx(2 / 3, abs=0.08)
    assert sel.tv_kept_vs_reference > sel.tv_generated_vs_reference
    assert sel.summary()["per_prompt"][0]["n_kept"] == sel.n_kept


def test_top_k_keeps_k_per_prompt_with_highest_p() -> None:
    m, truth = _setup(1)
    sel = select_candidates(
        m.gen_p,
        m.prompts,
        m.gen_nearest,
        m.gen_flagged,
        states=m.states,
        reference_sizes=m.state_sizes["total"],
        mode="top-k",
        k=30,
    )
    assert sel.n_kept == 30 and truth[sel.kept].mean() < truth.mean()
    assert m.gen_p[sel.kept].min() >= np.sort(m.gen_p)[-30]


def test_errors_and_tv() -> None:
    assert total_variation([1, 0, 0], [0, 0, 1]) == 1.0
    with pytest.raises(ValueError, match="`select_k` is required"):
        select_candidates(
            [0.5], ["a"], [0], [False], states=["x"], reference_sizes=[1], mode="top-k"
        )
    with pytest.raises(ValueError, match="`select` must be one of"):
        select_candidates(
            [0.5], ["a"], [0], [False], states=["x"], reference_sizes=[1], mode="best"
        )
    with pytest.raises(ValueError, match="at least one sample"):
        select_candidates([], [], [], [], states=["x"], reference_sizes=[1])


def test_top_k_with_several_interleaved_prompts_keeps_k_of_each() -> None:
    """Regression: the per-prompt loop used to overwrite the row order of the prompts."""
    g = np.random.default_rng(5)
    p = g.random(60)
    prompts = ["a", "b", "c"] * 20
    sel = select_candidates(
        p,
        prompts,
        np.zeros(60, dtype=int),
        p < 0.1,
        states=["x"],
        reference_sizes=[10],
        mode="top-k",
        k=4,
    )
    assert sel.n_kept == 12
    for name in "abc":
        rows = np.flatnonzero(np.array(prompts) == name)
        assert sel.kept[rows].sum() == 4
        assert set(rows[sel.kept[rows]]) == set(rows[np.argsort(-p[rows])[:4]])
    assert [r["n_kept"] for r in sel.per_prompt] == [4, 4, 4]
