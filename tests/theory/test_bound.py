"""Theorem 6.1 calculator, Monte-Carlo P_H^δ and the check."""

from __future__ import annotations

import math

import numpy as np
import pytest

from deltahall.theory.bound import (
    IndependentMeans,
    SampledMeans,
    StateMeanLaw,
    check_theorem_6_1,
    estimate_hallucination_probability,
    supremum_of_stated_bound,
    theorem_6_1_bound,
)
from deltahall.theory.mixtures import GaussianState


@pytest.mark.parametrize(
    "kind,param", [("gaussian", 0), ("sphere", 0), ("cube", 0), ("student_t", 9.0), ("spike", 0.4)]
)
def test_law_moments_match_sampling(kind, param) -> None:
    law = StateMeanLaw(kind, 1.7, 3, param)
    x = law.sample(400_000, np.random.default_rng(0))
    sq = np.sum(x**2, axis=1)
    assert sq.mean() == pytest.approx(law.sigma, rel=0.02)
    assert (sq**2).mean() == pytest.approx(law.fourth_moment, rel=0.06)
    assert 0 < law.kurtosis_ratio <= 1


def test_bound_as_stated_by_hand() -> None:
    w, s, k, r = np.array([0.5, 0.5]), np.array([1.0, 1.0]), np.array([1.0, 1.0]), 0.0
    b = theorem_6_1_bound(w, s, kurtosis_ratios=k, radius=r)
    assert b.applicable and b.optimum_spread == pytest.approx(math.sqrt(0.5))
    # (1 - 1/x)(1 - x/2)^2 with x = α², maximised at x = 1 + 1/sqrt(2)... check against a dense grid
    x = np.linspace(1, 2, 200_001)[1:-1]
    best = np.max((1 - 1 / x) * (1 - x / 2) ** 2)
    np.testing.assert_allclose(b.state_factors, best, rtol=1e-8)
    assert b.stated_bound == pytest.approx(best**2, rel=1e-7)
    np.testing.assert_allclose(b.thetas, b.alphas**2 * b.optimum_spread**2, rtol=1e-9)
    # ... and it is the numerical supremum of the stated bound over all instances (about 8.04e-4)
    sup, where = supremum_of_stated_bound(4, grid=41)
    assert sup == pytest.approx(best**2, rel=1e-6) and where["n_states"] == 2


def test_bound_not_applicable_is_reported() -> None:
    b = theorem_6_1_bound([0.9, 0.1], [1.0, 1.0], kurtosis_ratios=[1.0, 1.0], radius=0.5)
    assert not b.applicable and "no alpha > 1" in b.reason and b.stated_bound is None
    assert [st.alpha for st in b.states] == [None, None] and b.union_bound == 0.0
    assert b.states[0].to_dict()["alpha_i"] is None


def test_monte_carlo_matches_closed_form() -> None:
    # 1-d, two states, means ±1 (cube law, K = 1), equal weights, tiny within-state spread:
    # A* = mu_i when the signs agree (no hallucination), 0 otherwise (hallucination): P_H = 1/2.
    within = [GaussianState.isotropic([0.0], 0.01)] * 2
    means = IndependentMeans((0.0,), (StateMeanLaw("cube", 1.0, 1),) * 2)
    est = estimate_hallucination_probability([0.5, 0.5], within, 0.5, means, 40_000, 1)
    assert est.ci_low <= 0.5 <= est.ci_high
    sampler = SampledMeans(lambda n, rng: rng.choice([-1.0, 1.0], size=(n, 2, 1)), (0.0,))
    est2 = estimate_hallucination_probability([0.5, 0.5], within, 0.5, sampler, 40_000, 2)
    assert est2.ci_low <= 0.5 <= est2.ci_high
    s, k = sampler.moments(20_000, np.random.default_rng(0))
    np.testing.assert_allclose(s, 1.0)
    np.testing.assert_allclose(k, 1.0)


def test_check_runs_and_reports() -> None:
    seen = []
    res = check_theorem_6_1(3, 2000, rng=0, progress=lambda done, tried: seen.append((done, tried)))
    assert res.n_applicable == 3 and res.n_tried >= 3
    assert [d for d, _ in seen] == [1, 2, 3] and seen[-1][1] == res.n_tried
    assert res.n_held + len(res.counterexamples) <= res.n_applicable
    for row in res.rows:
        assert row.ci_low <= row.p_hat <= row.ci_high
        assert 0 <= row.stated_bound <= 1
        assert row.to_dict()["holds"] == (row.p_hat >= row.stated_bound)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda: theorem_6_1_bound([0.5, 0.6], [1, 1], kurtosis_ratios=[1, 1], radius=0),
            "must sum to 1",
        ),
        (
            lambda: theorem_6_1_bound([0.5, 0.5], [1, -1], kurtosis_ratios=[1, 1], radius=0),
            "`mean_variances` must be positive",
        ),
        (
            lambda: theorem_6_1_bound([0.5, 0.5], [1, 1], kurtosis_ratios=[1, 2], radius=0),
            r"`kurtosis_ratios` must be in \(0, 1\]",
        ),
        (
            lambda: theorem_6_1_bound(
                [0.5, 0.5], [1, 1], kurtosis_ratios=[1, 1], radius=float("nan")
            ),
            "`radius` must be finite",
        ),
        (lambda: check_theorem_6_1(1_000_000, 1000), "`n_instances` must be <= 10000"),
        (
            lambda: check_theorem_6_1(10_000, 1_000_000),
            r"`n_instances` \* `mc_samples` must be <= 1e\+09",
        ),
        (lambda: check_theorem_6_1(10, 10**9), "`mc_samples` must be <= 100000000"),
        (lambda: StateMeanLaw("student_t", 1.0, 1, 3.0), "nu"),
        (lambda: StateMeanLaw("poisson", 1.0, 1), "`kind` must be one of"),
    ],
)
def test_bad_inputs(call, match) -> None:
    with pytest.raises(ValueError, match=match):
        call()
