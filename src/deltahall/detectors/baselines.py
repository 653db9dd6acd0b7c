"""What a user would pick instead of the HCDR, each calibrated to the same false-flag rate.

Every baseline turns an embedding into a *typicality score* (higher = more like the real
data), fitted on the fit part of the reference set. Its threshold is then set on the
calibration part with the same split-conformal rule as the HCDR
(:func:`~deltahall.detectors.calibrators.conformal_p_values`, the one home of that rule)
— but pooled over states, since these scores have no per-state structure — so every
method flags about the same fraction α of held-out real samples and their precision /
recall of "outside" can be compared at equal false-flag rate.

- ``"elliptic-envelope"``: one Gaussian over all states (sklearn ``EllipticEnvelope``,
  robust covariance); score = minus the Mahalanobis distance.
- ``"mahalanobis"``: class-conditional Gaussians with one shared covariance
  (Lee et al. 2018's OOD score, pytorch-ood / lm-polygraph); score = minus the smallest
  Mahalanobis distance over classes.
- ``"knn-radius"``: the k-nearest-neighbour balls of the real samples (the manifold of
  improved precision/recall, Kynkäänniemi et al. 2019); score = minus
  :math:`\\min_r \\lVert z - r \\rVert / \\rho_k(r)`, below -1 outside every ball.
- ``"lof"``: ``LocalOutlierFactor(novelty=True)``; score = its ``score_samples``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from deltahall._validation import check_choice, check_real
from deltahall.detectors.calibrators import conformal_p_values

__all__ = ["BASELINES", "CalibratedBaseline", "fit_baseline"]

BASELINES = ("elliptic-envelope", "mahalanobis", "knn-radius", "lof")


@dataclass
class CalibratedBaseline:
    """A fitted typicality score with a conformal threshold at level ``alpha``.

    Attributes
    ----------
    name : str
    alpha : float
    calibration_scores : ndarray
        Sorted scores of the calibration part.
    """

    name: str
    alpha: float
    model: Any
    calibration_scores: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty(0))

    def score(self, X: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Typicality scores, shape (n,): higher = more like the real data."""
        return np.asarray(self.model(np.asarray(X, dtype=np.float64)), dtype=np.float64)

    def p_values(self, X: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Conformal p-values against the pooled calibration scores, shape (n,)."""
        return conformal_p_values(self.calibration_scores, self.score(X))

    def flagged(self, X: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Boolean (n,): outside at level ``alpha``."""
        return np.asarray(self.p_values(X) <= self.alpha)


def _elliptic(X: Any, y: Any, rs: int) -> Any:
    import warnings

    from sklearn.covariance import EllipticEnvelope

    with warnings.catch_warnings():
        # MinCovDet's "Determinant has increased" is a numerical note of its C-step, not a failure
        warnings.filterwarnings(
            "ignore", message="Determinant has increased", category=RuntimeWarning
        )
        m = EllipticEnvelope(support_fraction=None, random_state=rs).fit(X)
    return m.score_samples


def _mahalanobis(X: Any, y: Any, rs: int) -> Any:
    classes = np.unique(y)
    means = np.stack([X[y == c].mean(axis=0) for c in classes])
    resid = X - means[np.searchsorted(classes, y)]
    cov = resid.T @ resid / max(X.shape[0] - classes.size, 1)
    cov += 1e-6 * np.trace(cov) / cov.shape[0] * np.eye(cov.shape[0])
    L = np.linalg.cholesky(np.linalg.inv(cov))  # inv = L L^T, so d^2 = |(x - mu) L|^2
    mL = means @ L

    def score(Z: Any) -> Any:
        zL = Z @ L
        d2 = (zL**2).sum(1)[:, None] - 2 * zL @ mL.T + (mL**2).sum(1)[None, :]
        return -np.maximum(d2, 0.0).min(axis=1)

    return score


def _knn(X: Any, y: Any, rs: int, k: int = 5) -> Any:
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=k + 1).fit(X)
    radius = nn.kneighbors(X)[0][:, k]  # k-th neighbour other than itself
    radius = np.maximum(radius, 1e-12)
    n_check = min(X.shape[0], 50)
    nn_q = NearestNeighbors(n_neighbors=n_check).fit(X)

    def score(Z: Any) -> Any:
        dist, idx = nn_q.kneighbors(Z)
        return -(dist / radius[idx]).min(axis=1)  # the best ball among the nearest n_check reals

    return score


def _lof(X: Any, y: Any, rs: int) -> Any:
    from sklearn.neighbors import LocalOutlierFactor

    n_neighbors = min(20, X.shape[0] - 1)
    m = LocalOutlierFactor(n_neighbors=n_neighbors, novelty=True).fit(X)
    return m.score_samples


_FITTERS = {
    "elliptic-envelope": _elliptic,
    "mahalanobis": _mahalanobis,
    "knn-radius": _knn,
    "lof": _lof,
}


def fit_baseline(
    name: str,
    X_fit: npt.ArrayLike,
    y_fit: npt.ArrayLike,
    X_cal: npt.ArrayLike,
    *,
    alpha: float,
    random_state: int = 0,
) -> CalibratedBaseline:
    """Fit baseline ``name`` on the fit part and calibrate its threshold on ``X_cal``.

    Parameters
    ----------
    name : {"elliptic-envelope", "mahalanobis", "knn-radius", "lof"}
    X_fit : array-like of shape (n, d)
    y_fit : array-like of shape (n,)
        State labels (used by ``"mahalanobis"`` only).
    X_cal : array-like of shape (m, d)
        Calibration rows (all states pooled); ``m + 1 >= 1/alpha``.
    alpha : float in (0, 1)

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.normal(size=(200, 2)), np.repeat([0, 1], 100)
    >>> b = fit_baseline("mahalanobis", X[:150], y[:150], X[150:], alpha=0.1)
    >>> bool(b.flagged(np.array([[8.0, 8.0]]))[0])
    True
    """
    check_choice(name, "name", BASELINES)
    alpha = check_real(alpha, "alpha", low=0.0, high=1.0, low_open=True, high_open=True)
    Xf = np.asarray(X_fit, dtype=np.float64)
    Xc = np.asarray(X_cal, dtype=np.float64)
    if Xc.shape[0] + 1 < math.ceil(1.0 / alpha - 1e-9):
        raise ValueError(
            f"`X_cal` must have m rows with m + 1 >= 1/alpha = {1 / alpha:g}; got m={Xc.shape[0]}."
        )
    model = _FITTERS[name](Xf, np.asarray(y_fit), random_state)
    b = CalibratedBaseline(name=name, alpha=alpha, model=model)
    b.calibration_scores = np.sort(b.score(Xc))
    return b
