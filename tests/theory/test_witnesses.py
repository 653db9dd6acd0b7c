"""Every witness δ-hallucinates by direct density evaluation; the paper's versions fail where stated."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy import stats

from deltahall.theory import as_written as AW
from deltahall.theory import witnesses as W
from deltahall.theory.mixtures import scaled_norm

deltas = st.one_of(st.sampled_from([1.0, 1e-300, 5e-324]), st.floats(1e-12, 1.0))
weights_st = st.integers(2, 6).flatmap(
    lambda n: st.lists(st.floats(1e-6, 1.0), min_size=n, max_size=n).map(
        lambda v: (np.array(v) / np.sum(v)).tolist()
    )
)
scales = st.floats(1e-100, 1e100)


def _direct_check(res: W.WitnessResult) -> None:
    """Re-evaluate densities independently of the builder."""
    logd = math.log(res.delta)
    at = res.mixture.log_component_pdf(res.estimate)[0]
    assert np.all(at <= logd), (at, logd)
    assert np.all(
        res.log_densities >= at - 1e-9 * np.maximum(1, np.abs(at))
    )  # ball max >= centre value
    assert res.hallucinates
    # maximisers lie in the ball and their density is what is reported
    dist = np.linalg.norm(res.argmax - res.estimate, axis=1)
    # tolerance: relative for eps, plus float64 resolution of the coordinates themselves
    coord_ulp = 4 * np.spacing(1.0 + np.abs(res.argmax).max() + np.abs(res.estimate).max())
    assert np.all(dist <= res.eps * (1 + 1e-9) + coord_ulp)


@settings(max_examples=40, deadline=None)
@given(delta=deltas, w=weights_st, dim=st.integers(1, 8), scale=scales)
def test_theorem_5_1(delta, w, dim, scale) -> None:
    _direct_check(W.theorem_5_1(delta, len(w), dim=dim, weights=w, scale=scale))


@settings(max_examples=40, deadline=None)
@given(
    delta=deltas,
    w=weights_st,
    dim=st.integers(1, 6),
    scale=st.floats(1e-50, 1e50),
    eps_rel=st.floats(0, 100),
)
def test_theorem_5_2_ball(delta, w, dim, scale, eps_rel) -> None:
    res = W.theorem_5_2(delta, len(w), eps=eps_rel * scale, dim=dim, weights=w, scale=scale)
    _direct_check(res)


@settings(max_examples=25, deadline=None)
@given(delta=deltas, w=weights_st, dim=st.integers(1, 5), lip=st.floats(0, 50), hb=st.floats(0, 50))
# a ball of radius 3e-28: the maximiser's distance is only resolved to float64 coordinate precision
@example(
    delta=1.0, w=[0.8707482993197279, 0.1292517006802721], dim=1, lip=1.0, hb=3.177712580849402e-28
)
def test_theorem_5_3(delta, w, dim, lip, hb) -> None:
    res = W.theorem_5_3(delta, len(w), lipschitz=lip, hint_bound=hb, dim=dim, weights=w)
    _direct_check(res)
    assert res.eps == pytest.approx(lip * hb)
    assert res.example_hallucinates


@settings(max_examples=30, deadline=None)
@given(delta=deltas, w=weights_st, extra_c=st.integers(0, 3), scale=st.floats(1e-3, 1e3))
def test_theorem_c_1(delta, w, extra_c, scale) -> None:
    res = W.theorem_c_1(
        delta, len(w), n_classes=max(2, len(w) - 1) + extra_c, weights=w, scale=scale
    )
    _direct_check(res)
    np.testing.assert_allclose(res.estimate.sum(), 1.0)  # a probability vector


def test_corollary_5_2_1() -> None:
    res = W.corollary_5_2_1(1e-4, 3, n_inputs=5, dim=2, weights=[0.2, 0.3, 0.5])
    assert res.hallucinates and len(res.witnesses) == 5
    for w in res.witnesses:
        _direct_check(w)


def test_general_covariance_and_scipy_agreement() -> None:
    cov = [[4.0, 1.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, 0.1]]
    res = W.theorem_5_2(0.01, 4, eps=5.0, dim=3, cov=cov)
    _direct_check(res)
    for s, lf in zip(res.mixture.states, res.log_densities, strict=True):
        ref = stats.multivariate_normal(s.loc, s.cov).logpdf(
            res.argmax[list(res.mixture.states).index(s)]
        )
        assert lf == pytest.approx(ref, rel=1e-9, abs=1e-9)


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
        (lambda: AW.theorem_5_2_as_written(0.1, 3), "even `n_states`"),
        (lambda: AW.theorem_c_1_as_written(1.0, 2), "undefined at `delta` = 1"),
    ],
)
def test_bad_inputs(call, match) -> None:
    with pytest.raises(ValueError, match=match):
        call()


BUILDERS = [
    (W.theorem_5_1, (0.1, 2, 1)),
    (W.theorem_5_2, (0.1, 2, 0.5)),
    (W.theorem_5_3, (0.1, 2, 1.0)),
    (W.corollary_5_2_1, (0.1, 2, 3)),
    (W.theorem_c_1, (0.1, 2, 3)),
    (AW.theorem_5_1_as_written, (0.1, 2, 1)),
    (AW.theorem_5_2_as_written, (0.1, 2, 0.5)),
    (AW.theorem_c_1_as_written, (0.1, 2, 0.3)),
]


@pytest.mark.parametrize(("builder", "args"), BUILDERS, ids=lambda x: getattr(x, "__name__", ""))
def test_builders_are_keyword_only_after_delta_and_n_states(builder, args) -> None:
    with pytest.raises(TypeError, match="positional argument"):
        builder(*args)
    builder(*args[:2])  # the two positional ones are enough


@pytest.mark.parametrize(
    "scale", [1e-300, 1e-200, 1e-180, 1e-160, 1e-100, 1.0, 1e100, 1e200, 1e290]
)
def test_5_2_and_5_3_hold_at_extreme_scales(scale) -> None:
    # 1e-200 with eps 3e-201 used to report "does NOT hallucinate" (norm underflow in the ball
    # maximisation); 5.3 at 1e-180 used to refuse with "x must contain only finite values".
    r2 = W.theorem_5_2(0.01, 3, eps=0.3 * scale, dim=2, scale=scale)
    assert r2.hallucinates and r2.log_margin > 0
    dist = scaled_norm(r2.argmax - r2.estimate, axis=1)
    assert np.all(dist <= 0.3 * scale * (1 + 1e-9)) and np.all(dist > 0.29 * scale)  # on the sphere
    r3 = W.theorem_5_3(1e-300, 2, lipschitz=3.0, hint_bound=0.1 * scale, scale=scale)
    assert r3.hallucinates and r3.example_hallucinates
    assert np.all(np.isfinite(r3.hints)) and np.allclose(np.abs(r3.hints), 0.1 * scale, rtol=1e-12)


def test_c_1_refuses_scales_beyond_float64_with_the_usable_range() -> None:
    with pytest.raises(
        ValueError, match=r"`scale` = 1e\+200 .* outside \[1e-300, 1e\+300\] .* use `scale` in \["
    ):
        W.theorem_c_1(1e-300, 2, scale=1e200)
    with pytest.raises(ValueError, match="`scale` = 1e-300"):
        W.theorem_c_1(0.5, 2, scale=1e-300)
    ok = W.theorem_c_1(1e-300, 2, scale=1e140)
    assert ok.hallucinates


def test_c_1_valid_variances_are_the_two_tails() -> None:
    # δ = 0.01, N = 2: the density at p_X is <= δ exactly for v <= v_lo or v >= v_hi.
    res = W.theorem_c_1(0.01, 2)
    v_lo, v_hi = math.exp(res.log_variance_low), math.exp(res.log_variance_high)
    assert v_lo == pytest.approx(0.0421, abs=5e-5) and v_lo < 1 / (
        4 * math.log(100)
    )  # paper: 0.0543

    def logf(v: float) -> float:
        return -math.log(2 * math.pi * v) - 0.25 / v

    assert logf(v_lo) <= math.log(0.01) < logf(v_lo * 1.01)
    assert logf(v_hi) <= math.log(0.01) < logf(v_hi / 1.01)
    assert logf(1 / (4 * math.log(100))) > math.log(0.01)  # the paper's stated threshold fails


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: W.theorem_5_1(0.1, 1_000_000), "`n_states` must be <= 10000"),
        (lambda: W.theorem_5_1(0.1, 2, dim=1_000_000), "`dim` must be <= 1024"),
        (lambda: W.theorem_5_2(0.1, 5000, dim=100), r"`n_states` \* `dim`\*\*2 must be <= 4194304"),
        (lambda: W.theorem_c_1(0.1, 1000), r"`n_states` \* `n_classes`\*\*2 must be <= 4194304"),
        (lambda: W.corollary_5_2_1(0.1, 2, n_inputs=10**6), "`n_inputs` must be <= 1000"),
        (lambda: W.theorem_5_1(0.1, 2, scale=1e-310), r"`scale` must be in \[1e-300, 1e\+300\]"),
        (
            lambda: W.theorem_5_1(0.1, 2, weights=[0.2, 0.8], scale=1e300),
            "puts a mean at distance 4e[+]300",
        ),
        (lambda: W.theorem_5_3(0.1, 2, lipschitz=1e200, hint_bound=1e200), "must be finite"),
        (
            lambda: AW.theorem_c_1_as_written(1e-300, 2, variance=0.0),
            r"`variance` must be in \(0, inf\)",
        ),
    ],
)
def test_sizes_and_scales_refused_up_front(call, match) -> None:
    with pytest.raises(ValueError, match=match):
        call()
