"""The HCDR detector: δ-hallucination for any embedding space (Section 7.3, Appendix A).

Definition 6.2 defines, for each latent state :math:`Z_i`, the high conditional
density region :math:`U_i^\\delta = \\{a : f(a; Z_i) > \\delta\\}`; by Remark 6.1 an
output δ-hallucinates (Definition 4.2) iff it lies in none of them. Section 7.3
estimates these regions from labelled real embeddings:

1. L2-normalise, reduce with PCA, z-score — one transform fitted on the pooled
   real embeddings of all states;
2. for each state :math:`i`, fit a Gaussian mixture :math:`\\hat f_i` on a
   stratified 80% split;
3. set the state's log-density threshold :math:`\\tau_i` to the ``percentile``-th
   percentile (default 10) of :math:`\\log \\hat f_i` on the held-out 20%, so the
   region keeps about :math:`1 - p/100` of the state's mass (Figure 7);
4. an embedding :math:`z` is inside the HCDR iff
   :math:`\\max_i (\\log \\hat f_i(z) - \\tau_i) \\ge 0`, otherwise it is flagged
   as a δ-hallucination.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from deltahall.detectors._gmm import COVARIANCE_TYPES, GaussianMixtureParams, StackedMixtures
from deltahall.detectors._scorer import FusedScorer, safe_l2_normalize, safe_sq_norms

logger = logging.getLogger(__name__)

__all__ = ["HCDRDetector"]

_CHUNK_ROWS = 4096  # small enough for the per-chunk temporaries to stay in cache


def _n_workers(n_jobs: int | None) -> int:
    """Threads for scoring: ``None`` or -1 = every CPU this process may use."""
    if n_jobs is None or n_jobs == -1:
        try:
            return len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not on Linux
            return os.cpu_count() or 1
    return int(n_jobs)


def _check_finite_rows(x: npt.NDArray[Any], name: str) -> None:
    """Raise a ValueError naming the first non-finite row (checked chunk by chunk)."""
    n = x.shape[0]
    for start in range(0, n, _CHUNK_ROWS):
        block = x[start : start + _CHUNK_ROWS]
        if np.isfinite(block).all():
            continue
        bad_rows: list[int] = []
        for s2 in range(start, n, _CHUNK_ROWS):
            ok = np.isfinite(x[s2 : s2 + _CHUNK_ROWS]).all(axis=1)
            bad_rows.extend((np.flatnonzero(~ok) + s2).tolist())
        shown = ", ".join(map(str, bad_rows[:10])) + (", ..." if len(bad_rows) > 10 else "")
        raise ValueError(
            f"`{name}` must contain only finite values; found NaN/inf in {len(bad_rows)} "
            f"row(s): {shown}."
        )


def _rows_text(rows: npt.NDArray[np.intp] | list[int], limit: int = 10) -> str:
    rows = list(map(int, rows))
    return ", ".join(map(str, rows[:limit])) + (", ..." if len(rows) > limit else "")


# Largest |entry| accepted by fit without L2-normalisation: squares and sums of squares of
# larger values overflow float64 in PCA and the z-score; smaller ones underflow.
_RAW_MAGNITUDE = (1e-100, 1e100)
# Two standardised rows closer than this (in units of the pooled standard deviation) count as
# the same point: a state whose rows all coincide has zero variance and no density to fit.
_SAME_POINT = 1e-9


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
            raise ValueError(f"`{name}` must be real-valued; got complex dtype {dt} (Complex data not supported).")
        if kind in "USVMm":
            raise TypeError(f"`{name}` must be a numeric array (float or int); got dtype {dt}.")
        if kind == "O" and isinstance(X, np.ndarray):
            flat = X.ravel()
            bad = next((v for v in flat if isinstance(v, (bool, np.bool_, complex, np.complexfloating))), None)
            if bad is not None:
                raise TypeError(
                    f"`{name}` must hold real numbers; its object array contains {type(bad).__name__} {bad!r}."
                )


class HCDRDetector(BaseEstimator):  # type: ignore[misc]
    """Highest-conditional-density-region detector (Section 7.3, Definition 6.2).

    Parameters
    ----------
    pca_dim : int or None, default=50
        PCA dimension after L2-normalisation; ``None`` skips PCA. Must be at most
        ``min(n_samples, n_features)`` of the training data.
    n_components : int, default=6
        Gaussian-mixture components per state.
    covariance_type : {"full", "diag", "tied", "spherical"}, default="diag"
    percentile : float, default=10.0
        Threshold percentile ``p`` in [0, 100) of the held-out log-densities; each state's
        region keeps a nominal mass of ``1 - p/100``.
    holdout_fraction : float, default=0.2
        Fraction of each state's samples held out for calibration (stratified split).
    normalize : bool, default=True
        L2-normalise every embedding first (CLIP-style cosine geometry).
    min_holdout : int, default=10
        Smallest number of held-out samples per state accepted for a threshold.
    reg_covar : float, default=1e-6
        Passed to ``GaussianMixture``.
    random_state : int, RandomState or None
        Seeds the split and the mixtures.
    n_jobs : int or None, default=None
        Threads used to score large inputs (chunks of 4096 rows, one BLAS thread each).
        ``None`` or -1: every CPU this process may use. Scores do not depend on it.

    Attributes
    ----------
    classes_ : ndarray of shape (n_states,)
        State labels, sorted.
    n_features_in_ : int
    thresholds_ : ndarray of shape (n_states,)
        Per-state log-density thresholds :math:`\\tau_i`.
    calibration_scores_ : list of ndarray
        Held-out log-densities of each state under its own mixture (Figure 7).
    holdout_coverage_ : ndarray of shape (n_states,)
        Fraction of each state's held-out samples inside its region.
    train_scores_ : list of ndarray
        Training-split log-densities of each state under its own mixture.
    mixtures_ : list of GaussianMixtureParams
        The fitted per-state mixtures (in the standardised space).
    converged_ : ndarray of bool, shape (n_states,)

    Examples
    --------
    >>> import numpy as np
    >>> from deltahall.detectors import HCDRDetector
    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack([rng.normal(-4, 1, (200, 3)), rng.normal(4, 1, (200, 3))])
    >>> y = np.repeat([0, 1], 200)
    >>> det = HCDRDetector(pca_dim=None, normalize=False, n_components=1, random_state=0).fit(X, y)
    >>> det.predict(np.array([[-4.0, -4, -4], [4, 4, 4], [0, 0, 0]])).tolist()
    [1, 1, -1]
    """

    def __init__(
        self,
        pca_dim: int | None = 50,
        n_components: int = 6,
        covariance_type: Literal["full", "diag", "tied", "spherical"] = "diag",
        percentile: float = 10.0,
        holdout_fraction: float = 0.2,
        normalize: bool = True,
        min_holdout: int = 10,
        reg_covar: float = 1e-6,
        random_state: Any = None,
        n_jobs: int | None = None,
    ) -> None:
        self.pca_dim = pca_dim
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.percentile = percentile
        self.holdout_fraction = holdout_fraction
        self.normalize = normalize
        self.min_holdout = min_holdout
        self.reg_covar = reg_covar
        self.random_state = random_state
        self.n_jobs = n_jobs

    # ------------------------------------------------------------------ checks
    def _check_params(self) -> None:
        from deltahall._validation import check_choice, check_int, check_real

        if self.pca_dim is not None:
            check_int(self.pca_dim, "pca_dim", low=1)
        check_int(self.n_components, "n_components", low=1)
        check_choice(self.covariance_type, "covariance_type", COVARIANCE_TYPES)
        check_real(self.percentile, "percentile", low=0.0, high=100.0, high_open=True)
        check_real(self.holdout_fraction, "holdout_fraction", low=0.0, high=1.0, low_open=True, high_open=True)
        if not isinstance(self.normalize, (bool, np.bool_)):
            raise TypeError(f"`normalize` must be a bool; got {type(self.normalize).__name__} {self.normalize!r}.")
        check_int(self.min_holdout, "min_holdout", low=1)
        check_real(self.reg_covar, "reg_covar", low=0.0)
        if self.n_jobs is not None and self.n_jobs != -1:
            check_int(self.n_jobs, "n_jobs", low=1)

    # --------------------------------------------------------------- fitting
    def fit(self, X: npt.ArrayLike, y: npt.ArrayLike) -> HCDRDetector:
        """Learn the per-state regions from labelled real embeddings.

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
            On NaN/inf rows, ``X``/``y`` length mismatch, a single state, a state whose
            held-out split is smaller than ``min_holdout`` or whose training split is
            smaller than ``n_components``, or ``pca_dim`` larger than the data allows.
        """
        from sklearn.decomposition import PCA
        from sklearn.mixture import GaussianMixture

        self._check_params()
        if y is None:
            raise ValueError(
                "HCDRDetector requires y to be passed, but the target y is None "
                "(`y` holds the latent-state label of every row of `X`)."
            )
        _check_dtype(X)
        X = np.asarray(
            validate_data(self, X, dtype=np.float64, ensure_all_finite=False, ensure_min_samples=2)
        )
        labels = column_or_1d(y, warn=True)
        if labels.shape[0] != X.shape[0]:
            raise ValueError(
                f"`X` and `y` must have the same number of rows; got {X.shape[0]} and {labels.shape[0]}."
            )
        if labels.dtype.kind == "f" and not np.isfinite(labels).all():
            bad = np.flatnonzero(~np.isfinite(labels))
            raise ValueError(f"`y` must not contain NaN/inf labels; found them at index {bad[:10].tolist()}.")
        _check_finite_rows(X, "X")
        classes, y_idx = np.unique(labels, return_inverse=True)
        if classes.shape[0] < 2:
            raise ValueError(
                f"`y` must contain at least two states (classes); got one class: {classes.tolist()}."
            )
        n, d = X.shape
        if self.normalize and d == 1:
            raise ValueError(
                "`X` has 1 feature(s): L2 normalisation (normalize=True) maps every row to +1 or -1, "
                "so no state has a density; pass normalize=False."
            )
        self._check_magnitudes(X)
        if self.pca_dim is not None and self.pca_dim > min(n, d):
            raise ValueError(
                f"`pca_dim` must be <= min(n_samples, n_features) = min({n}, {d}) = {min(n, d)}; "
                f"got {self.pca_dim}."
            )
        rs = check_random_state(self.random_state)

        # Stratified split, computed and checked before any expensive work.
        splits: list[tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]] = []
        for i, label in enumerate(classes.tolist()):
            idx = np.flatnonzero(y_idx == i)
            n_hold = math.ceil(self.holdout_fraction * idx.size)
            n_train = idx.size - n_hold
            if n_hold < self.min_holdout:
                raise ValueError(
                    f"state {label!r} has {idx.size} samples, so its held-out split "
                    f"(holdout_fraction={self.holdout_fraction:g}) has {n_hold} < "
                    f"`min_holdout`={self.min_holdout}; add samples or lower `min_holdout`."
                )
            if n_train < max(self.n_components, 2):
                raise ValueError(
                    f"state {label!r} has {n_train} training samples after the held-out split; "
                    f"need at least max(`n_components`, 2) = {max(self.n_components, 2)}."
                )
            perm = rs.permutation(idx)
            splits.append((np.sort(perm[n_hold:]), np.sort(perm[:n_hold])))

        # One transform on the pooled real embeddings.
        U = self._l2(X) if self.normalize else X
        if not np.isfinite(U).all():  # pragma: no cover - guarded by the magnitude checks above
            raise ValueError("L2 normalisation of `X` produced NaN/inf; this is a bug, please report it.")
        if self.pca_dim is not None:
            pca = PCA(n_components=self.pca_dim, svd_solver="full").fit(U)
            self.pca_mean_: npt.NDArray[np.float64] | None = np.ascontiguousarray(pca.mean_, dtype=np.float64)
            self.pca_components_: npt.NDArray[np.float64] | None = np.ascontiguousarray(
                pca.components_, dtype=np.float64
            )
            P = (U - self.pca_mean_) @ self.pca_components_.T
        else:
            self.pca_mean_ = None
            self.pca_components_ = None
            P = U
        self.scaler_mean_ = P.mean(axis=0)
        scale = P.std(axis=0)
        scale[scale < 10 * np.finfo(np.float64).eps] = 1.0
        self.scaler_scale_ = scale
        self._build_affine()
        Z = self._affine(U)
        self._check_state_spread(X, U, Z, classes, y_idx)

        mixtures, cal, train, conv = [], [], [], []
        for i, (tr, ho) in enumerate(splits):
            gmm = GaussianMixture(
                n_components=self.n_components,
                covariance_type=self.covariance_type,
                reg_covar=self.reg_covar,
                random_state=rs.randint(np.iinfo(np.int32).max),
            ).fit(Z[tr])
            if not gmm.converged_:
                logger.warning("GaussianMixture for state %r did not converge.", classes[i].item())
            params = GaussianMixtureParams.from_sklearn(gmm)
            mixtures.append(params)
            train.append(params.log_density(Z[tr]))
            cal.append(params.log_density(Z[ho]))
            conv.append(bool(gmm.converged_))
            bad = np.concatenate([tr[~np.isfinite(train[-1])], ho[~np.isfinite(cal[-1])]])
            if bad.size:
                raise ValueError(
                    f"state {classes[i].item()!r}: the fitted mixture gives a NaN/inf log-density to "
                    f"{bad.size} of its own rows ({_rows_text(np.sort(bad))}); its embeddings are "
                    "numerically degenerate (near-duplicate rows or extreme scale)."
                )
        self.classes_ = classes
        self.mixtures_ = mixtures
        self.calibration_scores_ = cal
        self.train_scores_ = train
        self.converged_ = np.array(conv)
        self.thresholds_ = np.array([np.percentile(c, self.percentile) for c in cal])
        self.holdout_coverage_ = np.array([np.mean(c >= t) for c, t in zip(cal, self.thresholds_, strict=True)])
        self._build_scorer()
        logger.info(
            "HCDR fitted: %d states, thresholds %s, held-out coverage %s",
            len(classes), self.thresholds_, self.holdout_coverage_,
        )
        return self

    # ------------------------------------------------------------- transform
    @staticmethod
    def _l2(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Row-wise ``x / |x|``, safe at any finite magnitude (zero rows are refused in fit)."""
        return safe_l2_normalize(x)

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
                f"[{lo:g}, {hi:g}] in magnitude (their squares overflow or underflow float64 in PCA "
                "and the z-score); rescale `X` or use normalize=True."
            )

    def _check_state_spread(
        self,
        X: npt.NDArray[np.float64],
        U: npt.NDArray[np.float64],
        Z: npt.NDArray[np.float64],
        classes: npt.NDArray[Any],
        y_idx: npt.NDArray[np.intp],
    ) -> None:
        """Refuse a state whose rows all coincide where its mixture is fitted (zero variance).

        One constant feature is fine; the rule is on the whole row: a state's rows must not
        all be the same point (to ``_SAME_POINT`` pooled standard deviations) after L2
        normalisation, PCA and the z-score.
        """
        for i, label in enumerate(classes.tolist()):
            idx = np.flatnonzero(y_idx == i)
            if np.ptp(Z[idx], axis=0).max() > _SAME_POINT:
                continue
            if np.ptp(X[idx], axis=0).max() == 0.0:
                how = "are all identical"
            elif self.normalize and np.ptp(U[idx], axis=0).max() <= 1e-12:
                how = "are all the same point after L2 normalisation (positive multiples of one vector)"
            else:
                how = f"all coincide after PCA to pca_dim={self.pca_dim} and z-scoring"
            raise ValueError(
                f"state {label!r} has zero variance: its {idx.size} rows ({_rows_text(idx)}) {how}, "
                "so no density can be fitted to it; drop the state or check its embeddings."
            )

    def _build_affine(self) -> None:
        """Fold PCA and z-score into ``z = u @ W + b`` (or ``u * w + b`` without PCA)."""
        inv = 1.0 / self.scaler_scale_
        if self.pca_components_ is not None and self.pca_mean_ is not None:
            self._W = np.ascontiguousarray(self.pca_components_.T * inv)
            self._W32 = self._W.astype(np.float32)
            self._b = -(self.pca_mean_ @ self.pca_components_.T + self.scaler_mean_) * inv
        else:
            self._W = None  # type: ignore[assignment]
            self._w = inv
            self._b = -self.scaler_mean_ * inv

    def _build_scorer(self) -> None:
        self._stack = StackedMixtures(self.mixtures_)
        self._fused = FusedScorer(
            self.mixtures_,
            W=None if self.pca_components_ is None else self.pca_components_.T,
            scale_inv=1.0 / self.scaler_scale_,
            b=self._b,
            normalize=bool(self.normalize),
        )

    def _affine(self, u: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        if self._W is not None:
            return u @ self._W + self._b
        return u * self._w + self._b

    def _transform_chunk(self, x: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        """Standardised embeddings of one chunk, float64 (n, k).

        float32 input stays float32 through the (dominant) 128 -> k projection, which halves
        its cost; the error this adds to a log-density is ~1e-5, far below threshold gaps.
        """
        if self._W is not None and x.dtype == np.float32:
            W = self._W32
        else:
            x = np.asarray(x, dtype=np.float64)
            W = self._W
        if self.normalize:
            # Extreme rows are rescaled first (same direction); an all-zero row gives NaN,
            # which the caller reports as an error.
            r2, rows, scaled = safe_sq_norms(x)
            with np.errstate(divide="ignore"):
                inv = 1.0 / np.sqrt(r2)
            if W is not None:  # (x/|x|) @ W == (x @ W)/|x|: no normalised copy of x
                z = (x @ W).astype(np.float64, copy=False)
                if rows.size:
                    z[rows] = scaled @ self._W
                z *= inv[:, None]
                z += self._b
                return z
            u = np.array(x, dtype=np.float64)
            u[rows] = scaled
            return (u * inv[:, None]) * self._w + self._b
        if W is not None:
            return (x @ W).astype(np.float64, copy=False) + self._b
        return x * self._w + self._b

    def _validate_X(self, X: npt.ArrayLike) -> npt.NDArray[Any]:
        check_is_fitted(self)
        _check_dtype(X)
        # Finiteness is checked on the chunk results (NaN/inf propagate through every step);
        # only a chunk with non-finite results pays for an exact row-by-row input check.
        return validate_data(self, X, reset=False, dtype=[np.float64, np.float32], ensure_all_finite=False)

    def _check_chunk(self, X: npt.NDArray[Any], start: int, out: npt.NDArray[np.float64]) -> None:
        """A non-finite result is an error, never a score: name the rows and the cause."""
        if np.isfinite(out).all():
            return
        block = X[start : start + out.shape[0]]
        if not np.isfinite(block).all():
            _check_finite_rows(X, "X")
        bad = np.flatnonzero(~np.isfinite(out).all(axis=1))
        if self.normalize:
            zero = bad[~block[bad].any(axis=1)]
            if zero.size:
                raise ValueError(
                    f"`X` has {zero.size} all-zero row(s) ({_rows_text(zero + start)}): L2 "
                    "normalisation (normalize=True) is undefined for them."
                )
        top = float(np.abs(block[bad]).max())
        raise ValueError(
            f"the log-density of {bad.size} row(s) of `X` ({_rows_text(bad + start)}) is not finite "
            f"(NaN/inf intermediate; largest |entry| of those rows {top:.3g}): they are too far "
            "from every state for float64. This is an error, not a hallucination; rescale `X` "
            "like the training embeddings."
        )

    def preprocess(self, X: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Map embeddings into the standardised space the mixtures live in, shape (n, k)."""
        X = self._validate_X(X)
        out = np.empty((X.shape[0], self._b.shape[0]))
        for s in range(0, X.shape[0], _CHUNK_ROWS):
            with np.errstate(invalid="ignore", over="ignore", divide="ignore"):  # non-finite: error below
                out[s : s + _CHUNK_ROWS] = self._transform_chunk(X[s : s + _CHUNK_ROWS])
            self._check_chunk(X, s, out[s : s + _CHUNK_ROWS])
        return out

    # --------------------------------------------------------------- scoring
    def _score_chunk(self, X: npt.NDArray[Any], s: int, out: npt.NDArray[np.float64]) -> None:
        chunk = X[s : s + _CHUNK_ROWS]
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):  # non-finite: error below
            if self._fused.fused:
                out[s : s + chunk.shape[0]] = self._fused.scores(chunk)
            else:
                out[s : s + chunk.shape[0]] = self._stack.log_densities(self._transform_chunk(chunk))
        self._check_chunk(X, s, out[s : s + chunk.shape[0]])

    def _scores(self, X: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        n = X.shape[0]
        out = np.empty((n, len(self.mixtures_)))
        starts = range(0, n, _CHUNK_ROWS)
        workers = min(_n_workers(self.n_jobs), len(starts))
        if workers <= 1:
            for s in starts:
                self._score_chunk(X, s, out)
            return out
        # Chunks are independent, so the result does not depend on n_jobs. One BLAS thread per
        # worker: OpenBLAS's own threading spins on chunk-sized products and costs ~3x CPU.
        from concurrent.futures import ThreadPoolExecutor

        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
            for f in [pool.submit(self._score_chunk, X, s, out) for s in starts]:
                f.result()
        return out

    def score_samples(self, X: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Per-state log-densities :math:`\\log \\hat f_i(z)` in the standardised space.

        Returns
        -------
        ndarray of shape (n_samples, n_states), columns ordered as ``classes_``.
        """
        return self._scores(self._validate_X(X))

    def decision_function(self, X: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """:math:`\\max_i(\\log \\hat f_i(z) - \\tau_i)`; non-negative inside the HCDR. Shape (n,)."""
        return (self.score_samples(X) - self.thresholds_).max(axis=1)

    def predict(self, X: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """+1 inside the HCDR, -1 outside (a δ-hallucination, Remark 6.1). Shape (n,)."""
        return np.where(self.decision_function(X) >= 0.0, 1, -1)

    def fit_predict(self, X: npt.ArrayLike, y: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """``fit(X, y).predict(X)``."""
        return self.fit(X, y).predict(X)

    def state_membership(self, X: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Boolean (n, n_states): is the embedding inside state i's region :math:`\\hat U_i`."""
        return self.score_samples(X) >= self.thresholds_

    def hallucination_rate(self, X: npt.ArrayLike) -> float:
        """Fraction of rows of ``X`` outside the HCDR."""
        pred = self.predict(X)
        if pred.size == 0:
            raise ValueError("`X` must contain at least one row to compute a rate; got 0.")
        return float(np.mean(pred == -1))

    def thresholds_at(self, percentiles: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Thresholds re-computed from the stored calibration scores, shape (n_p, n_states)."""
        check_is_fitted(self)
        p = np.atleast_1d(np.asarray(percentiles, dtype=np.float64))
        if p.ndim != 1 or not np.isfinite(p).all() or (p < 0).any() or (p > 100).any():
            raise ValueError(f"`percentiles` must be a 1-d array of values in [0, 100]; got {p.tolist()}.")
        return np.stack([np.percentile(c, p) for c in self.calibration_scores_], axis=1)

    def rate_curve(self, X: npt.ArrayLike, percentiles: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Hallucination rate of ``X`` as a function of the threshold percentile (no refit).

        Returns
        -------
        ndarray of shape (n_percentiles,)
        """
        thr = self.thresholds_at(percentiles)
        s = self.score_samples(X)
        if s.shape[0] == 0:
            raise ValueError("`X` must contain at least one row to compute a rate; got 0.")
        inside = (s[None, :, :] >= thr[:, None, :]).any(axis=2)
        return 1.0 - inside.mean(axis=1)

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
