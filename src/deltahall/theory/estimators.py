"""Optimal estimates and the δ-hallucination test (Lemma B.1, Appendix C, Definition 4.2).

* :func:`quadratic_optimal_estimate` -- the minimiser of the expected quadratic
  loss (Definition 3.1) is the mean ``E[A(X)]`` (Lemma B.1).
* :func:`cross_entropy_optimal_estimate` -- the minimiser of the expected
  cross-entropy (Definition C.1) is the mean of the target distributions.
* :class:`DeltaTest` -- the vectorised test of Definition 4.2: an estimate ``a``
  δ-hallucinates iff ``f(a | Z_i) <= δ`` for every state, i.e. iff the score
  ``max_i f(a | Z_i)`` (the paper's "key insight") is at most δ. For Gaussian
  states the test is two matrix products against precomputed Cholesky
  factors and Mahalanobis thresholds.

Examples
--------
>>> mix = LatentMixture([0.5, 0.5], [GaussianState([-3.0], [[1.0]]), GaussianState([3.0], [[1.0]])])
>>> test = DeltaTest(mix, delta=0.05)
>>> test.hallucinates([[0.0], [3.0]]).tolist()
[True, False]
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits

from deltahall._validation import (
    BadInput,
    check_delta,
    check_finite_array,
    check_int,
    check_probability_vector,
)
from deltahall.theory.mixtures import GaussianState, LatentMixture, as_points

__all__ = [
    "DeltaTest",
    "cross_entropy_optimal_estimate",
    "delta_hallucinates",
    "expected_cross_entropy",
    "max_conditional_log_density",
    "quadratic_optimal_estimate",
    "quadratic_risk",
]

FloatArray = npt.NDArray[np.float64]


def quadratic_optimal_estimate(mixture: LatentMixture) -> FloatArray:
    r"""The minimiser of the expected quadratic loss (Definition 3.1), by Lemma B.1.

    .. math:: A^*(X) = \arg\min_a E\|a - A(X)\|_2^2 = E[A(X)] = \sum_i p_i μ_i .

    Parameters
    ----------
    mixture : LatentMixture
        The target ``A(X)``; every state must offer ``mean()``.

    Returns
    -------
    ndarray, shape (d,)

    Raises
    ------
    TypeError
        A state whose mean cannot be read.

    Examples
    --------
    >>> mix = LatentMixture([0.25, 0.75], [GaussianState([-3.0], [[1.0]]), GaussianState([1.0], [[1.0]])])
    >>> quadratic_optimal_estimate(mix).tolist()
    [0.0]
    """
    return mixture.mean()


def quadratic_risk(estimate: Any, samples: Any) -> FloatArray:
    r"""Monte-Carlo expected quadratic loss (Definition 3.1) of each row of ``estimate``.

    .. math:: \hat\ell(a) = \frac1m \sum_k \|a - A_k\|^2 = \|a - \bar A\|^2 + \frac1m \sum_k \|A_k - \bar A\|^2 .

    Parameters
    ----------
    estimate : array_like, shape (n, d) or (d,)
        Candidate estimates.
    samples : array_like, shape (m, d) or (m,)
        Draws of ``A(X)``.

    Returns
    -------
    ndarray, shape (n,)
        The empirical risk of each estimate (exact for the sample).

    Raises
    ------
    ValueError
        Non-finite values or mismatched dimensions.

    Examples
    --------
    >>> quadratic_risk([[0.0], [1.0]], [[-1.0], [1.0]]).tolist()
    [1.0, 2.0]
    """
    s = check_finite_array(samples, "samples")
    s = s.reshape(-1, 1) if s.ndim == 1 else s
    a = as_points(estimate, s.shape[1], "estimate")
    centre = s.mean(axis=0)
    spread = float(np.mean(np.sum((s - centre) ** 2, axis=1)))
    return np.sum((a - centre) ** 2, axis=1) + spread


def _check_distribution_rows(x: Any, name: str, *, atol: float = 1e-8) -> FloatArray:
    """A 2-d array whose rows are probability distributions (non-negative, summing to 1)."""
    q = check_finite_array(x, name, ndim=2)
    if q.shape[0] == 0 or q.shape[1] == 0:
        raise BadInput(f"`{name}` must have at least one row and one class; got shape {q.shape}.")
    neg = np.flatnonzero((q < 0).any(axis=1))
    if neg.size:
        raise BadInput(
            f"`{name}` rows must be probability distributions; row {int(neg[0])} has a negative "
            f"entry ({float(q[neg[0]].min()):.6g})."
        )
    sums = q.sum(axis=1)
    off = np.flatnonzero(np.abs(sums - 1.0) > atol)
    if off.size:
        raise BadInput(
            f"`{name}` rows must each sum to 1; row {int(off[0])} sums to {float(sums[off[0]]):.10g} "
            f"({off.size} of {q.shape[0]} rows off)."
        )
    return q


def cross_entropy_optimal_estimate(targets: Any, weights: Any = None) -> FloatArray:
    r"""The minimiser of the expected cross-entropy (Definition C.1), by Gibbs' inequality (Appendix C).

    .. math:: p_X(t) = E_a\, q_X^a(t), \quad t \in [C].

    Parameters
    ----------
    targets : array_like, shape (m, C)
        Target distributions ``q_X^a`` (rows).
    weights : array_like, shape (m,), optional
        Their probabilities (uniform by default).

    Returns
    -------
    ndarray, shape (C,)

    Raises
    ------
    ValueError
        Non-finite targets, a target row that is not a probability distribution (a negative
        entry, or a sum other than 1 within ``1e-8``; the first such row is named), weights that
        are not a probability vector, mismatched lengths.

    Examples
    --------
    >>> cross_entropy_optimal_estimate([[1.0, 0.0], [0.0, 1.0]], [0.25, 0.75]).tolist()
    [0.25, 0.75]
    """
    q = _check_distribution_rows(targets, "targets")
    w = (
        np.full(q.shape[0], 1.0 / q.shape[0])
        if weights is None
        else check_probability_vector(weights)
    )
    if w.size != q.shape[0]:
        raise ValueError(
            f"`weights` must have one entry per target row ({q.shape[0]}); got {w.size}."
        )
    return w @ q


def expected_cross_entropy(p: Any, targets: Any, *, weights: Any = None) -> float:
    r"""The expected cross-entropy of Definition C.1 for a predicted distribution ``p``.

    .. math:: E_a\, \mathcal L(q_X^a, p) = -\sum_t E_a[q_X^a(t)] \log p(t)

    (classes that no target uses contribute 0, so ``p(t) = 0`` there is allowed).

    Parameters
    ----------
    p : array_like, shape (C,)
        Predicted distribution.
    targets : array_like, shape (m, C)
        Target distributions.
    weights : array_like, shape (m,), optional
        Their probabilities (uniform by default).

    Returns
    -------
    float
        ``inf`` if ``p`` puts 0 on a class some target uses.

    Raises
    ------
    ValueError
        Non-finite inputs, target rows that are not probability distributions, or weights that
        are not a probability vector.

    Examples
    --------
    >>> round(expected_cross_entropy([0.5, 0.5], [[1.0, 0.0], [0.0, 1.0]]), 6)
    0.693147
    """
    q = _check_distribution_rows(targets, "targets")
    pv = check_finite_array(p, "p", ndim=1)
    w = (
        np.full(q.shape[0], 1.0 / q.shape[0])
        if weights is None
        else check_probability_vector(weights)
    )
    with np.errstate(divide="ignore"):
        logp = np.log(pv)
    return float(-(w @ q) @ np.where(q.sum(0) > 0, logp, 0.0))


class DeltaTest:
    r"""Vectorised δ-hallucination test of Definition 4.2.

    .. math:: a \text{ δ-hallucinates} \iff \max_{i\in[N]} f(a\mid Z_i) \le \delta .

    Parameters
    ----------
    mixture : LatentMixture
    delta : float in (0, 1]
    chunk_size : int
        Rows per block (keeps the work in cache).
    n_threads : int
        Worker threads over blocks (numpy releases the GIL in the kernels).

    Raises
    ------
    ValueError
        δ outside (0, 1]; ``chunk_size`` or ``n_threads`` below 1.

    Notes
    -----
    For Gaussian states, with ``W_i = L_i^{-1}`` stacked into ``W (N d, d)``
    and ``b = (W_i μ_i)_i``, the squared Mahalanobis distances are the
    block sums of ``(W a - b)²``, and
    ``f(a|Z_i) <= δ  ⇔  m_i(a) >= t_i := 2 (log peak_i - log δ)``.
    Everything is float64; ``log δ`` is used, so δ = 1e-300 is fine.
    """

    def __init__(
        self, mixture: LatentMixture, delta: float, *, chunk_size: int = 8192, n_threads: int = 2
    ) -> None:
        self.mixture = mixture
        self.delta = check_delta(delta)
        self.log_delta = math.log(self.delta)
        self.chunk_size = check_int(chunk_size, "chunk_size", low=1)
        self.n_threads = check_int(n_threads, "n_threads", low=1)
        self._fast = mixture.is_gaussian
        if self._fast:
            states: tuple[GaussianState, ...] = mixture.states  # type: ignore[assignment]
            self._W = np.concatenate([s.precision_factor for s in states], axis=0)  # (N d, d)
            b = np.concatenate([s.precision_factor @ s.loc for s in states])[:, None]
            self._Wa = np.hstack([self._W, -b])  # affine shift folded into one GEMM
            self._log_peak = np.array([s.log_peak for s in states])[:, None]
            self._thr = 2.0 * (self._log_peak - self.log_delta)  # (N, 1)

    def _maha_T(self, x: FloatArray) -> FloatArray:
        xa = np.empty((x.shape[0], x.shape[1] + 1))
        xa[:, :-1] = x
        xa[:, -1] = 1.0
        y = self._Wa @ xa.T  # rows: W_i (a - μ_i)
        np.multiply(y, y, out=y)
        n_states = self._thr.shape[0]
        return np.add.reduce(y.reshape(n_states, -1, y.shape[1]), axis=1)  # (N, n)

    def _run(self, x: Any, kernel: Any, dtype: Any) -> npt.NDArray[Any]:
        pts = as_points(x, self.mixture.dim)
        n = pts.shape[0]
        out = np.empty(n, dtype=dtype)
        bounds = [(i, min(i + self.chunk_size, n)) for i in range(0, n, self.chunk_size)]

        def work(lo_hi: tuple[int, int]) -> None:
            lo, hi = lo_hi
            out[lo:hi] = kernel(pts[lo:hi])

        # One BLAS thread per worker: OpenBLAS's own threads thrash on tiny GEMMs.
        with threadpool_limits(limits=1, user_api="blas"):
            if self.n_threads > 1 and len(bounds) > 1:
                with ThreadPoolExecutor(self.n_threads) as ex:
                    list(ex.map(work, bounds))
            else:
                for b in bounds:
                    work(b)
        return out

    def _halluc_kernel(self, x: FloatArray) -> npt.NDArray[np.bool_]:
        if not self._fast:
            return np.all(self.mixture.log_component_pdf(x) <= self.log_delta, axis=1)
        m = self._maha_T(x)
        m -= self._thr
        return np.min(m, axis=0) >= 0.0

    def _score_kernel(self, x: FloatArray) -> FloatArray:
        if not self._fast:
            return np.max(self.mixture.log_component_pdf(x), axis=1)
        m = self._maha_T(x)
        return np.max(self._log_peak - 0.5 * m, axis=0)

    def hallucinates(self, x: Any) -> npt.NDArray[np.bool_]:
        """``True`` where the estimate δ-hallucinates (Definition 4.2).

        Parameters
        ----------
        x : array_like, shape (n, d)
            Estimates.

        Returns
        -------
        ndarray of bool, shape (n,)

        Raises
        ------
        ValueError
            Non-finite entries or the wrong dimension.
        """
        return self._run(x, self._halluc_kernel, bool)

    def max_log_density(self, x: Any) -> FloatArray:
        """The score ``log max_i f(a | Z_i)`` of each row (the paper's key insight).

        Parameters
        ----------
        x : array_like, shape (n, d)
            Estimates.

        Returns
        -------
        ndarray, shape (n,)

        Raises
        ------
        ValueError
            Non-finite entries or the wrong dimension.
        """
        return self._run(x, self._score_kernel, np.float64)


def delta_hallucinates(mixture: LatentMixture, x: Any, *, delta: float) -> npt.NDArray[np.bool_]:
    r"""Definition 4.2 for each row of ``x`` (single-threaded :meth:`DeltaTest.hallucinates`).

    .. math:: f(a \mid Z_i) \le δ \quad \text{for every } i \in [N].

    Parameters
    ----------
    mixture : LatentMixture
        The target.
    x : array_like, shape (n, d)
        Estimates.
    delta : float in (0, 1]
        Tolerance δ.

    Returns
    -------
    ndarray of bool, shape (n,)

    Raises
    ------
    ValueError
        δ outside (0, 1], non-finite ``x`` or the wrong dimension.

    Examples
    --------
    >>> mix = LatentMixture([0.5, 0.5], [GaussianState([-3.0], [[1.0]]), GaussianState([3.0], [[1.0]])])
    >>> delta_hallucinates(mix, [[0.0], [3.0]], delta=0.05).tolist()
    [True, False]
    """
    return DeltaTest(mixture, delta, n_threads=1).hallucinates(x)


def max_conditional_log_density(mixture: LatentMixture, x: Any) -> FloatArray:
    """The score ``log max_i f(x | Z_i)`` for each row of ``x`` (any kind of state).

    Parameters
    ----------
    mixture : LatentMixture
        The target.
    x : array_like, shape (n, d)
        Points.

    Returns
    -------
    ndarray, shape (n,)

    Raises
    ------
    ValueError
        Non-finite ``x`` or the wrong dimension.

    Examples
    --------
    >>> mix = LatentMixture([1.0], [GaussianState([0.0], [[1.0]])])
    >>> round(float(max_conditional_log_density(mix, [0.0])[0]), 6)
    -0.918939
    """
    return np.max(mixture.log_component_pdf(x), axis=1)
