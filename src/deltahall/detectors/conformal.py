"""A calibrated HCDR: split-conformal p-values per latent state.

The HCDR detector of Section 7.3 thresholds each state's log-density at a percentile of
held-out real log-densities; that percentile carries no finite-sample statement. Here the
same per-state densities :math:`\\hat f_i` (Gaussian mixtures, fitted by
:class:`~deltahall.detectors.HCDRDetector` on a *fit* part) are calibrated on a disjoint
*calibration* part. With :math:`s_{i,1}, \\dots, s_{i,m_i}` the calibration log-densities
of state :math:`i` under its own mixture,

.. math::

    p_i(z) = \\frac{1 + \\#\\{j : s_{i,j} \\le \\log \\hat f_i(z)\\}}{m_i + 1},
    \\qquad p(z) = \\max_i p_i(z),

and :math:`z` is flagged (outside the HCDR, a δ-hallucination by Remark 6.1) when
:math:`p(z) \\le \\alpha`. For a fresh real sample of state :math:`j`, exchangeable with
state :math:`j`'s calibration samples, :math:`p_j(z)` is a conformal p-value, so

.. math::

    \\Pr[p(z) \\le \\alpha] \\le \\Pr[p_j(z) \\le \\alpha]
    = \\frac{\\lfloor \\alpha (m_j + 1) \\rfloor}{m_j + 1} \\le \\alpha,

whatever the state — the guarantee holds for every state, not only on average. It needs
:math:`m_j + 1 \\ge 1/\\alpha` (otherwise no sample can ever be flagged).

``calibration="percentile"`` keeps the paper's rule on the same calibration part:
:math:`\\tau_i` = the ``100 α``-th percentile of :math:`s_{i,\\cdot}` and flagged iff
:math:`\\log \\hat f_i(z) < \\tau_i` for every :math:`i`.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from deltahall.detectors.hcdr import HCDRDetector

logger = logging.getLogger(__name__)

__all__ = ["CALIBRATIONS", "ConformalHCDR", "conformal_p_values", "stratified_split"]

CALIBRATIONS = ("conformal", "percentile")


def stratified_split(
    y_idx: npt.NDArray[np.intp], fractions: tuple[float, ...], rng: Any
) -> list[npt.NDArray[np.intp]]:
    """Split row indices into parts with the given fractions, separately within each state.

    Parameters
    ----------
    y_idx : ndarray of shape (n,)
        State index of every row.
    fractions : tuple of float
        Fractions of each state's rows in each part; must sum to 1. Every part but the
        first gets ``floor(fraction * n_state)`` rows (at least one where the state has
        rows to spare); the first part gets the rest.
    rng : numpy Generator, int or None

    Returns
    -------
    list of ndarray
        Sorted row indices of each part.
    """
    rng = np.random.default_rng(rng)
    parts: list[list[npt.NDArray[np.intp]]] = [[] for _ in fractions]
    for s in np.unique(y_idx):
        idx = rng.permutation(np.flatnonzero(y_idx == s))
        sizes = [int(math.floor(f * idx.size)) for f in fractions[1:]]
        start = idx.size - sum(sizes)
        parts[0].append(idx[:start])
        for k, size in enumerate(sizes, start=1):
            parts[k].append(idx[start : start + size])
            start += size
    return [np.sort(np.concatenate(p)) if p else np.empty(0, dtype=np.intp) for p in parts]


def conformal_p_values(
    sorted_cal: list[npt.NDArray[np.float64]], scores: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Per-state conformal p-values :math:`p_i(z)`, shape (n, n_states).

    Parameters
    ----------
    sorted_cal : list of ndarray
        Each state's calibration scores, sorted ascending.
    scores : ndarray of shape (n, n_states)
        Log-densities :math:`\\log \\hat f_i(z)`.

    Examples
    --------
    >>> import numpy as np
    >>> conformal_p_values([np.array([0.0, 1.0, 2.0])], np.array([[-1.0], [1.0], [5.0]])).ravel().tolist()
    [0.25, 0.75, 1.0]
    """
    out = np.empty(scores.shape, dtype=np.float64)
    for i, cal in enumerate(sorted_cal):
        counts = np.searchsorted(cal, scores[:, i], side="right")
        out[:, i] = (1.0 + counts) / (cal.size + 1.0)
    return out


