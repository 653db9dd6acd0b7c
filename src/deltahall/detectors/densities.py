r"""Per-state densities on embeddings, each state's model chosen from its own data.

The density scorer of the one instrument: it turns embeddings into an ``(n, N_states)``
matrix of per-state log-densities :math:`\log \hat f_i(z)`.

**The model.** One shared transform, fitted on the pooled fit rows: optional L2
normalisation, centring, a PCA rotation and one global scale (a scalar, so relative
variances are kept). State :math:`i`'s density is a probabilistic-PCA-style model in the
*whole* space: a Gaussian mixture on the first :math:`k_i` principal coordinates times an
isotropic Gaussian on everything else (the other :math:`d - k_i` directions, with the
state's mean residual variance :math:`\sigma_i^2`),

.. math::

    \log \hat f_i(z) = \log g_i(c_{1..k_i}(z)) - \frac{\rho_{k_i}(z)}{2\sigma_i^2}
                       - \frac{d - k_i}{2}\log(2\pi\sigma_i^2),

where :math:`\rho_k(z)` is the squared distance of :math:`z` from the first :math:`k`
principal directions. Because every candidate is a density on the same space, held-out
log-likelihoods compare across PCA dimensions, covariance types and component counts.

**The choice.** Per state, the fit rows are split (seeded, 75 / 25) and every candidate of
the grid (``pca_dim`` × ``covariance_type`` × ``n_components``, any of them fixed by the
caller) is fitted on the first part and scored on the second; the candidate with the
highest mean held-out log-likelihood is refitted on all the state's fit rows. Only the fit
rows are used, so a calibration part kept apart stays exchangeable with fresh samples and
the conformal guarantee holds whatever is chosen. Candidates a state is too small for are
skipped, and the reason is recorded in :attr:`StateDensities.choices_`; a state too small
for any model is refused.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from deltahall._validation import check_int
from deltahall.detectors._gmm import GaussianMixtureParams
from deltahall.detectors._scorer import safe_l2_normalize

logger = logging.getLogger(__name__)

__all__ = ["AUTO", "DensityChoice", "StateDensities", "candidate_grid"]

AUTO = "auto"
#: PCA dimensions tried by ``pca_dim="auto"`` (capped by the data).
PCA_GRID = (2, 4, 8, 16, 32, 64)
COV_GRID = ("full",)
COMPONENT_GRID = (1, 2)
#: Fewest fit rows a state needs: 3 for the selection split, 2 for a density.
MIN_FIT_ROWS = 3
#: Rows of the selection split used per state (a seeded subsample above this).
_SELECT_ROWS = 2000
_CHUNK = 8192
_LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True)
class DensityChoice:
    """The model chosen for one state and why."""

    state: str
    pca_dim: int
    covariance_type: str
    n_components: int
    heldout_loglik: float | None
    n_fit: int
    n_candidates: int
    reason: str


def _feasible(n_rows: int, k: int, cov: str, c: int) -> bool:
    if cov == "full":
        return n_rows >= c * (k + 2)
    return n_rows >= 3 * c


def candidate_grid(
    max_dim: int, pca_dim: Any = AUTO, covariance_type: Any = AUTO, n_components: Any = AUTO
) -> list[tuple[int, str, int]]:
    """``(k, covariance_type, n_components)`` candidates, fixed values narrowing the grid."""
    if pca_dim == AUTO:
        ks = sorted(
            {min(v, max_dim) for v in PCA_GRID} | ({max_dim} if max_dim <= PCA_GRID[-1] else set())
        )
    elif pca_dim is None:
        ks = [max_dim]
    else:
        ks = [min(int(pca_dim), max_dim)]
    covs = list(COV_GRID) if covariance_type == AUTO else [str(covariance_type)]
    comps = list(COMPONENT_GRID) if n_components == AUTO else [int(n_components)]
    return [(k, cv, c) for k in ks for cv in covs for c in comps]


class _StateModel:
    """One state's fitted density (see the module docstring)."""

    def __init__(self, k: int, gmm: GaussianMixtureParams, sigma2: float, d: int) -> None:
        self.k, self.gmm, self.sigma2, self.d = k, gmm, sigma2, d
        self.pre = gmm._precompute()

    def log_density(
        self,
        c: npt.NDArray[np.float64],
        total_sq: npt.NDArray[np.float64] | None = None,
        cum_sq: npt.NDArray[np.float64] | None = None,
    ) -> npt.NDArray[np.float64]:
        """The mixture's log-density of the first ``k`` coordinates; with ``total_sq`` and ``cum_sq``
        also the isotropic residual term (the whole-space density used to compare candidates)."""
        out = self.gmm.log_density(np.ascontiguousarray(c[:, : self.k]), self.pre)
        rest = self.d - self.k
        if rest > 0 and total_sq is not None and cum_sq is not None:
            resid = np.maximum(total_sq - cum_sq[:, self.k - 1], 0.0)
            out = out - 0.5 * resid / self.sigma2 - 0.5 * rest * (_LOG_2PI + math.log(self.sigma2))
        return np.asarray(out)


