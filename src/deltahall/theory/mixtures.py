"""Latent mixtures: a target A(X) stated as N latent states (Definition 4.1).

A :class:`LatentMixture` holds the weights ``p_i = Pr[Z = Z_i]`` and one
conditional law per state. Three kinds of state are offered:

* :class:`GaussianState` -- a multivariate normal with any positive-definite
  covariance, held through its Cholesky factor so that very large or very
  small scales never overflow (log-densities are computed in log space);
* :class:`ScipyState` -- any frozen ``scipy.stats`` law (continuous or
  discrete, univariate or multivariate) that offers ``logpdf``/``logpmf`` and
  ``rvs``;
* :class:`DiscreteState` -- a finite pmf over points of R^d.

All point arrays are ``(n, d)``; a 1-d array is read as ``n`` points when
``d == 1`` and as one point otherwise.

Examples
--------
>>> import numpy as np
>>> mix = LatentMixture([0.5, 0.5], [GaussianState([-2.0], [[1.0]]), GaussianState([2.0], [[1.0]])])
>>> float(mix.mean()[0])
0.0
>>> bool(np.allclose(np.exp(mix.logpdf([0.0])), 0.05399, atol=1e-5))
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
from scipy.linalg import solve_triangular
from scipy.special import logsumexp

from deltahall._validation import (
    check_finite_array,
    check_int,
    check_probability_vector,
    check_real,
    check_spd,
)

__all__ = [
    "MAX_DIM",
    "MAX_FACTOR_ENTRIES",
    "MAX_STATES",
    "ConditionalLaw",
    "DiscreteState",
    "GaussianState",
    "LatentMixture",
    "ScipyState",
    "as_points",
    "check_problem_size",
    "scaled_norm",
]

FloatArray = npt.NDArray[np.float64]
LOG_2PI = math.log(2.0 * math.pi)

#: Largest number of latent states a builder or calculator accepts (a witness with 10 000
#: states takes about 2 s on one core; the cost is linear in N).
MAX_STATES = 10_000
#: Largest output dimension (one d x d Cholesky factor, its inverse and an SVD per state).
MAX_DIM = 1_024
#: Largest ``N * d**2``: the entries of all covariance factors together (2**22 floats = 32 MiB
#: per copy; a few copies are alive at once). Keeps every theory command under a few seconds
#: and far below the memory of a laptop: ``--dim 1000000`` would ask for 7 TiB.
MAX_FACTOR_ENTRIES = 2**22


def check_problem_size(
    n_states: Any, dim: Any, *, states_name: str = "n_states", dim_name: str = "dim"
) -> tuple[int, int]:
    """Refuse problem sizes that cannot fit in memory or finish in seconds, before allocating.

    Parameters
    ----------
    n_states, dim : int
        Number of latent states ``N >= 2`` and output dimension ``d >= 1``.
    states_name, dim_name : str
        Parameter names used in the error message (e.g. ``"states"`` for the CLI).

    Returns
    -------
    (int, int)
        ``n_states`` and ``dim`` as ints.

    Raises
    ------
    ValueError
        ``N > MAX_STATES``, ``d > MAX_DIM`` or ``N d² > MAX_FACTOR_ENTRIES``.
    TypeError
        A non-integer.

    Examples
    --------
    >>> check_problem_size(3, 2)
    (3, 2)
    """
    n = check_int(n_states, states_name, low=2, high=MAX_STATES)
    d = check_int(dim, dim_name, low=1, high=MAX_DIM)
    if n * d * d > MAX_FACTOR_ENTRIES:
        raise ValueError(
            f"`{states_name}` * `{dim_name}`**2 must be <= {MAX_FACTOR_ENTRIES} (the entries of all covariance "
            f"factors); got {n} * {d}**2 = {n * d * d}."
        )
    return n, d


def scaled_norm(v: Any, axis: int | None = None) -> Any:
    """Euclidean norm that neither underflows nor overflows: ``m * ||v / m||`` with ``m = max |v|``.

    ``np.linalg.norm`` squares its input, so a vector of size ``1e-200`` has norm 0 and one of
    size ``1e200`` has norm inf. This helper rescales first.

    Parameters
    ----------
    v : array_like
        Finite entries.
    axis : int, optional
        Reduce along this axis (default: the whole array).

    Returns
    -------
    float or ndarray
        The norm(s); inf only when the true norm exceeds 1.8e308.

    Examples
    --------
    >>> float(scaled_norm([3e-200, 4e-200]))
    5e-200
    """
    a = np.asarray(v, dtype=np.float64)
    m = np.max(np.abs(a), axis=axis, keepdims=axis is not None)
    safe = np.where(m > 0, m, 1.0)
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.linalg.norm(a / safe, axis=axis, keepdims=axis is not None) * m
    return out if axis is None else np.squeeze(out, axis=axis)


def as_points(x: Any, dim: int, name: str = "x") -> FloatArray:
    """Return ``x`` as a finite ``(n, dim)`` float64 array (see module notes).

    Parameters
    ----------
    x : array_like
        A scalar, ``(n,)`` (n points if ``dim == 1``, else one point) or ``(n, dim)``.
    dim : int
        The dimension ``d``.
    name : str
        Parameter name for error messages.

    Returns
    -------
    ndarray, shape (n, dim)

    Raises
    ------
    ValueError
        Non-finite entries or the wrong shape.

    Examples
    --------
    >>> as_points([1.0, 2.0], 1).shape, as_points([1.0, 2.0], 2).shape
    ((2, 1), (1, 2))
    """
    arr = check_finite_array(x, name)
    if arr.ndim == 0:
        arr = arr.reshape(1, 1)
    elif arr.ndim == 1:
        arr = arr.reshape(-1, 1) if dim == 1 else arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(f"`{name}` must have shape (n, {dim}); got {np.shape(x)}.")
    return arr


@runtime_checkable
class ConditionalLaw(Protocol):
    """What a latent state must offer: a dimension, a log-density, a sampler, a mean."""

    @property
    def dim(self) -> int: ...

    def logpdf(self, x: Any) -> FloatArray: ...

    def sample(self, n: int, rng: np.random.Generator) -> FloatArray: ...

    def mean(self) -> FloatArray: ...


class GaussianState:
    r"""A multivariate normal :math:`\mathcal N(\mu, \Sigma)` state.

    Parameters
    ----------
    mean : array_like, shape (d,)
    cov : array_like, shape (d, d), optional
        Symmetric positive definite. Give either ``cov`` or ``scale_tril``.
    scale_tril : array_like, shape (d, d), optional
        Lower-triangular ``L`` with positive diagonal, :math:`\Sigma = L L^\top`.
        Use it for scales whose square would overflow (e.g. ``1e200``).

    Raises
    ------
    ValueError
        Non-finite entries, mismatched shapes, a covariance that is not
        positive definite.
    """

    __slots__ = ("_mean", "_tril", "_tril_inv", "_log_norm")

    def __init__(self, mean: Any, cov: Any = None, *, scale_tril: Any = None) -> None:
        mu = check_finite_array(mean, "mean").reshape(-1)
        if mu.size == 0:
            raise ValueError("`mean` must have at least one entry; got shape (0,).")
        if (cov is None) == (scale_tril is None):
            raise ValueError("give exactly one of `cov` and `scale_tril`.")
        if cov is not None:
            c = check_spd(np.atleast_2d(np.asarray(cov, dtype=np.float64)), "cov")
            if c.shape[0] != mu.size:
                raise ValueError(f"`cov` must have shape ({mu.size}, {mu.size}); got {c.shape}.")
            tril = np.linalg.cholesky(c)
        else:
            tril = check_finite_array(np.atleast_2d(scale_tril), "scale_tril", ndim=2)
            if tril.shape != (mu.size, mu.size):
                raise ValueError(
                    f"`scale_tril` must have shape ({mu.size}, {mu.size}); got {tril.shape}."
                )
            if not np.all(np.diag(tril) > 0):
                raise ValueError(
                    f"`scale_tril` must have a positive diagonal (positive-definite covariance); "
                    f"got diagonal {np.diag(tril).tolist()}."
                )
            tril = np.tril(tril)
        self._mean = mu
        self._tril: FloatArray = np.asarray(tril, dtype=np.float64)
        self._tril_inv = solve_triangular(tril, np.eye(mu.size), lower=True)
        self._log_norm = -0.5 * mu.size * LOG_2PI - float(np.sum(np.log(np.diag(tril))))
        for a in (self._mean, self._tril, self._tril_inv):
            a.setflags(write=False)

    @classmethod
    def isotropic(cls, mean: Any, scale: float) -> GaussianState:
        """:math:`\\mathcal N(\\mu, s^2 I)` without forming ``s**2`` (no overflow).

        Parameters
        ----------
        mean : array_like, shape (d,)
        scale : float > 0
            Standard deviation ``s`` of every coordinate.

        Returns
        -------
        GaussianState

        Raises
        ------
        ValueError
            Non-finite values or ``scale <= 0``.
        """
        mu = np.asarray(mean, dtype=np.float64).reshape(-1)
        s = check_real(scale, "scale", low=0.0, low_open=True)
        return cls(mu, scale_tril=s * np.eye(mu.size))

    @property
    def dim(self) -> int:
        """The dimension ``d`` of a point."""
        return int(self._mean.size)

    @property
    def loc(self) -> FloatArray:
        """The mean vector μ (read-only)."""
        return self._mean

    @property
    def scale_tril(self) -> FloatArray:
        """The lower-triangular Cholesky factor ``L`` of Σ (read-only)."""
        return self._tril

    @property
    def precision_factor(self) -> FloatArray:
        """``W = L^{-1}`` so that the Mahalanobis distance is ``||W (x - μ)||²``."""
        return self._tril_inv

    @property
    def cov(self) -> FloatArray:
        """``L L^T`` (may overflow to inf for extreme scales; the density never uses it)."""
        with np.errstate(over="ignore"):
            return self._tril @ self._tril.T

    @property
    def log_peak(self) -> float:
        """log of the largest density value, ``-d/2 log 2π - 1/2 log det Σ``."""
        return self._log_norm

    def mean(self) -> FloatArray:
        """The mean vector, shape ``(d,)``."""
        return self._mean.copy()

    def cov_eigvals(self) -> FloatArray:
        """Eigenvalues of Σ, ascending, computed from ``L`` (squared singular values)."""
        s = np.linalg.svd(self._tril, compute_uv=False)
        with np.errstate(over="ignore"):
            return np.sort(s**2)

    def mahalanobis_sq(self, x: Any) -> FloatArray:
        """:math:`(x-\\mu)^\\top \\Sigma^{-1} (x-\\mu)` for each row of ``x``.

        Parameters
        ----------
        x : array_like, shape (n, d)

        Returns
        -------
        ndarray, shape (n,)
            ``inf`` where the distance exceeds the float64 range.

        Raises
        ------
        ValueError
            Non-finite ``x`` or the wrong dimension.
        """
        pts = as_points(x, self.dim)
        z = solve_triangular(self._tril, (pts - self._mean).T, lower=True)
        with np.errstate(over="ignore"):
            return np.einsum("ij,ij->j", z, z)

    def logpdf(self, x: Any) -> FloatArray:
        r"""Log-density of each row of ``x``; ``-inf`` where the distance overflows.

        .. math:: \log f(x) = -\tfrac d2 \log 2π - \tfrac12 \log\det Σ - \tfrac12 (x-μ)^\top Σ^{-1} (x-μ).

        Parameters
        ----------
        x : array_like, shape (n, d)

        Returns
        -------
        ndarray, shape (n,)

        Raises
        ------
        ValueError
            Non-finite ``x`` or the wrong dimension.
        """
        return self._log_norm - 0.5 * self.mahalanobis_sq(x)

    def sample(self, n: int, rng: np.random.Generator) -> FloatArray:
        """``n`` draws, shape ``(n, d)``, from the Generator ``rng``."""
        z = rng.standard_normal((int(n), self.dim))
        return self._mean + z @ self._tril.T

    def shifted(self, mean: Any) -> GaussianState:
        """The same covariance around a new mean ``mean`` (shape ``(d,)``)."""
        return GaussianState(mean, scale_tril=self._tril)

    def __repr__(self) -> str:
        return f"GaussianState(mean={self._mean.tolist()}, scale_tril={self._tril.tolist()})"


class ScipyState:
    """Any frozen ``scipy.stats`` law as a latent state.

    Univariate laws give ``dim == 1``; multivariate frozen laws (e.g.
    ``multivariate_normal``, ``multivariate_t``) their own dimension. For a
    discrete law the "density" is its pmf (Definition 4.2 allows either).
    """

    __slots__ = ("dist", "_dim", "_discrete")

    def __init__(self, dist: Any) -> None:
        if not (hasattr(dist, "rvs") and (hasattr(dist, "logpdf") or hasattr(dist, "logpmf"))):
            raise TypeError(
                f"`dist` must be a frozen scipy.stats law with rvs and logpdf/logpmf; got {type(dist).__name__}."
            )
        self.dist = dist
        self._discrete = not hasattr(dist, "logpdf")
        # Two draws: univariate laws give shape (2,), multivariate ones (2, d).
        draw = np.asarray(dist.rvs(size=2, random_state=np.random.default_rng(0)), dtype=np.float64)
        self._dim = 1 if draw.ndim <= 1 else int(draw.shape[-1])

    @property
    def dim(self) -> int:
        """The dimension ``d`` of a point."""
        return self._dim

    @property
    def discrete(self) -> bool:
        """True for a law with a pmf (``logpmf``) rather than a density."""
        return self._discrete

    def logpdf(self, x: Any) -> FloatArray:
        """Log-density (log-pmf for discrete laws) of each row of ``x``, shape ``(n,)``."""
        pts = as_points(x, self._dim)
        arg = pts[:, 0] if self._dim == 1 else pts
        f = self.dist.logpmf if self._discrete else self.dist.logpdf
        return np.asarray(f(arg), dtype=np.float64).reshape(pts.shape[0])

    def sample(self, n: int, rng: np.random.Generator) -> FloatArray:
        """``n`` draws, shape ``(n, d)``, from the Generator ``rng``."""
        draw = np.asarray(self.dist.rvs(size=int(n), random_state=rng), dtype=np.float64)
        return draw.reshape(int(n), self._dim)

    def mean(self) -> FloatArray:
        """The mean vector, shape ``(d,)``."""
        m = (
            self.dist.mean()
            if callable(getattr(self.dist, "mean", None))
            else getattr(self.dist, "mean", None)
        )
        if m is None:
            m = getattr(self.dist, "loc", None)
        if m is None:
            raise TypeError(f"cannot read the mean of {type(self.dist).__name__}.")
        return np.asarray(m, dtype=np.float64).reshape(self._dim)


class DiscreteState:
    """A finite pmf over points of R^d (``support`` rows, ``pmf`` weights)."""

    __slots__ = ("support", "pmf")

    def __init__(self, support: Any, pmf: Any) -> None:
        sup = check_finite_array(support, "support")
        if sup.ndim == 1:
            sup = sup.reshape(-1, 1)
        p = check_probability_vector(pmf, "pmf")
        if sup.ndim != 2 or sup.shape[0] != p.size:
            raise ValueError(
                f"`support` must have one row per pmf entry ({p.size}); got shape {sup.shape}."
            )
        self.support = sup
        self.pmf = p

    @property
    def dim(self) -> int:
        """The dimension ``d`` of a point."""
        return int(self.support.shape[1])

    def logpdf(self, x: Any) -> FloatArray:
        """log pmf at each row of ``x`` (``-inf`` off the support)."""
        pts = as_points(x, self.dim)
        hit = np.all(
            np.isclose(pts[:, None, :], self.support[None, :, :], rtol=1e-12, atol=1e-12), axis=2
        )
        with np.errstate(divide="ignore"):
            return np.log(hit.astype(np.float64) @ self.pmf)

    def sample(self, n: int, rng: np.random.Generator) -> FloatArray:
        """``n`` draws, shape ``(n, d)``, from the Generator ``rng``."""
        return self.support[rng.choice(self.pmf.size, size=int(n), p=self.pmf)]

    def mean(self) -> FloatArray:
        """The mean vector, shape ``(d,)``."""
        return self.pmf @ self.support


class LatentMixture:
    r"""The target :math:`A(X) = \sum_i p_i\, A(X; Z_i)` of Definition 4.1.

    Parameters
    ----------
    weights : array_like, shape (N,)
        ``p_i = Pr[Z = Z_i]``; positive, summing to 1.
    states : sequence of N conditional laws
        :class:`GaussianState`, :class:`ScipyState`, :class:`DiscreteState` or
        anything following :class:`ConditionalLaw`; all of one dimension.
    """

    __slots__ = ("weights", "states", "_log_w")

    def __init__(self, weights: Any, states: Sequence[Any]) -> None:
        w = check_probability_vector(weights, "weights")
        if np.any(w <= 0):
            raise ValueError(
                f"`weights` must be positive (every latent state must be possible); got {w.tolist()}."
            )
        states = tuple(states)
        if len(states) != w.size:
            raise ValueError(
                f"`states` must have one law per weight ({w.size}); got {len(states)}."
            )
        for i, s in enumerate(states):
            if not isinstance(s, ConditionalLaw):
                raise TypeError(
                    f"`states[{i}]` must offer dim, logpdf, sample and mean; got {type(s).__name__}."
                )
        dims = {s.dim for s in states}
        if len(dims) != 1:
            raise ValueError(f"`states` must share one dimension; got {sorted(dims)}.")
        self.weights = w
        self.weights.setflags(write=False)
        self.states = states
        self._log_w = np.log(w)

    @classmethod
    def gaussian(cls, weights: Any, means: Any, covs: Any) -> LatentMixture:
        """A mixture of Gaussian states.

        Parameters
        ----------
        weights : array_like, shape (N,)
        means : array_like, shape (N, d) or (N,)
        covs : array_like, shape (N, d, d) or one shared (d, d)

        Returns
        -------
        LatentMixture

        Raises
        ------
        ValueError
            Bad weights, non-finite values, covariances that are not positive definite.
        """
        mu = check_finite_array(means, "means")
        mu = mu.reshape(-1, 1) if mu.ndim == 1 else mu
        c = check_finite_array(covs, "covs")
        if c.ndim == 2:
            c = np.broadcast_to(c, (mu.shape[0], *c.shape))
        return cls(weights, [GaussianState(m, cv) for m, cv in zip(mu, c, strict=True)])

    @property
    def n_states(self) -> int:
        """The number of latent states ``N``."""
        return len(self.states)

    @property
    def dim(self) -> int:
        """The dimension ``d`` of a point."""
        return int(self.states[0].dim)

    @property
    def is_gaussian(self) -> bool:
        """True when every state is a :class:`GaussianState` (the fast δ-test applies)."""
        return all(isinstance(s, GaussianState) for s in self.states)

    def log_component_pdf(self, x: Any) -> FloatArray:
        """``log f(x | Z_i)`` for each row and state.

        Parameters
        ----------
        x : array_like, shape (n, d)

        Returns
        -------
        ndarray, shape (n, N)

        Raises
        ------
        ValueError
            Non-finite ``x`` or the wrong dimension.
        """
        pts = as_points(x, self.dim)
        return np.stack([s.logpdf(pts) for s in self.states], axis=1)

    def component_pdf(self, x: Any) -> FloatArray:
        """``f(x | Z_i)``, shape ``(n, N)`` (may underflow to 0: prefer :meth:`log_component_pdf`)."""
        return np.exp(self.log_component_pdf(x))

    def logpdf(self, x: Any) -> FloatArray:
        r"""Marginal log-density (log-sum-exp, stable).

        .. math:: \log f(x) = \log \sum_i p_i f(x \mid Z_i).

        Parameters
        ----------
        x : array_like, shape (n, d)

        Returns
        -------
        ndarray, shape (n,)

        Raises
        ------
        ValueError
            Non-finite ``x`` or the wrong dimension.
        """
        return logsumexp(self.log_component_pdf(x) + self._log_w, axis=1)

    def pdf(self, x: Any) -> FloatArray:
        """Marginal density ``f(x)``, shape ``(n,)``."""
        return np.exp(self.logpdf(x))

    def sample(self, n: int, rng: np.random.Generator) -> tuple[FloatArray, npt.NDArray[np.int64]]:
        """Draws and their latent labels.

        Parameters
        ----------
        n : int
            Number of draws.
        rng : seed or Generator

        Returns
        -------
        x : ndarray, shape (n, d)
        labels : ndarray of int64, shape (n,)
            ``labels[k] = i`` means ``Z = Z_i`` for draw ``k``.
        """
        rng = np.random.default_rng(rng)
        labels = rng.choice(self.n_states, size=int(n), p=self.weights)
        out = np.empty((int(n), self.dim))
        for i, s in enumerate(self.states):
            idx = np.flatnonzero(labels == i)
            if idx.size:
                out[idx] = s.sample(idx.size, rng)
        return out, labels.astype(np.int64)

    def component_means(self) -> FloatArray:
        """Conditional means ``μ_i = E[A(X; Z_i)]``, shape ``(N, d)``."""
        return np.stack(
            [np.asarray(s.mean(), dtype=np.float64).reshape(self.dim) for s in self.states]
        )

    def mean(self) -> FloatArray:
        """``E[A(X)] = sum_i p_i μ_i`` -- the quadratic-loss optimum (Lemma B.1)."""
        return self.weights @ self.component_means()
