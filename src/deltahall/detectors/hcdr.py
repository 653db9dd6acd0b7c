r"""The HCDR detector: δ-hallucination for any embedding space (Section 7.3, Appendix A).

Definition 6.2 defines, for each latent state :math:`Z_i`, the high conditional
density region :math:`U_i^\delta = \{a : f(a; Z_i) > \delta\}`; by Remark 6.1 an
output δ-hallucinates (Definition 4.2) iff it lies in none of them. The detector
estimates these regions from labelled real embeddings with the project's one
instrument, a *scorer* and a *calibrator*:

1. each state's rows are split, stratified and seeded, into a *fit* part and a
   *calibration* part (``calibration_fraction`` of each state);
2. the scorer (:class:`~deltahall.detectors.densities.StateDensities`) is fitted on the
   fit part only: one shared transform (L2-normalise, centre, PCA rotation, one global
   scale), then per state a Gaussian mixture on its first :math:`k_i` principal
   coordinates, the model chosen by held-out likelihood inside the fit part;
3. the calibrator (:class:`~deltahall.detectors.calibrators.Calibrator`) stores each
   state's calibration log-densities :math:`s_{i,1..m_i}` (its own calibration rows
   under its own density) and turns them into a level-:math:`\alpha` rule:

   ``"conformal"`` (default)
       :math:`p_i(z) = (1 + \#\{j : s_{i,j} \le \log\hat f_i(z)\}) / (m_i + 1)`,
       :math:`p(z) = \max_i p_i(z)`, flagged iff :math:`p(z) \le \alpha`. A fresh real
       sample of any state is flagged with probability at most :math:`\alpha`.
   ``"percentile"`` (the paper's rule)
       :math:`\tau_i` = the :math:`100\alpha`-th percentile of :math:`s_{i,\cdot}`,
       flagged iff :math:`\max_i(\log\hat f_i(z) - \tau_i) < 0`.

In scikit-learn's outlier contract, :meth:`HCDRDetector.score_samples` is that rule's
typicality score (the p-value, or the largest log-density margin), ``offset_`` its
cut, ``decision_function = score_samples - offset_`` (>= 0 inside) and ``predict``
+1 inside / -1 flagged; the per-state log-densities are
:meth:`HCDRDetector.state_log_densities`.
"""

from __future__ import annotations

import logging
import math
import os
from numbers import Integral, Real
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from deltahall.detectors._scorer import safe_l2_normalize
from deltahall.detectors.calibrators import Calibrator
from deltahall.detectors.densities import AUTO, MIN_FIT_ROWS, PCA_GRID, StateDensities

logger = logging.getLogger(__name__)

__all__ = ["CALIBRATIONS", "HCDRDetector", "stratified_split"]

#: The calibration rules the estimator offers (the margin rule lives in ``deltahall.measure``).
CALIBRATIONS = ("conformal", "percentile")
COVARIANCE_TYPES = ("full", "diag", "tied", "spherical")

_CHUNK_ROWS = 4096  # rows scored at a time (bounded temporaries)

# Largest |entry| accepted by fit without L2-normalisation: squares and sums of squares of
# larger values overflow float64 in the PCA; smaller ones underflow.
_RAW_MAGNITUDE = (1e-100, 1e100)
# Two rows closer than this (in units of the pooled scale) count as the same point: a state
# whose rows all coincide has zero variance and no density to fit.
_SAME_POINT = 1e-9


