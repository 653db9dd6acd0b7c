"""Exact ground truth of the coin-flip problem (paper Section 7.1, Theorem 5.1).

Given the chosen coins X (a set of N labels), the number of heads Y is Poisson-binomial
with the chosen coins' head probabilities. Everything here is exact and vectorised over
a batch of coin sets: the pmf P(Y = k | X), the Bayes-optimal estimate under squared loss
E[Y | X] (the theory's A*(X), Definition 3.1), its expected squared error Var(Y | X), and the
conditional probability P(Y = estimate | X) used by the δ-hallucination test (Definition 4.2).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from deltahall._validation import check_int

FloatArray = npt.NDArray[np.float64]


def head_probabilities(n: int, *, authors_scoring: bool = False) -> FloatArray:
    """Head probabilities of the 2N coins.

    Parameters
    ----------
    n : int
        N; there are 2N coins.
    authors_scoring : bool
        If True, return i/(2N) (the probabilities the authors' code *scores* with, so coin 0
        never lands heads) instead of the (i+1)/(2N) their data are generated with.

    Returns
    -------
    ndarray, shape (2N,)
        ``(i + 1) / (2N)`` for i = 0..2N-1 (or ``i / (2N)``).

    Examples
    --------
    >>> head_probabilities(2).tolist()
    [0.25, 0.5, 0.75, 1.0]
    """
    n = check_int(n, "n", low=1)
    i = np.arange(2 * n, dtype=np.float64)
    return i / (2 * n) if authors_scoring else (i + 1) / (2 * n)


def poisson_binomial_pmf(probs: npt.ArrayLike) -> FloatArray:
    """P(Y = k | X) for k = 0..N, for a batch of coin sets.

    Parameters
    ----------
    probs : array_like, shape (B, N)
        Head probabilities of the N chosen coins of each of B coin sets.

    Returns
    -------
    ndarray, shape (B, N + 1)
        Row b is the pmf of the number of heads of coin set b (sums to 1).

    Raises
    ------
    ValueError
        If ``probs`` is not 2-d or holds values outside [0, 1].

    Examples
    --------
    >>> poisson_binomial_pmf([[0.5, 0.5]]).round(3).tolist()
    [[0.25, 0.5, 0.25]]
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"`probs` must be 2-dimensional (batch, coins); got shape {p.shape}.")
    if not np.all((p >= 0) & (p <= 1)):
        raise ValueError("`probs` must lie in [0, 1]; got values outside it.")
    b, n = p.shape
    pmf = np.zeros((b, n + 1))
    pmf[:, 0] = 1.0
    for j in range(n):
        pj = p[:, j : j + 1]
        new = pmf * (1.0 - pj)
        new[:, 1:] += pmf[:, :-1] * pj
        pmf = new
    return pmf


def bayes_estimate(probs: npt.ArrayLike) -> FloatArray:
    """The Bayes-optimal estimate under squared loss, E[Y | X] = sum of the chosen probabilities.

    Returns
    -------
    ndarray, shape (B,)
    """
    return np.asarray(probs, dtype=np.float64).sum(axis=1)


def bayes_variance(probs: npt.ArrayLike) -> FloatArray:
    """Var(Y | X) = sum p(1 - p): the expected squared error of E[Y | X] at each input.

    Returns
    -------
    ndarray, shape (B,)
    """
    p = np.asarray(probs, dtype=np.float64)
    return (p * (1.0 - p)).sum(axis=1)


def bayes_mse_uniform(n: int) -> float:
    """The irreducible MSE over uniformly chosen coin sets: N * mean_i p_i (1 - p_i).

    Every coin is in a uniformly chosen N-subset of the 2N coins with probability 1/2, so
    E[Var(Y | X)] = (1/2) * sum_i p_i (1 - p_i).

    Examples
    --------
    >>> bayes_mse_uniform(2), round(bayes_mse_uniform(5), 6)
    (0.3125, 0.825)
    """
    p = head_probabilities(n)
    return float(0.5 * (p * (1 - p)).sum())


def pmf_at(pmf: npt.ArrayLike, k: npt.ArrayLike) -> FloatArray:
    """Guarded lookup P(Y = k_b | X_b) = ``pmf[b, k_b]``.

    Unlike ``dp[Y]`` in the authors' code, a count outside 0..N or a non-integer value has
    probability 0 (no IndexError above N, no wrap-around below 0).

    Parameters
    ----------
    pmf : array_like, shape (B, N + 1)
    k : array_like, shape (B,)
        Candidate counts (any real numbers; NaN gives 0).

    Returns
    -------
    ndarray, shape (B,)

    Examples
    --------
    >>> pmf_at([[0.25, 0.5, 0.25]] * 4, [1, 3, -1, 0.5]).tolist()
    [0.5, 0.0, 0.0, 0.0]
    """
    pmf = np.asarray(pmf, dtype=np.float64)
    kk = np.asarray(k, dtype=np.float64)
    if pmf.ndim != 2 or kk.shape != (pmf.shape[0],):
        raise ValueError(f"`pmf` must be (B, N+1) and `k` (B,); got {pmf.shape} and {kk.shape}.")
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(kk) & (kk == np.floor(kk)) & (kk >= 0) & (kk <= pmf.shape[1] - 1)
    idx = np.where(ok, kk, 0).astype(np.int64)
    return np.where(ok, pmf[np.arange(pmf.shape[0]), idx], 0.0)


def hallucination_rate(cond_prob: npt.ArrayLike, delta: float) -> float:
    """Fraction of inputs whose estimate δ-hallucinates: P(Y = estimate | X) <= δ (Definition 4.2)."""
    cp = np.asarray(cond_prob, dtype=np.float64)
    return float(np.mean(cp <= delta)) if cp.size else float("nan")
