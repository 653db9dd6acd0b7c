"""Every witness δ-hallucinates by direct density evaluation; the paper's versions fail where stated."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy import stats

from deltahall.theory import witnesses as W
from deltahall.theory.mixtures import GaussianState

deltas = st.one_of(st.sampled_from([1.0, 1e-300, 5e-324]), st.floats(1e-12, 1.0))
weights_st = st.integers(2, 6).flatmap(
    lambda n: st.lists(st.floats(1e-6, 1.0), min_size=n, max_size=n).map(lambda v: (np.array(v) / np.sum(v)).tolist())
)
scales = st.floats(1e-100, 1e100)


def _direct_check(res: W.WitnessResult) -> None:
    """Re-evaluate densities independently of the builder."""
    logd = math.log(res.delta)
    at = res.mixture.log_component_pdf(res.estimate)[0]
    assert np.all(at <= logd), (at, logd)
    assert np.all(res.log_densities >= at - 1e-9 * np.maximum(1, np.abs(at)))  # ball max >= centre value
    assert res.hallucinates
    # maximisers lie in the ball and their density is what is reported
    dist = np.linalg.norm(res.argmax - res.estimate, axis=1)
    # tolerance: relative for eps, plus float64 resolution of the coordinates themselves
    coord_ulp = 4 * np.spacing(1.0 + np.abs(res.argmax).max() + np.abs(res.estimate).max())
    assert np.all(dist <= res.eps * (1 + 1e-9) + coord_ulp)


@settings(max_examples=40, deadline=None)
@given(delta=deltas, w=weights_st, dim=st.integers(1, 8), scale=scales)
def test_theorem_5_1(delta, w, dim, scale) -> None:
    _direct_check(W.theorem_5_1(delta, len(w), dim, w, scale))


@settings(max_examples=40, deadline=None)
@given(delta=deltas, w=weights_st, dim=st.integers(1, 6), scale=st.floats(1e-50, 1e50), eps_rel=st.floats(0, 100))
def test_theorem_5_2_ball(delta, w, dim, scale, eps_rel) -> None:
    res = W.theorem_5_2(delta, len(w), dim, w, eps=eps_rel * scale, scale=scale)
    _direct_check(res)


@settings(max_examples=25, deadline=None)
@given(delta=deltas, w=weights_st, dim=st.integers(1, 5), lip=st.floats(0, 50), hb=st.floats(0, 50))
# a ball of radius 3e-28: the maximiser's distance is only resolved to float64 coordinate precision
@example(delta=1.0, w=[0.8707482993197279, 0.1292517006802721], dim=1, lip=1.0, hb=3.177712580849402e-28)
def test_theorem_5_3(delta, w, dim, lip, hb) -> None:
    res = W.theorem_5_3(delta, len(w), dim, w, lipschitz=lip, hint_bound=hb)
    _direct_check(res)
    assert res.eps == pytest.approx(lip * hb)
    assert res.extra["example_hallucinates"]


@settings(max_examples=30, deadline=None)
@given(delta=deltas, w=weights_st, extra_c=st.integers(0, 3), scale=st.floats(1e-3, 1e3))
def test_theorem_c_1(delta, w, extra_c, scale) -> None:
    res = W.theorem_c_1(delta, len(w), max(2, len(w) - 1) + extra_c, w, scale)
    _direct_check(res)
    np.testing.assert_allclose(res.estimate.sum(), 1.0)  # a probability vector


def test_corollary_5_2_1() -> None:
    res = W.corollary_5_2_1(1e-4, 5, 3, 2, [0.2, 0.3, 0.5])
    assert res.hallucinates and len(res.witnesses) == 5
    for w in res.witnesses:
        _direct_check(w)


def test_general_covariance_and_scipy_agreement() -> None:
    cov = [[4.0, 1.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, 0.1]]
    res = W.theorem_5_2(0.01, 4, 3, eps=5.0, cov=cov)
    _direct_check(res)
    for s, lf in zip(res.mixture.states, res.log_densities, strict=True):
        ref = stats.multivariate_normal(s.loc, s.cov).logpdf(res.argmax[list(res.mixture.states).index(s)])
        assert lf == pytest.approx(ref, rel=1e-9, abs=1e-9)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31), d=st.integers(1, 4), eps=st.floats(0.1, 3))
def test_ball_maximum_against_dense_sampling(seed, d, eps) -> None:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((d, d))
    g = GaussianState(rng.standard_normal(d) * 3, a @ a.T + 0.2 * np.eye(d))
    c = rng.standard_normal(d)
    lf, x = W.max_log_density_in_ball(g, c, eps)
    z = rng.standard_normal((100_000, d))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    inner = c + eps * z * rng.random((100_000, 1)) ** (1 / d)
    sampled = max(g.logpdf(c + eps * z).max(), g.logpdf(inner).max())
    assert sampled <= lf + 1e-9  # nothing sampled beats the exact maximum
    assert np.linalg.norm(x - c) <= eps * (1 + 1e-9)
    assert g.logpdf(x)[0] == pytest.approx(lf, abs=1e-8)
    # and a fine local search around the maximiser finds nothing better
    local = x + 1e-3 * eps * rng.standard_normal((20_000, d))
    local = local[np.linalg.norm(local - c, axis=1) <= eps]
    if local.size:
        assert g.logpdf(local).max() <= lf + 1e-9


def test_paper_slips_reproduced() -> None:
    a = W.theorem_5_1_as_written(0.1, 2, weights=[0.01, 0.99])
    assert not a.hallucinates and a.densities[1] == pytest.approx(3.8968, rel=1e-4)
    b = W.theorem_5_1_as_written(0.01, 2, dim=2, cov_scale=2.0)
    assert not b.hallucinates and b.densities[0] == pytest.approx(0.032538, rel=1e-4)
    assert W.theorem_5_1_as_written(0.1, 2).hallucinates  # equal weights happen to work
    c = W.theorem_5_2_as_written(0.01, 4, weights=[0.25, 0.4, 0.25, 0.1], eps=0.5)
    assert not c.hallucinates and c.densities[1] == pytest.approx(1 / math.sqrt(2 * math.pi), rel=1e-9)
    assert c.extra["log_density_state_N_at_0"] > math.log(0.01)
    e = W.theorem_c_1_as_written(0.01, 2)
    assert not e.hallucinates
    assert e.extra["paper_formula_density"] == pytest.approx(0.017122, rel=1e-4)
    assert e.densities[0] == pytest.approx(0.029317, rel=1e-4)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: W.theorem_5_1(1.5, 2), r"`delta` must be in \(0, 1\]; got 1.5"),
        (lambda: W.theorem_5_1(0.0, 2), r"`delta` must be in \(0, 1\]"),
        (lambda: W.theorem_5_1(float("nan"), 2), "`delta` must be finite"),
        (lambda: W.theorem_5_1(0.1, 1), "`n_states` must be >= 2"),
        (lambda: W.theorem_5_1(0.1, 2, weights=[0.3, 0.3]), "`weights` must sum to 1"),
        (lambda: W.theorem_5_1(0.1, 2, weights=[0.5, 0.5, 0.0]), "n_states = 2 entries"),
        (lambda: W.theorem_5_1(0.1, 2, dim=2, cov=[[1, 2], [2, 1]]), "positive definite"),
        (lambda: W.theorem_5_1(0.1, 2, scale=-1.0), "`scale` must be in"),
        (lambda: W.theorem_5_2(0.1, 2, eps=-1.0), "`eps` must be in"),
        (lambda: W.theorem_5_2(0.1, 2, eps=float("nan")), "`eps` must be finite"),
        (lambda: W.theorem_5_3(0.1, 2, lipschitz=-1.0), "`lipschitz` must be in"),
        (lambda: W.theorem_c_1(0.1, 2, n_classes=1), "`n_classes` must be >= 2"),
        (lambda: W.theorem_5_2_as_written(0.1, 3), "even `n_states`"),
        (lambda: W.theorem_c_1_as_written(1.0, 2), "undefined at `delta` = 1"),
    ],
)
def test_bad_inputs(call, match) -> None:
    with pytest.raises(ValueError, match=match):
        call()
