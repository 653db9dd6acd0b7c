"""The ball maximiser: the exact largest Gaussian density within ε of a point."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deltahall.theory.ball import max_log_density_in_ball
from deltahall.theory.mixtures import GaussianState


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31), d=st.integers(1, 4), eps=st.floats(0.1, 3))
def test_ball_maximum_against_dense_sampling(seed, d, eps) -> None:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((d, d))
    g = GaussianState(rng.standard_normal(d) * 3, a @ a.T + 0.2 * np.eye(d))
    c = rng.standard_normal(d)
    lf, x = max_log_density_in_ball(g, c, eps)
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


def test_ball_maximum_at_tiny_scale_is_exact() -> None:
    s = 1e-200
    g = GaussianState.isotropic([3 * s], s)
    lf, x = max_log_density_in_ball(g, [0.0], s)
    # the ball [-s, s] is closest to μ = 3s at x = s: Mahalanobis distance 2, log f = log peak - 2
    assert x[0] == pytest.approx(s, rel=1e-12)
    assert lf == pytest.approx(g.log_peak - 2.0, rel=1e-12)
