"""GaussianMixtureParams (the mixtures inside StateDensities) against sklearn's score_samples."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture

from deltahall.detectors._gmm import GaussianMixtureParams


@pytest.mark.parametrize("ct", ["full", "diag", "tied", "spherical"])
def test_log_density_equals_sklearn(ct):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 6)) * rng.uniform(0.5, 3, 6)
    Z = rng.normal(size=(257, 6)) * 4
    for j, k in enumerate([3, 1]):
        g = GaussianMixture(k, covariance_type=ct, random_state=0).fit(X + j)
        p = GaussianMixtureParams.from_sklearn(g)
        p.validate()
        np.testing.assert_allclose(p.log_density(Z), g.score_samples(Z), rtol=0, atol=1e-8)


def test_validate_refuses_bad_arrays():
    g = GaussianMixture(2, covariance_type="diag", random_state=0).fit(
        np.random.default_rng(0).normal(size=(50, 3))
    )
    p = GaussianMixtureParams.from_sklearn(g)
    with pytest.raises(ValueError, match=r"`precisions_cholesky` must have shape \(2, 3\)"):
        GaussianMixtureParams("diag", p.weights, p.means, p.precisions_cholesky[:, :2]).validate()
    with pytest.raises(ValueError, match="`means` contains NaN/inf"):
        GaussianMixtureParams("diag", p.weights, p.means * np.nan, p.precisions_cholesky).validate()
