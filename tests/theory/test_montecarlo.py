"""Laws of the conditional means and the Monte-Carlo P_H^δ (Theorem 6.1's setting)."""

from __future__ import annotations

import numpy as np
import pytest

from deltahall.theory.mixtures import GaussianState
from deltahall.theory.montecarlo import (
    IndependentMeans,
    SampledMeans,
    StateMeanLaw,
    estimate_hallucination_probability,
)


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


def test_monte_carlo_matches_closed_form() -> None:
    # 1-d, two states, means ±1 (cube law, K = 1), equal weights, tiny within-state spread:
    # A* = mu_i when the signs agree (no hallucination), 0 otherwise (hallucination): P_H = 1/2.
    within = [GaussianState.isotropic([0.0], 0.01)] * 2
    means = IndependentMeans((0.0,), (StateMeanLaw("cube", 1.0, 1),) * 2)
    est = estimate_hallucination_probability(
        [0.5, 0.5], within, delta=0.5, means=means, n_samples=40_000, rng=1
    )
    assert est.ci_low <= 0.5 <= est.ci_high
    sampler = SampledMeans(lambda n, rng: rng.choice([-1.0, 1.0], size=(n, 2, 1)), (0.0,))
    est2 = estimate_hallucination_probability(
        [0.5, 0.5], within, delta=0.5, means=sampler, n_samples=40_000, rng=2
    )
    assert est2.ci_low <= 0.5 <= est2.ci_high
    s, k = sampler.moments(20_000, np.random.default_rng(0))
    np.testing.assert_allclose(s, 1.0)
    np.testing.assert_allclose(k, 1.0)


def test_the_wilson_interval_covers_a_known_rate() -> None:
    # P_H = 1/2 exactly (cube law, two states): over 200 seeded estimates of 400 draws each the
    # 90 % Wilson interval must cover 1/2 about 90 % of the time (binomial 200, 0.9: 171..189).
    within = [GaussianState.isotropic([0.0], 0.01)] * 2
    means = IndependentMeans((0.0,), (StateMeanLaw("cube", 1.0, 1),) * 2)
    covered = 0
    for seed in range(200):
        est = estimate_hallucination_probability(
            [0.5, 0.5], within, delta=0.5, means=means, n_samples=400, rng=seed, confidence=0.9
        )
        covered += est.ci_low <= 0.5 <= est.ci_high
    assert 165 <= covered <= 195


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: StateMeanLaw("student_t", 1.0, 1, 3.0), "nu"),
        (lambda: StateMeanLaw("poisson", 1.0, 1), "`kind` must be one of"),
        (
            lambda: estimate_hallucination_probability(
                [0.5, 0.5],
                [GaussianState.isotropic([0.0], 1.0)],
                delta=0.5,
                means=None,
                n_samples=10,
                rng=0,
            ),
            "`within` must have one law per weight",
        ),
    ],
)
def test_bad_inputs(call, match) -> None:
    with pytest.raises(ValueError, match=match):
        call()
