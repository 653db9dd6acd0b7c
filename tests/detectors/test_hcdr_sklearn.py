"""scikit-learn's estimator checks on HCDRDetector (all pass; no expected failures)."""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from deltahall.detectors import HCDRDetector


# The checks use tiny data (often < 20 rows, few features), so the instance under test uses
# no PCA, one component and a held-out minimum of one row; the defaults are tested elsewhere.
@parametrize_with_checks([HCDRDetector(pca_dim=None, n_components=1, min_holdout=1, random_state=0)])
def test_sklearn_compatible(estimator, check):
    check(estimator)
