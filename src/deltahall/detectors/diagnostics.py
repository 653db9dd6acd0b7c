"""Diagnostics for trusting an :class:`~deltahall.detectors.HCDRDetector`.

* :func:`coverage_report` — each state's coverage on its calibration part against its
  nominal mass ``1 - alpha`` (the thresholds are set on that part, so the coverage is close
  to nominal by construction; a large gap means too few calibration rows).
* :func:`rate_curve` — the hallucination rate as a function of the level ``100 alpha``, not
  one point.
* :func:`make_gaussian_states`, :func:`true_hcdr_membership`, :func:`synthetic_check` — on
  Gaussian states the true region of Definition 6.2 is known: the highest-density region of
  mass :math:`m` of :math:`N(\\mu_i, \\Sigma_i)` is the Mahalanobis ellipsoid
  :math:`(a-\\mu_i)^\\top \\Sigma_i^{-1} (a-\\mu_i) \\le \\chi^2_d(m)`, so the detector's
  "outside" flags can be scored for precision and recall against the truth. The truth comes
  from the theory layer (:class:`deltahall.theory.GaussianState` and
  :func:`deltahall.theory.hdr_threshold`, Appendix A), not from a second copy here. Affine maps
  (PCA without truncation, z-scoring) preserve density level sets, so the truth can be
  evaluated in the original space; L2-normalisation does not, hence ``normalize=False``
  (and ``pca_dim=None``: the scorer then models every principal coordinate).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.utils.validation import check_is_fitted

from deltahall._validation import check_int, check_real
from deltahall.detectors.hcdr import HCDRDetector
from deltahall.stats import detection_scores
from deltahall.theory.mixtures import GaussianState
from deltahall.theory.regions import hdr_threshold

__all__ = [
    "CoverageReport",
    "GaussianStates",
    "RateCurve",
    "SyntheticCheck",
    "coverage_on",
    "coverage_report",
    "make_gaussian_states",
    "rate_curve",
    "synthetic_check",
    "true_hcdr_membership",
]


@dataclass(frozen=True)
class CoverageReport:
    """Coverage of each state's region on its calibration part against its nominal mass.

    ``n_holdout`` is the state's calibration size :math:`m_i`; ``std_error`` is the binomial
    standard error ``sqrt(m (1-m) / n_holdout)`` of a coverage estimate on ``n_holdout``
    fresh rows; ``gap`` is ``holdout_coverage - nominal_mass``.
    """

    classes: list[Any]
    nominal_mass: float
    holdout_coverage: npt.NDArray[np.float64]
    n_holdout: npt.NDArray[np.int64]
    std_error: npt.NDArray[np.float64]
    gap: npt.NDArray[np.float64]

    def rows(self) -> list[dict[str, Any]]:
        """One dict per state, for tables and CSV."""
        return [
            {
                "state": c,
                "n_holdout": int(n),
                "nominal_mass": self.nominal_mass,
                "holdout_coverage": float(cov),
                "std_error": float(se),
                "gap": float(g),
            }
            for c, n, cov, se, g in zip(
                self.classes,
                self.n_holdout,
                self.holdout_coverage,
                self.std_error,
                self.gap,
                strict=True,
            )
        ]


def coverage_report(detector: HCDRDetector) -> CoverageReport:
    """Calibration-part coverage vs nominal mass ``1 - alpha`` for each state."""
    check_is_fitted(detector)
    m = 1.0 - float(detector.alpha)
    n = np.asarray(detector.n_calibration_, dtype=np.int64)
    cov = np.asarray(detector.holdout_coverage_, dtype=np.float64)
    return CoverageReport(
        classes=np.asarray(detector.classes_).tolist(),
        nominal_mass=m,
        holdout_coverage=cov,
        n_holdout=n,
        std_error=np.sqrt(m * (1.0 - m) / n),
        gap=cov - m,
    )


def coverage_on(
    detector: HCDRDetector, X: npt.ArrayLike, y: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """Fraction of fresh rows of each state that fall inside that state's own region.

    Unlike ``holdout_coverage_`` (close to nominal by construction), this measures how well
    the fitted regions generalise; expect ``1 - alpha`` up to sampling error (conformal: at
    least ``1 - alpha`` on average over calibration draws).
    """
    member = detector.state_membership(X)
    y = np.asarray(y)
    out = np.full(len(detector.classes_), np.nan)
    for i, c in enumerate(detector.classes_):
        rows = y == c
        if rows.any():
            out[i] = member[rows, i].mean()
    return out


@dataclass(frozen=True)
class RateCurve:
    """Hallucination rate of a set of embeddings at each level ``percentile = 100 alpha``."""

    percentiles: npt.NDArray[np.float64]
    rates: npt.NDArray[np.float64]
    nominal_mass: npt.NDArray[np.float64] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "nominal_mass", 1.0 - self.percentiles / 100.0)

    def rows(self) -> list[dict[str, float]]:
        return [
            {"percentile": float(p), "nominal_mass": float(m), "rate": float(r)}
            for p, m, r in zip(self.percentiles, self.nominal_mass, self.rates, strict=True)
        ]


def rate_curve(
    detector: HCDRDetector, X: npt.ArrayLike, percentiles: npt.ArrayLike | None = None
) -> RateCurve:
    """The rate as a curve over the level ``100 alpha`` (default 0, 1, ..., 50), without refitting."""
    p = np.arange(0.0, 51.0) if percentiles is None else np.asarray(percentiles, dtype=np.float64)
    return RateCurve(percentiles=np.atleast_1d(p), rates=detector.rate_curve(X, p))


@dataclass(frozen=True)
class GaussianStates:
    """Labelled samples from Gaussian latent states ``N(means[i], covs[i])``."""

    X: npt.NDArray[np.float64]
    y: npt.NDArray[np.int64]
    means: npt.NDArray[np.float64]
    covs: npt.NDArray[np.float64]


def make_gaussian_states(
    n_per_state: int,
    means: npt.ArrayLike,
    covs: npt.ArrayLike | None = None,
    *,
    rng: np.random.Generator | int | None = None,
) -> GaussianStates:
    """Draw ``n_per_state`` rows from each state ``N(means[i], covs[i])`` (identity by default).

    Parameters
    ----------
    n_per_state : int
    means : array-like of shape (n_states, d)
    covs : array-like of shape (n_states, d, d), optional
    rng : numpy Generator or seed
    """
    n_per_state = check_int(n_per_state, "n_per_state", low=1)
    mu = np.atleast_2d(np.asarray(means, dtype=np.float64))
    s, d = mu.shape
    cv = (
        np.broadcast_to(np.eye(d), (s, d, d)).copy()
        if covs is None
        else np.asarray(covs, dtype=np.float64)
    )
    if cv.shape != (s, d, d):
        raise ValueError(f"`covs` must have shape {(s, d, d)} to match `means`; got {cv.shape}.")
    gen = np.random.default_rng(rng)
    X = np.vstack([gen.multivariate_normal(mu[i], cv[i], size=n_per_state) for i in range(s)])
    return GaussianStates(X=X, y=np.repeat(np.arange(s), n_per_state), means=mu, covs=cv)


def true_hcdr_membership(
    X: npt.ArrayLike, means: npt.ArrayLike, covs: npt.ArrayLike, mass: float
) -> npt.NDArray[np.bool_]:
    """Is each row inside the true mass-``mass`` highest-density region of each Gaussian state.

    Returns
    -------
    ndarray of bool, shape (n, n_states): squared Mahalanobis distance <= chi2.ppf(mass, d).

    Raises
    ------
    ValueError
        ``mass`` outside (0, 1); a covariance that is not positive definite; rows of ``X`` of
        another dimension than ``means``.

    Examples
    --------
    >>> true_hcdr_membership([[0.0], [3.0]], [[0.0]], [[[1.0]]], 0.95).ravel().tolist()
    [True, False]
    """
    mass = check_real(mass, "mass", low=0.0, high=1.0, low_open=True, high_open=True)
    mu = np.atleast_2d(np.asarray(means, dtype=np.float64))
    cv = np.asarray(covs, dtype=np.float64)
    states = [GaussianState(mu[i], cv[i]) for i in range(mu.shape[0])]
    # HDR_m = {a : log f(a) >= log c_m}, log c_m = log peak - chi2_d(m) / 2 (exact for a Gaussian)
    return np.stack([g.logpdf(X) >= hdr_threshold(g, mass).log_threshold for g in states], axis=1)


@dataclass(frozen=True)
class SyntheticCheck:
    """Detector vs true HCDR on Gaussian states (see :func:`synthetic_check`)."""

    precision: float
    recall: float
    accuracy: float
    true_outside_rate: float
    detected_outside_rate: float
    holdout_coverage: npt.NDArray[np.float64]
    fresh_coverage: npt.NDArray[np.float64]
    n_test: int


def synthetic_check(
    *,
    dim: int = 8,
    n_states: int = 2,
    separation: float = 8.0,
    n_per_state: int = 2000,
    n_test: int = 20000,
    alpha: float = 0.1,
    calibration: str = "conformal",
    calibration_fraction: float = 0.3,
    n_components: int | str = "auto",
    covariance_type: str = "auto",
    rng: np.random.Generator | int | None = None,
) -> SyntheticCheck:
    """Fit a detector on Gaussian states and score its "outside" flags against the truth.

    States are ``N(mu_i, Sigma_i)`` with means on a scaled simplex-like layout
    (``separation`` apart along the axes) and random SPD covariances. Test points are half
    drawn from the states and half from a Gaussian three times wider around their centroid,
    so both classes are well represented. The truth is the mass ``1 - alpha`` region of
    each state (Definition 6.2 at the δ that gives that mass).
    """
    gen = np.random.default_rng(rng)
    dim = check_int(dim, "dim", low=1)
    n_states = check_int(n_states, "n_states", low=2, high=dim + 1)
    means = np.zeros((n_states, dim))
    for i in range(1, n_states):
        means[i, i - 1] = separation
    covs = np.empty((n_states, dim, dim))
    for i in range(n_states):
        a = gen.normal(size=(dim, dim)) / np.sqrt(dim)
        covs[i] = a @ a.T * 0.5 + 0.5 * np.eye(dim)
    train = make_gaussian_states(n_per_state, means, covs, rng=gen)
    det = HCDRDetector(
        calibration=calibration,  # type: ignore[arg-type]
        alpha=alpha,
        calibration_fraction=calibration_fraction,
        pca_dim=None,
        normalize=False,
        n_components=n_components,
        covariance_type=covariance_type,
        random_state=int(gen.integers(2**31 - 1)),
    ).fit(train.X, train.y)
    n_in = n_test // 2
    inner = make_gaussian_states(max(n_in // n_states, 1), means, covs, rng=gen).X
    spread = np.cov(train.X.T) * 9.0
    outer = gen.multivariate_normal(train.X.mean(axis=0), spread, size=n_test - inner.shape[0])
    T = np.vstack([inner, outer])
    true_out = ~true_hcdr_membership(T, means, covs, 1.0 - alpha).any(axis=1)
    det_out = det.predict(T) == -1
    scores = detection_scores(det_out, true_out)
    prec, rec = scores.precision, scores.recall
    fresh = make_gaussian_states(n_per_state, means, covs, rng=gen)
    return SyntheticCheck(
        precision=prec,
        recall=rec,
        accuracy=float(np.mean(det_out == true_out)),
        true_outside_rate=float(true_out.mean()),
        detected_outside_rate=float(det_out.mean()),
        holdout_coverage=np.asarray(det.holdout_coverage_),
        fresh_coverage=coverage_on(det, fresh.X, fresh.y),
        n_test=int(T.shape[0]),
    )