def stratified_split(
    y_idx: npt.NDArray[np.intp], calibration_fraction: float, rng: Any
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Seeded split of row indices into a fit and a calibration part, within each state.

    State :math:`i` with :math:`n_i` rows puts :math:`\\lceil f\\, n_i \\rceil` of them, a
    seeded random choice, in the calibration part and the rest in the fit part.

    Parameters
    ----------
    y_idx : ndarray of int, shape (n,)
        State index of every row.
    calibration_fraction : float in (0, 1)
    rng : numpy Generator, int or None

    Returns
    -------
    fit, calibration : ndarray of int
        Sorted row indices of each part.

    Examples
    --------
    >>> fit, cal = stratified_split(np.repeat([0, 1], [10, 4]), 0.3, 0)
    >>> len(fit), len(cal)
    (9, 5)
    """
    gen = np.random.default_rng(rng)
    fit: list[npt.NDArray[np.intp]] = []
    cal: list[npt.NDArray[np.intp]] = []
    for s in np.unique(y_idx):
        idx = gen.permutation(np.flatnonzero(y_idx == s))
        n_cal = math.ceil(calibration_fraction * idx.size - 1e-9)
        cal.append(idx[:n_cal])
        fit.append(idx[n_cal:])
    empty = np.empty(0, dtype=np.intp)
    return (
        np.sort(np.concatenate(fit)) if fit else empty,
        np.sort(np.concatenate(cal)) if cal else empty,
    )


def _rows_text(rows: npt.NDArray[np.intp] | list[int], limit: int = 10) -> str:
    rows = list(map(int, rows))
    return ", ".join(map(str, rows[:limit])) + (", ..." if len(rows) > limit else "")


def _check_finite_rows(x: npt.NDArray[Any], name: str) -> None:
    """Raise a ValueError naming the non-finite rows (checked chunk by chunk)."""
    n = x.shape[0]
    for start in range(0, n, _CHUNK_ROWS):
        if np.isfinite(x[start : start + _CHUNK_ROWS]).all():
            continue
        bad: list[int] = []
        for s2 in range(start, n, _CHUNK_ROWS):
            ok = np.isfinite(x[s2 : s2 + _CHUNK_ROWS]).all(axis=1)
            bad.extend((np.flatnonzero(~ok) + s2).tolist())
        raise ValueError(
            f"`{name}` must contain only finite values; found NaN/inf in {len(bad)} row(s): {_rows_text(bad)}."
        )


def _check_dtype(X: Any, name: str = "X") -> None:
    """Refuse boolean, complex, string, datetime and non-numeric object embeddings.

    Object arrays of real numbers are accepted (scikit-learn's convention); their conversion
    to float64 reports anything that is not a number.
    """
    if isinstance(X, (list, tuple)):
        X = np.asarray(X)
    dtypes: list[Any] = []
    if hasattr(X, "dtypes") and not hasattr(X, "dtype"):  # pandas DataFrame
        dtypes = list(X.dtypes)
    elif hasattr(X, "dtype"):
        dtypes = [X.dtype]
    for dt in dtypes:
        try:
            kind = np.dtype(dt).kind
        except TypeError:  # a pandas extension dtype: its numpy conversion decides
            continue
        if kind == "b":
            raise TypeError(
                f"`{name}` must hold real-valued embeddings; got boolean dtype {dt}. "
                "Convert deliberately (e.g. X.astype(float)) if 0/1 features are meant."
            )
        if kind == "c":
            raise ValueError(
                f"`{name}` must be real-valued; got complex dtype {dt} (Complex data not supported)."
            )
        if kind in "USVMm":
            raise TypeError(f"`{name}` must be a numeric array (float or int); got dtype {dt}.")
        if kind == "O" and isinstance(X, np.ndarray):
            bad = next(
                (
                    v
                    for v in X.ravel()
                    if isinstance(v, (bool, np.bool_, complex, np.complexfloating))
                ),
                None,
            )
            if bad is not None:
                raise TypeError(
                    f"`{name}` must hold real numbers; its object array contains {type(bad).__name__} {bad!r}."
                )


class HCDRDetector(OutlierMixin, BaseEstimator):  # type: ignore[misc]
    """Highest-conditional-density-region detector (Section 7.3, Definition 6.2).

    Parameters
    ----------
    calibration : {"conformal", "percentile"}, default="conformal"
        The rule at level ``alpha`` (module docstring). ``"percentile"`` is the paper's.
    alpha : float in (0, 1), default=0.1
        Level: a fresh real sample is flagged with probability at most ``alpha``
        (conformal); the threshold percentile is ``100 alpha`` (percentile).
    calibration_fraction : float in (0, 1), default=0.3
        Share of each state's rows, :math:`\\lceil f n_i \\rceil`, kept apart to calibrate;
        the rest fit the densities.
    pca_dim : "auto", int or None, default="auto"
        Principal coordinates each state's mixture models (``None``: all of them, up to
        64); ``"auto"`` chooses per state by held-out likelihood on the fit part.
    covariance_type : "auto" or {"full", "diag", "tied", "spherical"}, default="auto"
    n_components : "auto" or int, default="auto"
        Mixture components per state (``"auto"``: 1 or 2, chosen like ``pca_dim``).
    normalize : bool, default=True
        L2-normalise every embedding first (CLIP-style cosine geometry).
    reg_covar : float >= 0, default=1e-4
        Added to mixture covariances, in units of the pooled scale.
    random_state : int, RandomState or None, default=None
        Seeds the split and the density fits.

    Attributes
    ----------
    classes_ : ndarray of shape (n_states,)
        State labels, sorted.
    n_features_in_ : int
    densities_ : StateDensities
        The scorer, fitted on the fit part; ``densities_.summary()`` lists each state's
        chosen model and why.
    calibrator_ : Calibrator
        The rule, fitted on the calibration part.
    offset_ : float
        ``decision_function = score_samples - offset_``: ``nextafter(alpha, 1)`` for
        conformal (so ``predict`` is exactly ``p > alpha``), 0 for percentile.
    thresholds_ : ndarray of shape (n_states,)
        Per-state log-density thresholds equivalent to the rule: inside state :math:`i`
        iff :math:`\\log\\hat f_i(z) \\ge \\tau_i` (:meth:`state_membership`).
    calibration_scores_ : list of ndarray
        Each state's sorted calibration log-densities (Figure 7).
    n_calibration_ : ndarray of int, shape (n_states,)
        :math:`m_i`.
    holdout_coverage_ : ndarray of shape (n_states,)
        Fraction of each state's calibration rows inside its own region.

    Examples
    --------
    >>> import numpy as np
    >>> from deltahall.detectors import HCDRDetector
    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack([rng.normal(-4, 1, (200, 3)), rng.normal(4, 1, (200, 3))])
    >>> y = np.repeat([0, 1], 200)
    >>> det = HCDRDetector(normalize=False, random_state=0).fit(X, y)
    >>> det.predict(np.array([[-4.0, -4, -4], [4, 4, 4], [0, 0, 0]])).tolist()
    [1, 1, -1]
    >>> det.state_log_densities(np.zeros((1, 3))).shape
    (1, 2)
    """

    _parameter_constraints: dict[str, list[Any]] = {
        "calibration": [StrOptions(set(CALIBRATIONS))],
        "alpha": [Interval(Real, 0, 1, closed="neither")],
        "calibration_fraction": [Interval(Real, 0, 1, closed="neither")],
        "pca_dim": [StrOptions({AUTO}), Interval(Integral, 1, None, closed="left"), None],
        "covariance_type": [StrOptions({AUTO, *COVARIANCE_TYPES})],
        "n_components": [StrOptions({AUTO}), Interval(Integral, 1, None, closed="left")],
        "normalize": ["boolean"],
        "reg_covar": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        *,
        calibration: Literal["conformal", "percentile"] = "conformal",
        alpha: float = 0.1,
        calibration_fraction: float = 0.3,
        pca_dim: int | str | None = AUTO,
        covariance_type: str = AUTO,
        n_components: int | str = AUTO,
        normalize: bool = True,
        reg_covar: float = 1e-4,
        random_state: Any = None,
    ) -> None:
        self.calibration = calibration
        self.alpha = alpha
        self.calibration_fraction = calibration_fraction
        self.pca_dim = pca_dim
        self.covariance_type = covariance_type
        self.n_components = n_components
        self.normalize = normalize
        self.reg_covar = reg_covar
        self.random_state = random_state

    @property
    def percentile(self) -> float:
        """The threshold percentile ``100 alpha`` (read-only; what Figure 7 and the curves label)."""
        return 100.0 * float(self.alpha)

    # --------------------------------------------------------------- fitting
    def fit(self, X: npt.ArrayLike, y: npt.ArrayLike) -> HCDRDetector:
        """Split each state's rows, fit the densities on one part and calibrate on the other.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Real embeddings.
        y : array-like of shape (n_samples,)
            Latent-state label of each embedding (at least two states).

        Returns
        -------
        self

        Raises
        ------
        ValueError
            NaN/inf rows or labels, ``X``/``y`` length mismatch, a single state, all-zero
            rows or one feature with ``normalize``, magnitudes float64 cannot square without
            it, a state with zero variance, a state whose calibration part has
            :math:`m_i + 1 < 1/\\alpha` (conformal: it could never be flagged) or whose fit
            part has fewer than 3 rows, ``pca_dim`` larger than the data allows, a bad
            parameter (``InvalidParameterError``, a ``ValueError``).
        TypeError
            Boolean, string, datetime or sparse embeddings.
        """
        self._validate_params()
        if y is None:
            raise ValueError(
                "HCDRDetector requires y to be passed, but the target y is None "
                "(`y` holds the latent-state label of every row of `X`)."
            )
        _check_dtype(X)
        A = np.asarray(
            validate_data(self, X, dtype=np.float64, ensure_all_finite=False, ensure_min_samples=2)
        )
        labels = column_or_1d(y, warn=True)
        if labels.shape[0] != A.shape[0]:
            raise ValueError(
                f"`X` and `y` must have the same number of rows; got {A.shape[0]} and {labels.shape[0]}."
            )
        if labels.dtype.kind == "f" and not np.isfinite(labels).all():
            bad = np.flatnonzero(~np.isfinite(labels))
            raise ValueError(
                f"`y` must not contain NaN/inf labels; found them at index {bad[:10].tolist()}."
            )
        _check_finite_rows(A, "X")
        classes, y_idx = np.unique(labels, return_inverse=True)
        if classes.shape[0] < 2:
            raise ValueError(
                f"`y` must contain at least two states (classes); got one class: {classes.tolist()}."
            )
        n, d = A.shape
        if self.normalize and d == 1:
            raise ValueError(
                "`X` has 1 feature(s): L2 normalisation (normalize=True) maps every row to +1 or -1, "
                "so no state has a density; pass normalize=False."
            )
        self._check_magnitudes(A)
        rs = check_random_state(self.random_state)
        split_seed, density_seed = (int(v) for v in rs.randint(np.iinfo(np.int32).max, size=2))
        fit_idx, cal_idx = stratified_split(y_idx, float(self.calibration_fraction), split_seed)
        n_fit = np.bincount(y_idx[fit_idx], minlength=classes.size)
        self._check_sizes(
            classes,
            n_fit,
            np.bincount(y_idx[cal_idx], minlength=classes.size),
            np.bincount(y_idx, minlength=classes.size),
        )
        if isinstance(self.pca_dim, (int, np.integer)):
            top = min(d, int(n_fit.sum()) - 1, max(PCA_GRID))
            if self.pca_dim > top:
                raise ValueError(
                    f"`pca_dim` must be <= min(n_features, n_fit - 1, {max(PCA_GRID)}) = "
                    f"min({d}, {int(n_fit.sum()) - 1}, {max(PCA_GRID)}) = {top}; got {self.pca_dim}."
                )
        U = safe_l2_normalize(A) if self.normalize else A
        self._check_state_spread(A, U, None, classes, y_idx)
        names = [str(c) for c in classes.tolist()]
        dens = StateDensities(
            pca_dim=self.pca_dim,
            covariance_type=self.covariance_type,
            n_components=self.n_components,
            normalize=bool(self.normalize),
            reg_covar=float(self.reg_covar),
            random_state=density_seed,
        )
        dens.fit(A[fit_idx], y_idx[fit_idx], names)
        self._check_state_spread(A, U, dens, classes, y_idx)
        S_cal = dens.score(A[cal_idx])
        y_cal = y_idx[cal_idx]
        own = S_cal[np.arange(y_cal.size), y_cal]
        if not np.isfinite(own).all():
            bad = cal_idx[~np.isfinite(own)]
            raise ValueError(
                f"the fitted densities give a NaN/inf log-density to {bad.size} calibration row(s) "
                f"({_rows_text(bad)}) of their own state; the embeddings are numerically degenerate "
                "(near-duplicate rows or extreme scale)."
            )
        self.densities_ = dens
        self._set_calibration([own[y_cal == i] for i in range(classes.size)])
        self.classes_ = classes
        logger.info(
            "HCDR fitted: %d states, %s rule at alpha=%g, calibration sizes %s",
            classes.size,
            self.calibration,
            self.alpha,
            self.n_calibration_.tolist(),
        )
        return self

    def _set_calibration(self, cal_scores: list[npt.NDArray[np.float64]]) -> None:
        """Fit the calibrator on per-state calibration scores and derive the fitted attributes."""
        cal = Calibrator(str(self.calibration), float(self.alpha)).fit(cal_scores, len(cal_scores))
        self.calibrator_ = cal
        self.calibration_scores_ = cal.cal_
        self.n_calibration_ = cal.n_calibration_
        self.thresholds_ = np.asarray(cal.thresholds_, dtype=np.float64)
        self.holdout_coverage_ = np.array(
            [float(np.mean(c >= t)) for c, t in zip(cal.cal_, self.thresholds_, strict=True)]
        )
        self.offset_ = (
            float(np.nextafter(float(self.alpha), 1.0)) if self.calibration == "conformal" else 0.0
        )

    def _check_sizes(self, classes: npt.NDArray[Any], n_fit: Any, n_cal: Any, n_total: Any) -> None:
        """One-line ValueError naming the first state whose fit or calibration part is too small."""
        alpha = float(self.alpha)
        need = max(1, math.ceil(1.0 / alpha - 1.0 - 1e-9)) if self.calibration == "conformal" else 1
        for i, c in enumerate(classes.tolist()):
            of = f" (of its {int(n_total[i])} samples, calibration_fraction={self.calibration_fraction:g})"
            if int(n_cal[i]) < need:
                why = (
                    f"so m+1 < 1/alpha = {1 / alpha:g}: it could never be flagged at `alpha`={alpha:g}"
                    if self.calibration == "conformal"
                    else "the percentile rule needs at least one"
                )
                raise ValueError(
                    f"state {c!r} has m={int(n_cal[i])} calibration samples{of}, {why}; add samples "
                    f"(need m >= {need}), raise `calibration_fraction` or raise `alpha`."
                )
            if int(n_fit[i]) < MIN_FIT_ROWS:
                raise ValueError(
                    f"state {c!r} has {int(n_fit[i])} samples in its fit part{of}; the density model "
                    f"needs at least {MIN_FIT_ROWS}."
                )

    def _check_magnitudes(self, X: npt.NDArray[np.float64]) -> None:
        """All-zero rows (with ``normalize``) and, without it, magnitudes float64 cannot square."""
        if self.normalize:
            zero = np.flatnonzero(~X.any(axis=1))
            if zero.size:
                raise ValueError(
                    f"`X` has {zero.size} all-zero row(s) ({_rows_text(zero)}): L2 normalisation "
                    "(normalize=True) is undefined for them; drop them or pass normalize=False."
                )
            return
        top = float(np.abs(X).max()) if X.size else 0.0
        lo, hi = _RAW_MAGNITUDE
        if top > hi or 0.0 < top < lo:
            raise ValueError(
                f"`X` has largest |entry| {top:.3g}; with normalize=False entries must be within "
                f"[{lo:g}, {hi:g}] in magnitude (their squares overflow or underflow float64 in PCA); "
                "rescale `X` or use normalize=True."
            )

    def _check_state_spread(
        self,
        X: npt.NDArray[np.float64],
        U: npt.NDArray[np.float64],
        dens: StateDensities | None,
        classes: npt.NDArray[Any],
        y_idx: npt.NDArray[np.intp],
    ) -> None:
        """Refuse a state whose rows all coincide where its density is fitted (zero variance).

        Checked twice: before the fit on the (normalised) rows, to ``_SAME_POINT`` pooled
        scales; after it in each state's own principal coordinates (``dens``), which catches
        a state that varies only along directions its ``pca_dim`` drops. One constant
        feature is fine: the rule is on whole rows.
        """
        if dens is None:
            scale = float(np.sqrt(np.mean((U - U.mean(axis=0)) ** 2)))
            scale = scale if scale > 0 else 1.0
        for i, label in enumerate(classes.tolist()):
            idx = np.flatnonzero(y_idx == i)
            if dens is None:
                spread = float(np.ptp(U[idx], axis=0).max()) / scale
            else:
                k = dens.models_[i].k
                spread = float(np.ptp(dens.transform(X[idx])[:, :k], axis=0).max())
            if spread > _SAME_POINT:
                continue
            if np.ptp(X[idx], axis=0).max() == 0.0:
                how = "are all identical"
            elif dens is None and self.normalize:
                how = "are all the same point after L2 normalisation (positive multiples of one vector)"
            elif dens is None:
                how = f"are all the same point to {_SAME_POINT:g} of the pooled scale"
            else:
                how = (
                    f"all coincide in the {dens.models_[i].k} principal coordinates its density "
                    f"models (pca_dim={self.pca_dim})"
                )
            raise ValueError(
                f"state {label!r} has zero variance: its {idx.size} rows ({_rows_text(idx)}) {how}, "
                "so no density can be fitted to it; drop the state or check its embeddings."
            )

    # --------------------------------------------------------------- scoring
    def _validate_X(self, X: npt.ArrayLike) -> npt.NDArray[Any]:
        check_is_fitted(self)
        _check_dtype(X)
        A = validate_data(
            self, X, reset=False, dtype=[np.float64, np.float32], ensure_all_finite=False
        )
        _check_finite_rows(A, "X")
        if self.normalize:
            zero = np.flatnonzero(~A.any(axis=1))
            if zero.size:
                raise ValueError(
                    f"`X` has {zero.size} all-zero row(s) ({_rows_text(zero)}): L2 "
                    "normalisation (normalize=True) is undefined for them."
                )
        return np.asarray(A)

    def _log_densities(self, A: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        """(n, n_states) log-densities of validated rows; a non-finite one is an error."""
        out = np.empty((A.shape[0], len(self.classes_)))
        for s in range(0, A.shape[0], _CHUNK_ROWS):
            block = A[s : s + _CHUNK_ROWS]
            with np.errstate(
                invalid="ignore", over="ignore", divide="ignore"
            ):  # non-finite: error below
                res = self.densities_.score(block)
            bad = np.flatnonzero(~np.isfinite(res).all(axis=1))
            if bad.size:
                top = float(np.abs(block[bad]).max())
                raise ValueError(
                    f"the log-density of {bad.size} row(s) of `X` ({_rows_text(bad + s)}) is not finite "
                    f"(NaN/inf intermediate; largest |entry| of those rows {top:.3g}): they are too far "
                    "from every state for float64. This is an error, not a hallucination; rescale `X` "
                    "like the training embeddings."
                )
            out[s : s + block.shape[0]] = res
        return out

    def state_log_densities(self, X: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Per-state log-densities :math:`\\log \\hat f_i(z)`, shape (n_samples, n_states).

        Columns follow ``classes_``; densities live in the scorer's shared space.
        """
        return self._log_densities(self._validate_X(X))

    def _score_from_log_densities(self, S: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        if self.calibration == "conformal":
            return np.asarray(self.calibrator_.p_values(S), dtype=np.float64)
        return np.asarray((S - self.thresholds_).max(axis=1), dtype=np.float64)

    def score_samples(self, X: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Typicality under the rule, shape (n,): larger = more like the real data.

        Conformal: the p-value :math:`p(z) = \\max_i p_i(z)` in :math:`(0, 1]`. Percentile:
        :math:`\\max_i(\\log\\hat f_i(z) - \\tau_i)`.
        """
        return self._score_from_log_densities(self.state_log_densities(X))

    def decision_function(self, X: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """``score_samples(X) - offset_``: >= 0 inside the HCDR, < 0 flagged. Shape (n,)."""
        return self.score_samples(X) - self.offset_

    def predict(self, X: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """+1 inside the HCDR, -1 outside (a δ-hallucination, Remark 6.1). Shape (n,)."""
        return np.where(self.decision_function(X) >= 0.0, 1, -1)

    def fit_predict(self, X: npt.ArrayLike, y: npt.ArrayLike) -> npt.NDArray[np.int64]:  # type: ignore[override]
        """``fit(X, y).predict(X)`` (the states ``y`` are required)."""
        return self.fit(X, y).predict(X)

    def p_values(self, X: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Conformal p-values :math:`p(z)`, shape (n,), under either rule (small = outside)."""
        S = self.state_log_densities(X)
        return np.asarray(self.calibrator_.p_values(S), dtype=np.float64)

    def state_membership(self, X: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Boolean (n, n_states): inside state i's region, :math:`\\log\\hat f_i(z) \\ge \\tau_i`."""
        return np.asarray(self.state_log_densities(X) >= self.thresholds_)

    def hallucination_rate(self, X: npt.ArrayLike) -> float:
        """Fraction of rows of ``X`` outside the HCDR."""
        pred = self.predict(X)
        if pred.size == 0:
            raise ValueError("`X` must contain at least one row to compute a rate; got 0.")
        return float(np.mean(pred == -1))

    def thresholds_at(self, percentiles: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """The rule's thresholds at levels ``alpha = p / 100``, shape (n_p, n_states) (no refit)."""
        check_is_fitted(self)
        p = np.atleast_1d(np.asarray(percentiles, dtype=np.float64))
        if p.ndim != 1 or not np.isfinite(p).all() or (p < 0).any() or (p > 100).any():
            raise ValueError(
                f"`percentiles` must be a 1-d array of values in [0, 100]; got {p.tolist()}."
            )
        return (
            np.stack([self.calibrator_.thresholds(float(v) / 100.0) for v in p])
            if p.size
            else np.empty((0, len(self.classes_)))
        )

    def rate_curve(self, X: npt.ArrayLike, percentiles: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Hallucination rate of ``X`` at each level ``alpha = p / 100`` of the rule (no refit).

        Returns
        -------
        ndarray of shape (n_percentiles,)
        """
        thr = self.thresholds_at(percentiles)
        S = self.state_log_densities(X)
        if S.shape[0] == 0:
            raise ValueError("`X` must contain at least one row to compute a rate; got 0.")
        inside = (S[None, :, :] >= thr[:, None, :]).any(axis=2)
        return np.asarray(1.0 - inside.mean(axis=1))

    # ---------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the fitted detector to one ``.safetensors`` file (format in ``docs/hcdr.md``)."""
        from deltahall.detectors._format import save_detector

        check_is_fitted(self)
        save_detector(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> HCDRDetector:
        """Load a detector written by :meth:`save`; refuses pickles and tampered files."""
        from deltahall.detectors._format import load_detector

        return load_detector(cls, path)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.input_tags.allow_nan = False
        return tags