class ConformalHCDR(BaseEstimator):  # type: ignore[misc]
    """HCDR with split-conformal calibration: a level α with a finite-sample guarantee.

    Parameters
    ----------
    alpha : float, default=0.1
        Flag level in (0, 1): a fresh real sample is flagged with probability ≤ ``alpha``.
    calibration : {"conformal", "percentile"}, default="conformal"
        ``"percentile"`` is the paper's rule (threshold at the ``100 alpha``-th percentile
        of the calibration log-densities), kept for reproduction.
    calibration_fraction : float, default=0.4
        Fraction of each state's rows used for calibration (the rest fit the mixtures).
    pca_dim, n_components, covariance_type, normalize, reg_covar, n_jobs
        Passed to :class:`~deltahall.detectors.HCDRDetector` (the per-state mixtures).
    random_state : int, RandomState or None
        Seeds the split and the mixtures.

    Attributes
    ----------
    detector_ : HCDRDetector
        Mixtures fitted on the fit part (its own percentile thresholds are not used).
    classes_ : ndarray of shape (n_states,)
    calibration_scores_ : list of ndarray
        Sorted calibration log-densities of each state under its own mixture.
    n_calibration_ : ndarray of int, shape (n_states,)
        :math:`m_i`.
    thresholds_ : ndarray of shape (n_states,)
        Log-density thresholds equivalent to the rule (inside iff
        :math:`\\log\\hat f_i(z) \\ge \\tau_i` for some state): the
        :math:`\\lfloor\\alpha(m_i+1)\\rfloor`-th smallest calibration score (conformal)
        or the ``100 alpha``-th percentile (paper's rule).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack([rng.normal(-4, 1, (300, 2)), rng.normal(4, 1, (300, 2))])
    >>> y = np.repeat([0, 1], 300)
    >>> det = ConformalHCDR(alpha=0.1, pca_dim=None, normalize=False, n_components=1,
    ...                     random_state=0).fit(X, y)
    >>> det.predict(np.array([[-4.0, -4.0], [4.0, 4.0], [0.0, 0.0]])).tolist()
    [1, 1, -1]
    """

    def __init__(
        self,
        alpha: float = 0.1,
        calibration: Literal["conformal", "percentile"] = "conformal",
        calibration_fraction: float = 0.4,
        pca_dim: int | None = 50,
        n_components: int = 6,
        covariance_type: Literal["full", "diag", "tied", "spherical"] = "diag",
        normalize: bool = True,
        reg_covar: float = 1e-6,
        random_state: Any = None,
        n_jobs: int | None = None,
    ) -> None:
        self.alpha = alpha
        self.calibration = calibration
        self.calibration_fraction = calibration_fraction
        self.pca_dim = pca_dim
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.normalize = normalize
        self.reg_covar = reg_covar
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _check_params(self) -> None:
        from deltahall._validation import check_choice, check_real

        check_real(self.alpha, "alpha", low=0.0, high=1.0, low_open=True, high_open=True)
        check_choice(self.calibration, "calibration", CALIBRATIONS)
        check_real(self.calibration_fraction, "calibration_fraction", low=0.0, high=1.0,
                   low_open=True, high_open=True)

    def fit(self, X: npt.ArrayLike, y: npt.ArrayLike) -> ConformalHCDR:
        """Split each state's rows into fit / calibration parts, fit the mixtures, calibrate.

        Raises
        ------
        ValueError
            A single state; a state whose calibration part has :math:`m_i + 1 < 1/\\alpha`
            (it could never flag anything) or whose fit part is smaller than
            ``max(n_components, 2) + 1``; anything :class:`HCDRDetector` refuses.
        """
        self._check_params()
        X = np.asarray(validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=2))
        labels = np.asarray(y).ravel()
        if labels.shape[0] != X.shape[0]:
            raise ValueError(f"`X` and `y` must have the same number of rows; got {X.shape[0]} and {labels.shape[0]}.")
        classes, y_idx = np.unique(labels, return_inverse=True)
        if classes.size < 2:
            raise ValueError(
                f"the reference must contain at least two latent states; got one: {classes.tolist()}."
            )
        rs = check_random_state(self.random_state)
        seed = int(rs.randint(np.iinfo(np.int32).max))
        fit_idx, cal_idx = stratified_split(y_idx, (1.0 - self.calibration_fraction, self.calibration_fraction), seed)
        return self.fit_split(X[fit_idx], labels[fit_idx], X[cal_idx], labels[cal_idx])

    def check_split_sizes(self, classes: Any, n_fit: Any, n_cal: Any, n_total: Any | None = None) -> None:
        """Raise a one-line ValueError if some state's fit or calibration part is too small."""
        alpha = float(self.alpha)
        need = math.ceil(1.0 / alpha - 1.0 - 1e-9)
        need_fit = max(int(self.n_components), 2) + 1
        for i, c in enumerate(np.asarray(classes).tolist()):
            of = "" if n_total is None else f" (of its {int(n_total[i])} reference samples)"
            if int(n_cal[i]) < need:
                raise ValueError(
                    f"state {c!r} has m={int(n_cal[i])} calibration samples{of}, so m+1 < 1/alpha = "
                    f"{1 / alpha:g}: it could never be flagged at `alpha`={alpha:g}; add reference samples "
                    f"(need m >= {need}) or raise `alpha`."
                )
            if int(n_fit[i]) < need_fit:
                raise ValueError(
                    f"state {c!r} has {int(n_fit[i])} samples in its fit part{of}; need at least "
                    f"max(`n_components`, 2) + 1 = {need_fit}."
                )

    def fit_split(
        self, X_fit: npt.ArrayLike, y_fit: npt.ArrayLike, X_cal: npt.ArrayLike, y_cal: npt.ArrayLike
    ) -> ConformalHCDR:
        """Fit the mixtures on ``(X_fit, y_fit)`` and calibrate on ``(X_cal, y_cal)`` (explicit split)."""
        self._check_params()
        X_fit = np.asarray(validate_data(self, X_fit, dtype=[np.float64, np.float32], ensure_min_samples=2))
        X_cal = np.asarray(check_array(X_cal, dtype=[np.float64, np.float32], input_name="X_cal"))
        y_fit, y_cal = np.asarray(y_fit).ravel(), np.asarray(y_cal).ravel()
        classes = np.unique(y_fit)
        if classes.size < 2:
            raise ValueError(f"the reference must contain at least two latent states; got one: {classes.tolist()}.")
        if X_cal.ndim != 2 or X_cal.shape[1] != X_fit.shape[1]:
            raise ValueError(
                f"`X_cal` must have shape (n, {X_fit.shape[1]}); got {X_cal.shape}."
            )
        unknown = np.setdiff1d(np.unique(y_cal), classes)
        if unknown.size:
            raise ValueError(f"`y_cal` has states absent from `y_fit`: {unknown.tolist()[:10]}.")
        self.check_split_sizes(classes, [int(np.sum(y_fit == c)) for c in classes],
                               [int(np.sum(y_cal == c)) for c in classes])
        rs = check_random_state(self.random_state)
        # holdout of one sample per state: the detector's own percentile thresholds are unused.
        det = HCDRDetector(
            pca_dim=self.pca_dim, n_components=self.n_components, covariance_type=self.covariance_type,
            percentile=100.0 * float(self.alpha), holdout_fraction=1e-9, min_holdout=1,
            normalize=self.normalize, reg_covar=self.reg_covar,
            random_state=rs.randint(np.iinfo(np.int32).max), n_jobs=self.n_jobs,
        ).fit(X_fit, y_fit)
        S = det.score_samples(X_cal)
        cal: list[npt.NDArray[np.float64]] = []
        for i, c in enumerate(det.classes_.tolist()):
            cal.append(np.sort(S[y_cal == c, i]))
        self.detector_ = det
        self.classes_ = det.classes_
        self.n_features_in_ = det.n_features_in_
        self.calibration_scores_ = cal
        self.n_calibration_ = np.array([c.size for c in cal], dtype=np.int64)
        self.thresholds_ = self._thresholds(float(self.alpha))
        return self

    def _thresholds(self, alpha: float) -> npt.NDArray[np.float64]:
        out = np.empty(len(self.calibration_scores_))
        for i, cal in enumerate(self.calibration_scores_):
            if self.calibration == "percentile":
                out[i] = np.percentile(cal, 100.0 * alpha)
            else:
                k = int(math.floor(alpha * (cal.size + 1) + 1e-12))  # p <= alpha  <=>  count <= k - 1
                out[i] = -np.inf if k <= 0 else (np.inf if k > cal.size else cal[k - 1])
        return out

    # -------------------------------------------------------------- scoring
    def score_samples(self, X: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Per-state log-densities :math:`\\log \\hat f_i(z)`, shape (n, n_states)."""
        check_is_fitted(self)
        return np.asarray(self.detector_.score_samples(X))

    def p_values_from_scores(self, scores: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """:math:`p(z) = \\max_i p_i(z)` from per-state log-densities, shape (n,)."""
        check_is_fitted(self)
        return np.asarray(conformal_p_values(self.calibration_scores_, scores).max(axis=1))

    def p_values(self, X: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Conformal p-values :math:`p(z)`, shape (n,); small means outside every state."""
        return self.p_values_from_scores(self.score_samples(X))

    def flagged_from_scores(
        self, scores: npt.NDArray[np.float64], p: npt.NDArray[np.float64] | None = None,
        *, alpha: float | None = None,
    ) -> npt.NDArray[np.bool_]:
        """Boolean (n,): outside the HCDR at level ``alpha`` (default: the fitted one)."""
        check_is_fitted(self)
        a = float(self.alpha if alpha is None else alpha)
        if self.calibration == "percentile":
            thr = self._thresholds(a) if alpha is not None else self.thresholds_
            return np.asarray(~(scores >= thr).any(axis=1))
        if p is None:
            p = self.p_values_from_scores(scores)
        return np.asarray(p <= a)

    def decision_function(self, X: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """:math:`p(z) - \\alpha` (conformal) or :math:`\\max_i(\\log\\hat f_i - \\tau_i)` (percentile)."""
        S = self.score_samples(X)
        if self.calibration == "percentile":
            return np.asarray((S - self.thresholds_).max(axis=1))
        return self.p_values_from_scores(S) - float(self.alpha)

    def predict(self, X: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """+1 inside the HCDR, -1 flagged as a δ-hallucination. Shape (n,)."""
        return np.where(self.flagged_from_scores(self.score_samples(X)), -1, 1)
