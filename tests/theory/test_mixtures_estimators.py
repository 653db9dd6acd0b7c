"""Latent mixtures, Lemma B.1, Appendix C, the δ-test (Definition 4.2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from deltahall.theory.estimators import (
    DeltaTest,
    cross_entropy_optimal_estimate,
    delta_hallucinates,
    expected_cross_entropy,
    quadratic_optimal_estimate,
    quadratic_risk,
)
from deltahall.theory.mixtures import DiscreteState, GaussianState, LatentMixture, ScipyState


def _random_mixture(rng: np.random.Generator, n: int, d: int) -> LatentMixture:
    states = []
    for _ in range(n):
        a = rng.standard_normal((d, d))
        states.append(GaussianState(rng.standard_normal(d) * 3, a @ a.T + 0.5 * np.eye(d)))
    return LatentMixture(rng.dirichlet(np.ones(n)) * 0.9 + 0.1 / n, states)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 5), d=st.integers(1, 6))
def test_densities_match_scipy(seed: int, n: int, d: int) -> None:
    rng = np.random.default_rng(seed)
    mix = _random_mixture(rng, n, d)
    x = rng.standard_normal((7, d)) * 4
    ref = np.stack(
        [stats.multivariate_normal(s.loc, s.cov).logpdf(x).reshape(-1) for s in mix.states], axis=1
    )
    np.testing.assert_allclose(mix.log_component_pdf(x), ref, rtol=1e-9, atol=1e-9)
    marg = np.log(np.exp(ref) @ mix.weights)
    np.testing.assert_allclose(mix.logpdf(x), marg, rtol=1e-9, atol=1e-9)


def test_log_space_stability_extreme_scales() -> None:
    g = GaussianState.isotropic(np.zeros(8), 1e200)
    lp = g.logpdf(np.ones((2, 8)) * 1e200)
    assert np.all(np.isfinite(lp))
    assert lp[0] == pytest.approx(-8 * 0.5 * math.log(2 * math.pi) - 8 * math.log(1e200) - 4.0)


def test_sample_labels_and_lemma_b1() -> None:
    rng = np.random.default_rng(0)
    mix = _random_mixture(rng, 3, 2)
    x, lab = mix.sample(60_000, rng)
    assert x.shape == (60_000, 2) and set(np.unique(lab)) <= {0, 1, 2}
    np.testing.assert_allclose(np.bincount(lab) / lab.size, mix.weights, atol=0.01)
    opt = quadratic_optimal_estimate(mix)
    np.testing.assert_allclose(opt, mix.weights @ np.stack([s.loc for s in mix.states]))
    # Lemma B.1 numerically: the mean of the sample minimises the empirical risk and the
    # population mean is within Monte-Carlo error of it; every perturbation costs ||h||².
    pert = opt + rng.standard_normal((50, 2))
    r_opt = quadratic_risk(opt, x)[0]
    r_pert = quadratic_risk(pert, x)
    assert np.all(r_pert > quadratic_risk(x.mean(0), x)[0])
    np.testing.assert_allclose(
        r_pert - quadratic_risk(x.mean(0), x)[0], np.sum((pert - x.mean(0)) ** 2, 1), rtol=1e-8
    )
    assert np.linalg.norm(x.mean(0) - opt) < 0.1 and r_opt < r_pert.min()


def test_cross_entropy_optimum_is_mean_of_targets() -> None:
    rng = np.random.default_rng(1)
    q = rng.dirichlet(np.ones(4), size=30)
    w = rng.dirichlet(np.ones(30))
    p = cross_entropy_optimal_estimate(q, w)
    best = expected_cross_entropy(p, q, weights=w)
    for _ in range(50):
        other = rng.dirichlet(np.ones(4))
        assert expected_cross_entropy(other, q, weights=w) >= best - 1e-12


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 5), d=st.integers(1, 8), logd=st.floats(-30, 0))
def test_delta_test_matches_direct_evaluation(seed: int, n: int, d: int, logd: float) -> None:
    rng = np.random.default_rng(seed)
    mix = _random_mixture(rng, n, d)
    delta = math.exp(logd)
    x = rng.standard_normal((3000, d)) * 5
    t = DeltaTest(mix, delta, chunk_size=257)
    ref = np.all(mix.log_component_pdf(x) <= math.log(delta), axis=1)
    np.testing.assert_array_equal(t.hallucinates(x), ref)
    np.testing.assert_allclose(
        t.max_log_density(x), mix.log_component_pdf(x).max(1), rtol=1e-9, atol=1e-8
    )


def test_delta_test_generic_states() -> None:
    mix = LatentMixture(
        [0.5, 0.5], [ScipyState(stats.t(df=3, loc=-3)), ScipyState(stats.laplace(loc=3))]
    )
    x = np.array([[0.0], [3.0]])
    assert delta_hallucinates(mix, x, delta=0.05).tolist() == [True, False]
    disc = LatentMixture(
        [0.3, 0.7], [DiscreteState([[0.0], [1.0]], [0.5, 0.5]), DiscreteState([[2.0]], [1.0])]
    )
    assert disc.mean()[0] == pytest.approx(0.3 * 0.5 + 0.7 * 2)
    assert delta_hallucinates(disc, [[disc.mean()[0]], [2.0]], delta=0.1).tolist() == [True, False]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: LatentMixture([0.5, 0.6], [GaussianState([0.0], [[1.0]])] * 2), "must sum to 1"),
        (
            lambda: LatentMixture([1.0, 0.0], [GaussianState([0.0], [[1.0]])] * 2),
            "must be positive",
        ),
        (lambda: GaussianState([0.0, 0.0], [[1.0, 2.0], [2.0, 1.0]]), "positive definite"),
        (lambda: GaussianState([np.nan], [[1.0]]), "finite"),
        (lambda: GaussianState.isotropic([0.0], 0.0), r"`scale` must be in \(0, inf\); got 0"),
        (
            lambda: DeltaTest(LatentMixture([1.0], [GaussianState([0.0], [[1.0]])]), 0.0),
            r"\(0, 1\]",
        ),
        (
            lambda: DeltaTest(LatentMixture([1.0], [GaussianState([0.0], [[1.0]])]), 2.0),
            r"\(0, 1\]",
        ),
        (
            lambda: LatentMixture([1.0], [GaussianState([0.0], [[1.0]])]).logpdf([[np.nan]]),
            "finite",
        ),
        (
            lambda: cross_entropy_optimal_estimate([[0.5, 0.6], [0.0, 1.0]]),
            r"`targets` rows must each sum to 1; row 0 sums to 1\.1 \(1 of 2 rows off\)",
        ),
        (
            lambda: cross_entropy_optimal_estimate([[1.0, 0.0], [1.5, -0.5]]),
            "row 1 has a negative entry",
        ),
        (lambda: cross_entropy_optimal_estimate(np.zeros((0, 2))), "at least one row"),
        (lambda: expected_cross_entropy([0.5, 0.5], [[0.2, 0.2]]), "row 0 sums to 0.4"),
    ],
)
def test_bad_inputs(call, match) -> None:
    with pytest.raises(ValueError, match=match):
        call()