def _one_gaussian(x: npt.NDArray[np.float64], cov: str, reg_covar: float) -> GaussianMixtureParams:
    """The maximum-likelihood Gaussian in closed form (what a one-component mixture converges to)."""
    mu = x.mean(axis=0)
    xc = x - mu
    if cov == "diag":
        var = (xc * xc).mean(axis=0) + reg_covar
        return GaussianMixtureParams("diag", np.ones(1), mu[None, :], (1.0 / np.sqrt(var))[None, :])
    from scipy.linalg import solve_triangular
    from sklearn.covariance import ledoit_wolf

    # Ledoit-Wolf shrinkage towards a scaled identity: a small state's covariance is not
    # overfitted (its smallest eigenvalues are not underestimated), a large one's barely moves.
    S = ledoit_wolf(xc, assume_centered=True)[0] + reg_covar * np.eye(x.shape[1])
    L = np.linalg.cholesky(S)
    prec = solve_triangular(L, np.eye(x.shape[1]), lower=True).T
    return GaussianMixtureParams("full", np.ones(1), mu[None, :], prec[None, :, :])


def _fit_model(
    c: npt.NDArray[np.float64],
    total_sq: npt.NDArray[np.float64],
    k: int,
    cov: str,
    comps: int,
    d: int,
    seed: int,
    reg_covar: float,
) -> _StateModel:
    x = c[:, :k]
    if comps == 1 and cov in ("full", "diag"):
        params = _one_gaussian(x, cov, reg_covar)
    else:
        from sklearn.mixture import GaussianMixture

        gmm = GaussianMixture(
            n_components=comps,
            covariance_type=cov,
            reg_covar=reg_covar,
            random_state=seed,
            max_iter=100,
            init_params="k-means++",
        ).fit(x)
        params = GaussianMixtureParams.from_sklearn(gmm)
    rest = d - k
    if rest > 0:
        cum = np.einsum("ij,ij->i", c[:, :k], c[:, :k])
        sigma2 = float(np.mean(np.maximum(total_sq - cum, 0.0)) / rest)
        sigma2 = max(sigma2, 1e-6)
    else:
        sigma2 = 1.0
    return _StateModel(k, params, sigma2, d)


