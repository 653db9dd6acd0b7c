"""Baselines calibrated to the same false-flag rate: level on fresh real data, a reference computation, errors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import mahalanobis

from deltahall.detectors.baselines import BASELINES, fit_baseline

MEANS = np.array([[-4.0, 0.0, 0.0], [4.0, 0.0, 0.0]])


def _draw(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    y = rng.integers(0, 2, n)
    return MEANS[y] + rng.normal(size=(n, 3)), y


@pytest.mark.parametrize("name", BASELINES)
def test_flags_about_alpha_of_fresh_real_and_far_points(name: str) -> None:
    rng = np.random.default_rng(0)
    Xf, yf = _draw(rng, 400)
    Xc, _ = _draw(rng, 300)
    Xt, _ = _draw(rng, 2000)
    b = fit_baseline(name, Xf, yf, Xc, alpha=0.1, random_state=0)
    rate = b.flagged(Xt).mean()
    assert 0.05 < rate < 0.16, rate  # conformal level 0.1 with m = 300 calibration rows
    assert b.flagged(np.array([[0.0, 30.0, 30.0]]))[0]


def test_mahalanobis_matches_scipy() -> None:
    rng = np.random.default_rng(1)
    Xf, yf = _draw(rng, 300)
    b = fit_baseline("mahalanobis", Xf, yf, Xf[:50], alpha=0.1)
    means = np.stack([Xf[yf == c].mean(0) for c in (0, 1)])
    resid = Xf - means[yf]
    cov = resid.T @ resid / (Xf.shape[0] - 2)
    cov += 1e-6 * np.trace(cov) / 3 * np.eye(3)
    VI = np.linalg.inv(cov)
    Z = rng.normal(size=(20, 3)) * 3
    ref = [-min(mahalanobis(z, mu, VI) ** 2 for mu in means) for z in Z]
    np.testing.assert_allclose(b.score(Z), ref, rtol=1e-8, atol=1e-8)


def test_errors() -> None:
    X = np.zeros((20, 2))
    with pytest.raises(ValueError, match="`name` must be one of"):
        fit_baseline("isolation-forest", X, np.zeros(20), X, alpha=0.1)
    with pytest.raises(ValueError, match=r"m \+ 1 >= 1/alpha = 10; got m=5"):
        fit_baseline("mahalanobis", X, np.zeros(20), X[:5], alpha=0.1)
