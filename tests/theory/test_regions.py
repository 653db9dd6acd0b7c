"""U_i^δ, HDR thresholds (Appendix A), covering radii (Definition 6.3)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from deltahall.theory.mixtures import GaussianState, LatentMixture, ScipyState
from deltahall.theory.regions import (
    covering_radius,
    hdr_mass,
    hdr_threshold,
    in_hcdr,
    in_state_region,
    sample_state_region,
)


def _gauss(rng: np.random.Generator, d: int, scale: float) -> GaussianState:
    a = rng.standard_normal((d, d))
    return GaussianState(rng.standard_normal(d), scale**2 * (a @ a.T + 0.3 * np.eye(d)))


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    d=st.integers(1, 6),
    mass=st.floats(0.05, 0.98),
    scale=st.floats(0.1, 10),
)
def test_gaussian_hdr_mass_matches_monte_carlo(
    seed: int, d: int, mass: float, scale: float
) -> None:
    rng = np.random.default_rng(seed)
    g = _gauss(rng, d, scale)
    thr = hdr_threshold(g, mass)
    assert thr.exact
    m = hdr_mass(g, thr.log_threshold, rng=rng, n_samples=40_000, confidence=1 - 1e-6)
    assert m.n == 40_000 and m.rate == m.k / m.n
    assert m.ci[0] <= mass <= m.ci[1]


def test_monte_carlo_hdr_threshold_has_stated_error() -> None:
    rng = np.random.default_rng(3)
    g = GaussianState([0.0, 1.0], [[2.0, 0.3], [0.3, 1.0]])
    exact = hdr_threshold(g, 0.8).log_threshold
    # A ScipyState wrapper forces the sampling path on the same law.
    mc = hdr_threshold(
        ScipyState(stats.multivariate_normal([0.0, 1.0], [[2.0, 0.3], [0.3, 1.0]])),
        0.8,
        rng=rng,
        n_samples=50_000,
    )
    assert not mc.exact and mc.mass_std_error == pytest.approx(math.sqrt(0.8 * 0.2 / 50_000))
    assert mc.log_threshold_ci[0] <= exact <= mc.log_threshold_ci[1]
    mix = LatentMixture([0.5, 0.5], [GaussianState([-2.0], [[1.0]]), GaussianState([2.0], [[1.0]])])
    t = hdr_threshold(mix, 0.9, rng=rng, n_samples=50_000)
    m = hdr_mass(mix, t.log_threshold, rng=rng, n_samples=50_000, confidence=1 - 1e-6)
    assert m.ci[0] - 5 * t.mass_std_error <= 0.9 <= m.ci[1] + 5 * t.mass_std_error


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    d=st.integers(1, 6),
    logd=st.floats(-20, 0),
    scale=st.floats(0.05, 5),
)
def test_covering_radius_encloses_region(seed: int, d: int, logd: float, scale: float) -> None:
    rng = np.random.default_rng(seed)
    g = _gauss(rng, d, scale)
    delta = math.exp(logd)
    r = covering_radius(g, delta)
    pts = sample_state_region(g, delta, n=4000, rng=rng)
    if r.radius == 0.0:
        assert pts.shape[0] == 0
        return
    assert np.all(g.logpdf(pts) > math.log(delta) - 1e-9)  # the sampler stays in U^δ
    dist = np.linalg.norm(pts - g.loc, axis=1)
    assert dist.max() <= r.radius * (1 + 1e-12)
    # Minimality: the point at the end of the longest axis (just inside) is in U^δ.
    u, s, _ = np.linalg.svd(g.scale_tril)
    edge = g.loc + 0.999999 * r.radius * u[:, 0]
    assert g.logpdf(edge)[0] > math.log(delta)


def test_region_membership_and_hcdr() -> None:
    mix = LatentMixture([0.5, 0.5], [GaussianState([-3.0], [[1.0]]), GaussianState([3.0], [[1.0]])])
    x = np.array([[-3.0], [0.0], [3.0]])
    assert in_state_region(mix, x, delta=0.05, state=0).tolist() == [True, False, False]
    assert in_hcdr(mix, x, delta=0.05).tolist() == [True, False, True]
    with pytest.raises(ValueError, match="must be <= 1"):
        in_state_region(mix, x, delta=0.05, state=2)
    with pytest.raises(ValueError, match=r"`mass` must be in \(0, 1\)"):
        hdr_threshold(mix.states[0], 1.0)
