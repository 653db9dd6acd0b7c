"""scikit-learn's estimator checks on HCDRDetector.

The checks use tiny data (often < 20 rows, few features), so the instances under test use no
PCA, one component and a held-out minimum of one row; the defaults are tested elsewhere.

Without L2 normalisation every check passes. With it (the default), one check is an expected,
strict failure: ``check_estimators_dtypes`` fits on ``(3 * uniform(size=(20, 5))).astype(int)``,
whose rows are all zero with probability (1/3)^5 each (here row 15). ``x / |x|`` is undefined
for such a row, and refusing it at fit is the point of issue 8 (before, a state of zero rows fit a
detector that flagged all of its own training rows).
"""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from deltahall.detectors import HCDRDetector

_ZERO_ROWS = (
    "integer-truncated random data holds all-zero rows; L2 normalisation (normalize=True) is "
    "undefined for them and fit refuses them"
)


def _expected_failures(estimator: HCDRDetector) -> dict[str, str]:
    return {"check_estimators_dtypes": _ZERO_ROWS} if estimator.normalize else {}


@parametrize_with_checks(
    [
        HCDRDetector(pca_dim=None, n_components=1, min_holdout=1, normalize=False, random_state=0),
        HCDRDetector(pca_dim=None, n_components=1, min_holdout=1, random_state=0),
    ],
    expected_failed_checks=_expected_failures,
    xfail_strict=True,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
