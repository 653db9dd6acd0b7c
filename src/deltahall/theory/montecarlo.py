r"""Monte Carlo for Theorem 6.1: laws of the conditional means and an estimate of ``P_H^δ``.

The setting (Definition 6.1, Assumption 6.1): state ``i`` has a Gaussian within-state law
``N(μ_i, Σ_i)`` around a random conditional mean ``μ_i``; the ``μ_i`` are independent with
common mean ``μ_0``. :class:`StateMeanLaw` gives five families for ``μ_i - μ_0`` with their
moments in closed form (the ``σ_i^d`` and ``K_i^μ`` of :func:`deltahall.theory.bound.theorem_6_1_bound`);
:func:`estimate_hallucination_probability` draws the means and counts how often the optimum
``A* = Σ p_i μ_i`` lies outside every ``U_i^δ``, with the Wilson interval of
:func:`deltahall.stats.proportion_ci`.

Examples
--------
>>> from deltahall.theory.mixtures import GaussianState
>>> within = [GaussianState.isotropic([0.0], 0.01)] * 2
>>> means = IndependentMeans((0.0,), (StateMeanLaw("cube", 1.0, 1),) * 2)
>>> est = estimate_hallucination_probability(
...     [0.5, 0.5], within, delta=0.5, means=means, n_samples=10_000, rng=0
... )
>>> est.ci_low <= 0.5 <= est.ci_high
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from deltahall._validation import (
    check_choice,
    check_delta,
    check_finite_array,
    check_int,
    check_probability_vector,
    check_real,
)
from deltahall.stats import proportion_ci
from deltahall.theory.mixtures import GaussianState
from deltahall.theory.regions import region_threshold_sq

__all__ = [
    "LAW_KINDS",
    "MAX_MC_FLOPS",
    "MAX_MC_SAMPLES",
    "MAX_MC_STATE_DRAWS",
    "IndependentMeans",
    "MCEstimate",
    "SampledMeans",
    "StateMeanLaw",
    "check_mc_work",
    "estimate_hallucination_probability",
]

FloatArray = npt.NDArray[np.float64]
LawKind = Literal["gaussian", "sphere", "cube", "student_t", "spike"]
LAW_KINDS: tuple[str, ...] = ("gaussian", "sphere", "cube", "student_t", "spike")


# ----------------------------------------------------------------------------- laws of the means


@dataclass(frozen=True)
class StateMeanLaw:
    """Law of ``μ_i - μ_0`` for one state, with closed-form moments.

    kinds: ``gaussian`` N(0, τ² I); ``sphere`` uniform on the sphere of radius τ;
    ``cube`` uniform on {±τ}^d; ``student_t`` multivariate t with ``param = ν > 4``
    and scale τ; ``spike`` τ·(uniform direction) with probability ``param = q``, else 0.
    """

    kind: str
    scale: float
    dim: int
    param: float = 0.0

    def __post_init__(self) -> None:
        check_choice(self.kind, "kind", LAW_KINDS)
        check_real(self.scale, "scale", low=0.0, low_open=True)
        check_int(self.dim, "dim", low=1)
        if self.kind == "student_t":
            check_real(self.param, "param (nu)", low=4.0, low_open=True)
        if self.kind == "spike":
            check_real(self.param, "param (q)", low=0.0, high=1.0, low_open=True)

    @property
    def sigma(self) -> float:
        """``E||μ_i - μ_0||²`` (σ_i^d)."""
        t2, d, v = self.scale**2, self.dim, self.param
        return {
            "gaussian": d * t2,
            "sphere": t2,
            "cube": d * t2,
            "student_t": d * t2 * v / (v - 2) if self.kind == "student_t" else 0.0,
            "spike": v * t2,
        }[self.kind]

    @property
    def fourth_moment(self) -> float:
        """``E||μ_i - μ_0||⁴``."""
        t4, d, v = self.scale**4, self.dim, self.param
        return {
            "gaussian": d * (d + 2) * t4,
            "sphere": t4,
            "cube": d * d * t4,
            "student_t": d * (d + 2) * t4 * v * v / ((v - 2) * (v - 4))
            if self.kind == "student_t"
            else 0.0,
            "spike": v * t4,
        }[self.kind]

    @property
    def kurtosis_ratio(self) -> float:
        """``K_i^μ = (E||·||²)² / E||·||⁴``."""
        return self.sigma**2 / self.fourth_moment

    def sample(self, n: int, rng: np.random.Generator) -> FloatArray:
        """Draws of ``μ_i - μ_0``.

        Parameters
        ----------
        n : int
            Number of draws.
        rng : numpy Generator

        Returns
        -------
        ndarray, shape (n, d)
        """
        d, t = self.dim, self.scale
        if self.kind == "gaussian":
            return t * rng.standard_normal((n, d))
        if self.kind == "cube":
            return t * rng.choice([-1.0, 1.0], size=(n, d))
        if self.kind == "student_t":
            w = rng.chisquare(self.param, size=(n, 1)) / self.param
            return t * rng.standard_normal((n, d)) / np.sqrt(w)
        u = rng.standard_normal((n, d))
        u *= t / np.linalg.norm(u, axis=1, keepdims=True)
        if self.kind == "spike":
            u *= rng.random((n, 1)) < self.param
        return u


@dataclass(frozen=True)
class IndependentMeans:
    """Independent ``μ_i = μ_0 + offset_i`` (Assumption 6.1 holds by construction)."""

    mu0: tuple[float, ...]
    laws: tuple[StateMeanLaw, ...]

    def __post_init__(self) -> None:
        if any(law.dim != len(self.mu0) for law in self.laws):
            raise ValueError(f"every law must have dim = len(mu0) = {len(self.mu0)}.")

    @property
    def sigmas(self) -> FloatArray:
        """``σ_i^d = E||μ_i - μ_0||²`` per state, shape (N,)."""
        return np.array([law.sigma for law in self.laws])

    @property
    def kurtosis(self) -> FloatArray:
        """``K_i^μ`` per state, shape (N,)."""
        return np.array([law.kurtosis_ratio for law in self.laws])

    def sample(self, n: int, rng: np.random.Generator) -> FloatArray:
        """``n`` draws of ``(μ_1, ..., μ_N)``, shape ``(n, N, d)``, from the Generator ``rng``."""
        out = np.stack([law.sample(n, rng) for law in self.laws], axis=1)
        return out + np.asarray(self.mu0)


@dataclass(frozen=True)
class SampledMeans:
    """Any sampler of the means, ``sampler(n, rng) -> (n, N, d)``; moments by sampling.

    Assumption 6.1 is the user's responsibility here.
    """

    sampler: Callable[[int, np.random.Generator], Any]
    mu0: tuple[float, ...]

    def sample(self, n: int, rng: np.random.Generator) -> FloatArray:
        """``sampler(n, rng)``, checked to be a finite ``(n, N, d)`` array.

        Raises
        ------
        ValueError
            A non-finite or non-3-d sampler output.
        """
        return check_finite_array(self.sampler(n, rng), "sampler output", ndim=3)

    def moments(self, n: int, rng: np.random.Generator) -> tuple[FloatArray, FloatArray]:
        """Monte-Carlo ``σ_i^d`` and ``K_i^μ``.

        Parameters
        ----------
        n : int
            Draws.
        rng : numpy Generator

        Returns
        -------
        sigmas : ndarray, shape (N,)
        kurtosis_ratios : ndarray, shape (N,)
        """
        sq = np.sum((self.sample(n, rng) - np.asarray(self.mu0)) ** 2, axis=2)
        return sq.mean(axis=0), sq.mean(axis=0) ** 2 / (sq**2).mean(axis=0)


# ----------------------------------------------------------------------------- Monte-Carlo P_H


@dataclass(frozen=True)
class MCEstimate:
    """Monte-Carlo estimate of ``P_H^δ`` with a Wilson confidence interval.

    Attributes
    ----------
    p_hat : float
        ``n_hallucinated / n_samples``.
    ci_low, ci_high : float
        Wilson interval at ``confidence``.
    n_samples : int
        Draws of the conditional means.
    n_hallucinated : int
        Draws where ``A*`` lies outside every ``U_i^δ``.
    confidence : float
        Level of the interval.
    """

    p_hat: float
    ci_low: float
    ci_high: float
    n_samples: int
    n_hallucinated: int
    confidence: float


#: Largest number of Monte-Carlo draws one estimate accepts (about 6 s at N = 2, d = 1 and
#: 2 min at N = 5, d = 8 on one core).
MAX_MC_SAMPLES = 100_000_000
#: Floats per chunk of draws (``chunk * N * d``): 2**22 = 32 MiB per array.
_CHUNK_FLOATS = 2**22
#: Largest ``n_samples * N`` (state means drawn; ~15 s at the measured ~7e6 per second).
MAX_MC_STATE_DRAWS = 100_000_000
#: Largest ``n_samples * N * d**2`` (multiply-adds of the Mahalanobis distances; ~10-20 s).
MAX_MC_FLOPS = 10_000_000_000


def check_mc_work(
    n_samples: int, n_states: int, dim: int, *, samples_name: str = "n_samples"
) -> None:
    """Refuse a Monte-Carlo estimate that cannot finish in well under a minute, before drawing.

    Parameters
    ----------
    n_samples, n_states, dim : int
        Draws, states ``N`` and dimension ``d``.
    samples_name : str
        Parameter name for the message (``"mc_samples"`` in the CLI).

    Raises
    ------
    ValueError
        ``n_samples * N > MAX_MC_STATE_DRAWS`` or ``n_samples * N * d² > MAX_MC_FLOPS``.

    Examples
    --------
    >>> check_mc_work(200_000, 2, 1)
    """
    if n_samples * n_states > MAX_MC_STATE_DRAWS:
        raise ValueError(
            f"`{samples_name}` * N must be <= {MAX_MC_STATE_DRAWS:.0e} state means drawn; got "
            f"{n_samples} * {n_states} = {n_samples * n_states:.3g}."
        )
    if n_samples * n_states * dim * dim > MAX_MC_FLOPS:
        raise ValueError(
            f"`{samples_name}` * N * d**2 must be <= {MAX_MC_FLOPS:.0e}; got {n_samples} * {n_states} * {dim}**2 = "
            f"{n_samples * n_states * dim * dim:.3g}."
        )


def estimate_hallucination_probability(
    weights: Any,
    within: Sequence[GaussianState],
    *,
    delta: float,
    means: Any,
    n_samples: int,
    rng: Any,
    confidence: float = 0.95,
    chunk_size: int = 65536,
) -> MCEstimate:
    r"""Estimate the probability that the optimal estimate δ-hallucinates (Theorem 6.1's ``P_H^δ``).

    .. math:: P_H^δ = \Pr\big[A^* \notin U_i^δ \ \text{for all } i\big],\qquad A^* = \sum_i p_i μ_i,

    over draws of the conditional means ``μ_i``.

    Parameters
    ----------
    weights : array_like, shape (N,)
        ``p_i``.
    within : sequence of N GaussianState
        Within-state laws; only their covariances are used (they are centred at the drawn ``μ_i``).
    delta : float in (0, 1]
        Tolerance δ.
    means : IndependentMeans, SampledMeans or anything with ``sample(n, rng) -> (n, N, d)``
        Law of the conditional means.
    n_samples : int, 1 <= n <= MAX_MC_SAMPLES
        Draws; also ``n N <= MAX_MC_STATE_DRAWS`` and ``n N d² <= MAX_MC_FLOPS``
        (:func:`check_mc_work`).
    rng : seed or numpy Generator
        Randomness (normalised with ``np.random.default_rng``).
    confidence : float in (0, 1)
        Level of the Wilson interval.
    chunk_size : int >= 1
        Largest number of draws held at once (reduced so a chunk holds at most 2**22 floats).

    Returns
    -------
    MCEstimate

    Raises
    ------
    ValueError
        Bad weights, δ, confidence; ``n_samples`` above :data:`MAX_MC_SAMPLES`; one law per
        weight missing.

    Examples
    --------
    >>> within = [GaussianState.isotropic([0.0], 0.01)] * 2
    >>> means = IndependentMeans((0.0,), (StateMeanLaw("cube", 1.0, 1),) * 2)
    >>> est = estimate_hallucination_probability(
    ...     [0.5, 0.5], within, delta=0.5, means=means, n_samples=10_000, rng=0
    ... )
    >>> est.ci_low <= 0.5 <= est.ci_high
    True
    """
    w = check_probability_vector(weights, "weights")
    check_delta(delta)
    n = check_int(n_samples, "n_samples", low=1, high=MAX_MC_SAMPLES)
    conf = check_real(confidence, "confidence", low=0.0, high=1.0, low_open=True, high_open=True)
    chunk = check_int(chunk_size, "chunk_size", low=1)
    if len(within) != w.size:
        raise ValueError(f"`within` must have one law per weight ({w.size}); got {len(within)}.")
    check_mc_work(n, w.size, within[0].dim)
    gen = np.random.default_rng(rng)
    W = np.stack([g.precision_factor for g in within])  # (N, d, d)
    chunk = max(1, min(chunk, _CHUNK_FLOATS // (w.size * W.shape[1])))
    t = np.array([region_threshold_sq(g, delta) for g in within])
    hits = 0
    done = 0
    while done < n:
        m = min(chunk, n - done)
        mus = np.asarray(means.sample(m, gen), dtype=np.float64)
        a = np.einsum("i,mid->md", w, mus)
        z = np.einsum("ijk,mik->mij", W, a[:, None, :] - mus)
        maha = np.einsum("mij,mij->mi", z, z)
        hits += int(np.count_nonzero(np.all(maha >= t, axis=1)))
        done += m
    lo, hi = proportion_ci(hits, n, confidence=conf)
    return MCEstimate(hits / n, lo, hi, n, hits, conf)