class StateDensities:
    """Per-state log-densities with a per-state model chosen by held-out likelihood.

    Parameters
    ----------
    pca_dim : "auto", int or None
        Principal coordinates modelled by each state's mixture (``None``: all of them).
    covariance_type : "auto" or {"full", "diag", "tied", "spherical"}
    n_components : "auto" or int
    normalize : bool
        L2-normalise embeddings first (cosine geometry; refused for 1-d data).
    reg_covar : float
        Added to mixture covariances, in units of the global scale.
    random_state : int

    Attributes
    ----------
    choices_ : list of DensityChoice
    n_features_in_ : int
    """

    def __init__(
        self,
        *,
        pca_dim: Any = AUTO,
        covariance_type: Any = AUTO,
        n_components: Any = AUTO,
        normalize: bool = True,
        reg_covar: float = 1e-4,
        random_state: int = 0,
    ) -> None:
        self.pca_dim = pca_dim
        self.covariance_type = covariance_type
        self.n_components = n_components
        self.normalize = normalize
        self.reg_covar = reg_covar
        self.random_state = random_state

    # ------------------------------------------------------------------ transform
    def _coords(self, X: npt.NDArray[Any], k: int | None = None) -> npt.NDArray[np.float64]:
        """The first ``k`` (default: all D) principal coordinates, shape (n, k)."""
        U = safe_l2_normalize(X) if self.normalize else np.asarray(X, dtype=np.float64)
        W = self.components_ if k is None else self.components_[:k]
        return np.asarray((U @ W.T - self.mean_ @ W.T) / self.scale_)

    def fit(
        self, X: npt.ArrayLike, y_idx: npt.ArrayLike, state_names: list[str] | None = None
    ) -> StateDensities:
        """Fit the transform on all rows and each state's chosen model on its rows.

        Parameters
        ----------
        X : array-like (n, d)
            The *fit* rows only (keep calibration rows out).
        y_idx : array-like of int (n,)
            State index 0..N-1 of each row.
        state_names : list of str, optional
            Names used in messages and :attr:`choices_`.

        Raises
        ------
        ValueError
            A state with fewer than :data:`MIN_FIT_ROWS` rows, non-finite values, 1-d data
            with ``normalize=True``, a bad option.
        """
        A = np.asarray(X, dtype=np.float64)
        y = np.asarray(y_idx).astype(np.int64).ravel()
        if A.ndim != 2 or A.shape[0] != y.shape[0]:
            raise ValueError(
                f"`X` must be (n, d) with one state per row; got {A.shape} and {y.shape[0]} states."
            )
        if not np.isfinite(A).all():
            raise ValueError("the reference embeddings must be finite; found NaN/inf.")
        n, d = A.shape
        n_states = int(y.max()) + 1 if y.size else 0
        names = state_names or [str(i) for i in range(n_states)]
        if self.normalize and d == 1:
            raise ValueError(
                "1-dimensional embeddings cannot be L2-normalised (every row becomes +1 or -1); "
                "pass normalize=False."
            )
        if self.normalize and not A.any(axis=1).all():
            raise ValueError(
                "the reference has all-zero rows: L2 normalisation is undefined for them."
            )
        for v, nm in ((self.pca_dim, "pca_dim"), (self.n_components, "n_components")):
            if v != AUTO and v is not None:
                check_int(v, nm, low=1)
        if self.covariance_type != AUTO and self.covariance_type not in (
            "full",
            "diag",
            "tied",
            "spherical",
        ):
            raise ValueError(
                f"`covariance_type` must be 'auto', 'full', 'diag', 'tied' or 'spherical'; "
                f"got {self.covariance_type!r}."
            )
        counts = np.bincount(y, minlength=n_states)
        for i, m in enumerate(counts.tolist()):
            if m < MIN_FIT_ROWS:
                raise ValueError(
                    f"state {names[i]!r} has {m} row(s) in its fit part; the density model needs at "
                    f"least {MIN_FIT_ROWS}. Add reference samples for it."
                )
        U = safe_l2_normalize(A) if self.normalize else A
        self.mean_ = U.mean(axis=0)
        Uc = U - self.mean_
        scale = math.sqrt(float(np.mean(np.einsum("ij,ij->i", Uc, Uc))) / d)
        self.scale_ = scale if scale > 0 else 1.0
        Uc /= self.scale_
        D = min(d, max(1, n - 1), max(PCA_GRID))
        # Rotation: the pooled principal directions (SVD of the centred fit rows).
        _, _, vt = np.linalg.svd(Uc, full_matrices=False)
        self.components_ = np.ascontiguousarray(vt[:D])
        self.n_features_in_ = d
        c = Uc @ self.components_.T
        total = np.einsum("ij,ij->i", Uc, Uc)
        rng = np.random.default_rng([int(self.random_state), 11])
        self.models_: list[_StateModel] = []
        self.choices_: list[DensityChoice] = []
        for i in range(n_states):
            rows = np.flatnonzero(y == i)
            model, choice = self._choose(c[rows], total[rows], D, d, names[i], rng)
            self.models_.append(model)
            self.choices_.append(choice)
        self.k_max_ = max(m.k for m in self.models_)
        return self

    def _choose(
        self,
        c: npt.NDArray[np.float64],
        total: npt.NDArray[np.float64],
        D: int,
        d: int,
        name: str,
        rng: np.random.Generator,
    ) -> tuple[_StateModel, DensityChoice]:
        m = c.shape[0]
        grid = candidate_grid(D, self.pca_dim, self.covariance_type, self.n_components)
        seed = int(rng.integers(2**31 - 1))
        perm = rng.permutation(m)
        n_hold = max(1, m // 4)
        hold, train = perm[:n_hold], perm[n_hold:]
        if train.size > _SELECT_ROWS:
            train = train[:_SELECT_ROWS]
        if hold.size > _SELECT_ROWS // 2:
            hold = hold[: _SELECT_ROWS // 2]
        feasible = [g for g in grid if _feasible(train.size, *g)]
        reason = "highest held-out log-likelihood on the fit part"
        if not feasible:
            # Shrink: the smallest model the state can carry, said so.
            k = min(grid[0][0], max(1, m - 2))
            cov = "diag"
            fallback = (k, cov, 1)
            fixed = [g for g in grid if g[0] <= k] or [fallback]
            feasible = [g for g in fixed if _feasible(m, *g)] or [fallback]
            reason = (
                f"shrunk: {m} fit rows are too few for the requested model(s) "
                f"{sorted(set(grid))[:3]}...; used the smallest feasible"
            )
            logger.warning("state %r: %s", name, reason)
            k, cov, comps = feasible[0]
            model = _fit_model(c, total, k, cov, comps, d, seed, self.reg_covar)
            return model, DensityChoice(name, k, cov, comps, None, m, 0, reason)
        best: tuple[float, tuple[int, str, int]] | None = None
        if len(feasible) == 1:
            best = (float("nan"), feasible[0])
            reason = "the only candidate"
        else:
            ch = c[hold]
            cum = np.cumsum(ch * ch, axis=1)
            for g in feasible:
                try:
                    mdl = _fit_model(c[train], total[train], *g, d, seed, self.reg_covar)
                    ll = float(np.mean(mdl.log_density(ch, total[hold], cum)))
                except (ValueError, np.linalg.LinAlgError):
                    continue
                if math.isfinite(ll) and (best is None or ll > best[0]):
                    best = (ll, g)
            if best is None:
                best = (float("nan"), feasible[0])
                reason = "every candidate failed on the selection split; used the first"
        k, cov, comps = best[1]
        if isinstance(self.pca_dim, int) and self.pca_dim > D:
            reason += (
                f"; pca_dim {self.pca_dim} capped to {D} = min(n_features, n_fit_rows - 1, "
                f"{max(PCA_GRID)}), the largest the data allow"
            )
            logger.warning(
                "state %r: pca_dim %d capped to %d (the data's rank or the grid's maximum).",
                name,
                self.pca_dim,
                D,
            )
        model = _fit_model(c, total, k, cov, comps, d, seed, self.reg_covar)
        ll_opt = best[0] if math.isfinite(best[0]) else None
        return model, DensityChoice(name, k, cov, comps, ll_opt, m, len(feasible), reason)

    # ------------------------------------------------------------------ scoring
    def score(self, X: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Per-state log-densities, shape (n, N_states), chunk by chunk."""
        A = X if isinstance(X, np.ndarray) else np.asarray(X)
        if A.ndim != 2 or A.shape[1] != self.n_features_in_:
            raise ValueError(
                f"embeddings must have shape (n, {self.n_features_in_}); got {A.shape}."
            )
        n = A.shape[0]
        out = np.empty((n, len(self.models_)))
        for s in range(0, n, _CHUNK):
            block = np.asarray(A[s : s + _CHUNK], dtype=np.float64)
            if not np.isfinite(block).all():
                bad = s + np.flatnonzero(~np.isfinite(block).all(axis=1))
                raise ValueError(
                    f"embeddings must be finite; rows {bad[:10].tolist()} hold NaN/inf."
                )
            if self.normalize and not block.any(axis=1).all():
                bad = s + np.flatnonzero(~block.any(axis=1))
                raise ValueError(
                    f"rows {bad[:10].tolist()} are all zero: L2 normalisation is undefined for them."
                )
            c = self._coords(block, self.k_max_)
            for i, mdl in enumerate(self.models_):
                out[s : s + block.shape[0], i] = mdl.log_density(c)
        return out

    def transform(self, X: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Principal coordinates of ``X`` in the shared space (n, D): where baselines are fitted."""
        A = np.asarray(X, dtype=np.float64)
        return self._coords(A)

    def summary(self) -> list[dict[str, Any]]:
        from deltahall.io.rundir import to_jsonable

        return [to_jsonable(ch) for ch in self.choices_]
