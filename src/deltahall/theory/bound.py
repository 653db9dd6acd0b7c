r"""Theorem 6.1: the hallucination-probability lower bound, a Monte-Carlo P_H^δ, and a check.

The setting (Definition 6.1, Assumption 6.1): state ``i`` has a within-state
law around a random conditional mean ``μ_i``; the ``μ_i`` are independent
with common mean ``μ_0``. The optimal estimate is ``A* = Σ p_i μ_i``
(Lemma B.1) and it δ-hallucinates iff ``A* ∉ U_i^δ`` for all ``i``. Here the
within-state laws are Gaussian location families ``N(μ_i, Σ_i)``, so ``U_i^δ``
and its covering radius ``r_i`` (Definition 6.3) are exact.

The bound exactly as stated:

.. math::

    d = \Big(\sum_j p_j^2 σ_j^d\Big)^{1/2},\quad
    θ_i(α) = \frac{(α d + r)^2}{σ_i^d},\quad
    K_i^μ = \frac{(E\|μ_i-μ_0\|^2)^2}{E\|μ_i-μ_0\|^4},\quad
    P_i = \max_{α>1,\ θ_i(α)\le 1} (1 - α^{-2})(1 - θ_i(α))^2,

    P_H^δ > \prod_i P_i K_i^μ .

``σ_i^d`` is read as ``E||μ_i - μ_0||²`` (the scalar variance in 1-d) and
``r = max_i r_i``. The proof multiplies probabilities of events that all
depend on the common ``A*`` (no independence justifies it), so
:func:`theorem_6_1_bound` also reports ``union_bound``, a bound that follows
from the same lemmas by a union bound with one common α:

.. math:: P_H^δ \ge \sup_α \Big[1 - α^{-2} - \sum_i \big(1 - (1-θ_i(α))^2 K_i^μ\big)\Big]^+ .

The stated right-hand side never exceeds about 8.0e-4 (:func:`supremum_of_stated_bound`:
N = 2, equal weights and variances), so the bound can only ever certify ``P_H^δ`` of order 1e-3.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize_scalar

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
from deltahall.theory.regions import covering_radius, region_threshold_sq

__all__ = [
    "MAX_CHECK_DRAWS",
    "MAX_CHECK_INSTANCES",
    "MAX_MC_FLOPS",
    "MAX_MC_SAMPLES",
    "MAX_MC_STATE_DRAWS",
    "BoundResult",
    "CheckResult",
    "CheckRow",
    "IndependentMeans",
    "MCEstimate",
    "SampledMeans",
    "StateBound",
    "StateMeanLaw",
    "check_mc_work",
    "check_theorem_6_1",
    "estimate_hallucination_probability",
    "supremum_of_stated_bound",
    "theorem_6_1_bound",
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


# ----------------------------------------------------------------------------- the stated bound


def _json_float(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


@dataclass(frozen=True)
class StateBound:
    """One state's factor of Theorem 6.1.

    Attributes
    ----------
    index : int
        ``i`` (0-based).
    weight : float
        ``p_i``.
    mean_variance : float
        ``σ_i^d = E||μ_i - μ_0||²``.
    kurtosis_ratio : float
        ``K_i^μ``.
    alpha : float or None
        The best ``α_i > 1`` (None: no ``α > 1`` with ``θ_i(α) <= 1``).
    theta : float or None
        ``θ_i(α_i)``.
    factor : float
        ``P_i = (1 - α_i^{-2}) (1 - θ_i(α_i))²`` (0 when there is no admissible α).
    """

    index: int
    weight: float
    mean_variance: float
    kurtosis_ratio: float
    alpha: float | None
    theta: float | None
    factor: float

    def to_dict(self) -> dict[str, Any]:
        """JSON/CSV-ready row (``alpha``/``theta`` None where no admissible α exists)."""
        return {
            "state": self.index,
            "p_i": self.weight,
            "sigma_i": self.mean_variance,
            "K_i": self.kurtosis_ratio,
            "alpha_i": self.alpha,
            "theta_i": self.theta,
            "P_i": self.factor,
            "P_i*K_i": self.factor * self.kurtosis_ratio,
        }


@dataclass(frozen=True)
class BoundResult:
    """Theorem 6.1 evaluated for one instance.

    Attributes
    ----------
    weights : ndarray, shape (N,)
        ``p_i``.
    mean_variances : ndarray, shape (N,)
        ``σ_i^d = E||μ_i - μ_0||²``.
    kurtosis_ratios : ndarray, shape (N,)
        ``K_i^μ``.
    radius : float
        The uniform covering radius ``r`` (Definition 6.3).
    optimum_spread : float
        The theorem's ``d = (Σ_j p_j² σ_j^d)^{1/2}``: the root-mean-square distance of
        ``A* = Σ p_j μ_j`` from ``μ_0``.
    states : tuple of StateBound
        ``α_i``, ``θ_i(α_i)`` and ``P_i`` per state.
    applicable : bool
        Every state has an ``α > 1`` with ``θ_i(α) <= 1`` (the theorem's condition).
    stated_bound : float or None
        ``Π_i P_i K_i^μ`` as stated; None when the theorem does not apply (see ``reason``).
    union_bound : float
        The bound that the lemmas do justify (module notes); 0 when it is vacuous.
    reason : str
        Why the theorem does not apply (empty when it does).
    """

    weights: FloatArray
    mean_variances: FloatArray
    kurtosis_ratios: FloatArray
    radius: float
    optimum_spread: float
    states: tuple[StateBound, ...]
    applicable: bool
    stated_bound: float | None
    union_bound: float
    reason: str = ""

    @property
    def state_factors(self) -> FloatArray:
        """``P_i`` for every state, shape (N,)."""
        return np.array([st.factor for st in self.states])

    @property
    def alphas(self) -> FloatArray:
        """``α_i`` (NaN where none is admissible), shape (N,)."""
        return np.array([np.nan if st.alpha is None else st.alpha for st in self.states])

    @property
    def thetas(self) -> FloatArray:
        """``θ_i(α_i)`` (NaN where no α is admissible), shape (N,)."""
        return np.array([np.nan if st.theta is None else st.theta for st in self.states])


def _best_alpha(d: float, r: float, sigma: float) -> tuple[float, float, float]:
    a_max = (math.sqrt(sigma) - r) / d

    def neg(a: float) -> float:
        return -(1 - a**-2) * (1 - (a * d + r) ** 2 / sigma) ** 2

    grid = np.linspace(1.0, a_max, 257)[1:-1]
    a0 = float(grid[np.argmin([neg(a) for a in grid])])
    step = (a_max - 1.0) / 256
    res = minimize_scalar(
        neg,
        bounds=(max(1.0, a0 - step), min(a_max, a0 + step)),
        method="bounded",
        options={"xatol": 1e-12 * max(1.0, a_max)},
    )
    a = float(res.x) if -res.fun >= -neg(a0) else a0
    return a, (a * d + r) ** 2 / sigma, -neg(a)


def _union_bound(s: FloatArray, k: FloatArray, d: float, r: float) -> float:
    a_max = float(np.min((np.sqrt(s) - r) / d))
    if a_max <= 1.0:
        return 0.0

    def neg(a: float) -> float:
        th = (a * d + r) ** 2 / s
        return -(1 - a**-2 - float(np.sum(1 - (1 - th) ** 2 * k)))

    grid = np.linspace(1.0, a_max, 513)[1:-1]
    return max(0.0, max(-neg(a) for a in grid))


def theorem_6_1_bound(
    weights: Any, mean_variances: Any, *, kurtosis_ratios: Any, radius: float
) -> BoundResult:
    r"""Theorem 6.1 exactly as stated, plus the union bound (see module notes).

    Theorem 6.1 (Hallucination Probability Lower Bound): under Assumption 6.1, with

    .. math::

        d = \Big(\sum_j p_j^2 σ_j^d\Big)^{1/2},\quad
        θ_i(α) = \frac{(α d + r)^2}{σ_i^d},\quad
        K_i^μ = \frac{(E\|μ_i-μ_0\|^2)^2}{E\|μ_i-μ_0\|^4},

    if every state has an ``α_i > 1`` with ``θ_i(α_i) <= 1``, then

    .. math:: P_H^δ > \prod_{i=1}^N P_i K_i^μ,\qquad
              P_i = \max_{α>1,\ θ_i(α)\le 1} (1 - α^{-2})(1 - θ_i(α))^2 .

    Parameters
    ----------
    weights : array_like, shape (N,)
        ``p_i``, positive, summing to 1.
    mean_variances : array_like, shape (N,)
        ``σ_i^d = E||μ_i - μ_0||²`` > 0.
    kurtosis_ratios : array_like, shape (N,)
        ``K_i^μ`` in (0, 1].
    radius : float >= 0
        The uniform covering radius ``r`` (Definition 6.3).

    Returns
    -------
    BoundResult

    Raises
    ------
    ValueError
        Weights not a probability vector; non-positive or non-finite ``mean_variances``;
        ``kurtosis_ratios`` outside (0, 1]; mismatched lengths; ``radius`` negative or not
        finite.

    Examples
    --------
    >>> b = theorem_6_1_bound([0.5, 0.5], [1.0, 1.0], kurtosis_ratios=[1.0, 1.0], radius=0.0)
    >>> b.applicable, round(b.optimum_spread, 4), round(b.stated_bound, 7)
    (True, 0.7071, 0.0008037)
    """
    w = check_probability_vector(weights, "weights")
    s = check_finite_array(mean_variances, "mean_variances", ndim=1)
    k = check_finite_array(kurtosis_ratios, "kurtosis_ratios", ndim=1)
    r = check_real(radius, "radius", low=0.0)
    if s.size != w.size or k.size != w.size:
        raise ValueError(
            f"`mean_variances` and `kurtosis_ratios` must have {w.size} entries; got {s.size} and {k.size}."
        )
    if np.any(s <= 0):
        raise ValueError(f"`mean_variances` must be positive; got {s.tolist()}.")
    if np.any((k <= 0) | (k > 1 + 1e-12)):
        raise ValueError(f"`kurtosis_ratios` must be in (0, 1]; got {k.tolist()}.")
    d = math.sqrt(float(np.sum(w**2 * s)))
    n = w.size
    bad = [i for i in range(n) if math.sqrt(s[i]) - r <= d]
    states = []
    for i in range(n):
        if i in bad:
            states.append(StateBound(i, float(w[i]), float(s[i]), float(k[i]), None, None, 0.0))
        else:
            a, th, p = _best_alpha(d, r, float(s[i]))
            states.append(StateBound(i, float(w[i]), float(s[i]), float(k[i]), a, th, p))
    if bad:
        reason = f"no alpha > 1 with theta_i(alpha) <= 1 for states {bad} (need sqrt(sigma_i) > d + r = {d + r:.4g})"
        return BoundResult(w, s, k, r, d, tuple(states), False, None, 0.0, reason)
    product = float(np.prod([st.factor * st.kurtosis_ratio for st in states]))
    return BoundResult(w, s, k, r, d, tuple(states), True, product, _union_bound(s, k, d, r))


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
    delta: float,
    means: Any,
    n_samples: int,
    rng: Any,
    *,
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
    >>> est = estimate_hallucination_probability([0.5, 0.5], within, 0.5, means, 10_000, 0)
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


# ----------------------------------------------------------------------------- the check

#: Largest number of applicable instances :func:`check_theorem_6_1` accepts (each needs about
#: 20 random draws of an instance, ~30 ms each, plus its Monte-Carlo draws: ~1 h at the limit).
MAX_CHECK_INSTANCES = 10_000
#: Largest ``n_instances * mc_samples`` (Monte-Carlo draws in all) of one check.
MAX_CHECK_DRAWS = 1_000_000_000


@dataclass(frozen=True)
class CheckRow:
    """One random instance where Theorem 6.1 applies: its bound and the Monte-Carlo truth.

    Attributes
    ----------
    n_states, dim : int
        ``N`` and ``d``.
    delta : float
        Tolerance δ.
    laws : str
        Families of the mean laws, ``/``-separated, one per state.
    weights : tuple of float
        ``p_i``.
    radius : float
        Uniform covering radius ``r``.
    optimum_spread : float
        The theorem's ``d``.
    stated_bound : float
        ``Π P_i K_i^μ``.
    union_bound : float
        The justified union bound.
    p_hat, ci_low, ci_high : float
        Monte-Carlo ``P_H^δ`` and its Wilson interval.
    """

    n_states: int
    dim: int
    delta: float
    laws: str
    weights: tuple[float, ...]
    radius: float
    optimum_spread: float
    stated_bound: float
    union_bound: float
    p_hat: float
    ci_low: float
    ci_high: float

    @property
    def holds(self) -> bool:
        """``p_hat >= stated_bound``."""
        return self.p_hat >= self.stated_bound

    @property
    def counterexample(self) -> bool:
        """The whole confidence interval lies below the stated bound."""
        return self.ci_high < self.stated_bound

    def to_dict(self) -> dict[str, Any]:
        """CSV/JSON-ready row."""
        return {
            "N": self.n_states,
            "dim": self.dim,
            "delta": self.delta,
            "laws": self.laws,
            "weights": [round(x, 4) for x in self.weights],
            "r": self.radius,
            "d": self.optimum_spread,
            "bound": self.stated_bound,
            "union_bound": self.union_bound,
            "p_hat": self.p_hat,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "holds": self.holds,
            "counterexample": self.counterexample,
        }


@dataclass(frozen=True)
class CheckResult:
    """Bound vs Monte-Carlo truth over random instances.

    Attributes
    ----------
    rows : tuple of CheckRow
        One per applicable instance.
    n_tried : int
        Instances drawn (applicable or not).
    n_applicable : int
        ``len(rows)``.
    n_held : int
        Applicable instances with ``p_hat >= bound``.
    counterexamples : tuple of CheckRow
        Rows whose whole confidence interval lies below the bound.
    min_ratio : float or None
        Smallest ``p_hat / bound`` (None when no row has a positive bound).
    union_violations : int
        Rows whose interval lies below the union bound.
    """

    rows: tuple[CheckRow, ...]
    n_tried: int
    n_applicable: int
    n_held: int
    counterexamples: tuple[CheckRow, ...]
    min_ratio: float | None
    union_violations: int


def _random_instance(gen: np.random.Generator) -> dict[str, Any]:
    n = int(gen.integers(2, 5))
    dim = int(gen.integers(1, 4))
    w = gen.dirichlet(np.full(n, 1.5)) + 0.02
    w /= w.sum()
    kinds = (
        [str(gen.choice(LAW_KINDS))] * n
        if gen.random() < 0.6
        else [str(k) for k in gen.choice(LAW_KINDS, n)]
    )
    laws = []
    for kd in kinds:
        param = (
            float(gen.uniform(4.5, 12))
            if kd == "student_t"
            else float(gen.uniform(0.3, 1.0))
            if kd == "spike"
            else 0.0
        )
        laws.append(
            StateMeanLaw(kd, float(np.exp(gen.uniform(np.log(0.5), np.log(3.0)))), dim, param)
        )
    within = [
        GaussianState.isotropic(
            np.zeros(dim), float(np.exp(gen.uniform(np.log(0.02), np.log(0.4))))
        )
        for _ in range(n)
    ]
    delta = float(np.exp(gen.uniform(np.log(1e-3), 0.0)))
    return {"weights": w, "laws": tuple(laws), "within": within, "delta": delta, "dim": dim}


def check_theorem_6_1(
    n_instances: int,
    mc_samples: int,
    *,
    rng: Any = 0,
    confidence: float = 0.99,
    max_tries: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> CheckResult:
    r"""Compare Theorem 6.1's bound with a Monte-Carlo ``P_H^δ`` over random instances.

    Draws instances (N in 2..4, d in 1..3, five families of mean laws, Gaussian within-state
    laws, δ log-uniform in [1e-3, 1]), keeps those where the theorem applies, and checks

    .. math:: \hat P_H^δ \ge \prod_{i=1}^N P_i K_i^μ

    on each. Stops after ``n_instances`` applicable ones or ``max_tries`` draws.

    Parameters
    ----------
    n_instances : int, 1 <= n <= MAX_CHECK_INSTANCES
        Applicable instances wanted.
    mc_samples : int, 1 <= m <= MAX_MC_SAMPLES
        Monte-Carlo draws per instance; ``n_instances * mc_samples <= MAX_CHECK_DRAWS``.
    rng : seed or numpy Generator
        Randomness.
    confidence : float in (0, 1)
        Level of each Wilson interval.
    max_tries : int, optional
        Instances drawn at most (default ``50 * n_instances``).
    progress : callable, optional
        Called as ``progress(n_applicable, n_tried)`` after each applicable instance.

    Returns
    -------
    CheckResult

    Raises
    ------
    ValueError
        Sizes above the limits (the message names the limit), a bad ``confidence``.
    TypeError
        Non-integer sizes.

    Examples
    --------
    >>> res = check_theorem_6_1(2, 1000, rng=0)
    >>> res.n_applicable, res.counterexamples
    (2, ())
    """
    n_inst = check_int(n_instances, "n_instances", low=1, high=MAX_CHECK_INSTANCES)
    mc = check_int(mc_samples, "mc_samples", low=1, high=MAX_MC_SAMPLES)
    if n_inst * mc > MAX_CHECK_DRAWS:
        raise ValueError(
            f"`n_instances` * `mc_samples` must be <= {MAX_CHECK_DRAWS:.0e} Monte-Carlo draws; got {n_inst} * {mc} = "
            f"{n_inst * mc:.3g}."
        )
    conf = check_real(confidence, "confidence", low=0.0, high=1.0, low_open=True, high_open=True)
    gen = np.random.default_rng(rng)
    tries_cap = 50 * n_inst if max_tries is None else check_int(max_tries, "max_tries", low=1)
    rows: list[CheckRow] = []
    tried = 0
    while len(rows) < n_inst and tried < tries_cap:
        tried += 1
        inst = _random_instance(gen)
        means = IndependentMeans(tuple([0.0] * inst["dim"]), inst["laws"])
        r = max(covering_radius(g, inst["delta"]).radius for g in inst["within"])
        b = theorem_6_1_bound(
            inst["weights"], means.sigmas, kurtosis_ratios=means.kurtosis, radius=r
        )
        if not b.applicable or b.stated_bound is None:
            continue
        est = estimate_hallucination_probability(
            inst["weights"], inst["within"], inst["delta"], means, mc, gen, confidence=conf
        )
        rows.append(
            CheckRow(
                n_states=int(inst["weights"].size),
                dim=inst["dim"],
                delta=inst["delta"],
                laws="/".join(law.kind for law in inst["laws"]),
                weights=tuple(float(x) for x in inst["weights"]),
                radius=r,
                optimum_spread=b.optimum_spread,
                stated_bound=b.stated_bound,
                union_bound=b.union_bound,
                p_hat=est.p_hat,
                ci_low=est.ci_low,
                ci_high=est.ci_high,
            )
        )
        if progress is not None:
            progress(len(rows), tried)
    ratios = [row.p_hat / row.stated_bound for row in rows if row.stated_bound > 0]
    return CheckResult(
        rows=tuple(rows),
        n_tried=tried,
        n_applicable=len(rows),
        n_held=sum(row.holds for row in rows),
        counterexamples=tuple(row for row in rows if row.counterexample),
        min_ratio=min(ratios) if ratios else None,
        union_violations=sum(row.ci_high < row.union_bound for row in rows),
    )


def supremum_of_stated_bound(
    max_states: int = 6, *, grid: int = 81
) -> tuple[float, dict[str, Any]]:
    r"""Numerical supremum of Theorem 6.1's right-hand side over all instances.

    With ``x_i = d²/σ_i^d`` and ``y = α²``, ``P_i = max_{1 < y <= 1/x_i} (1 - 1/y)(1 - y x_i)²``
    (at ``r = 0``, which maximises it) and ``K_i^μ <= 1``, so

    .. math:: \sup \prod_i P_i K_i^μ = \sup_{N,\,p,\,σ} \prod_{i=1}^N \max_{y>1} (1 - y^{-1})(1 - y x_i)_+^2,
              \qquad x_i = \frac{\sum_j p_j^2 σ_j}{σ_i}.

    The supremum over σ is searched on a log grid of ratios and over p on a simplex grid,
    for ``N = 2..max_states``; ``P_i`` is maximised in closed form.

    Parameters
    ----------
    max_states : int >= 2
        Largest N searched.
    grid : int >= 5
        Grid points per coordinate (weights and log variance ratios).

    Returns
    -------
    (float, dict)
        The largest value found and where (``n_states``, ``weights``, ``mean_variances``).

    Examples
    --------
    >>> round(supremum_of_stated_bound(2, grid=41)[0], 7)
    0.0008037
    """
    nmax = check_int(max_states, "max_states", low=2, high=8)
    g = check_int(grid, "grid", low=5, high=401)

    def factor(x: FloatArray) -> FloatArray:
        # max over y in (1, 1/x] of (1 - 1/y)(1 - x y)^2: stationary point of a cubic in y.
        out = np.zeros_like(x)
        ok = x < 1
        xs = x[ok]
        # d/dy: (1/y²)(1 - xy)² - 2x(1 - 1/y)(1 - xy) = 0  ->  (1 - xy) = 2x y (y - 1)
        # i.e. 2x y² - (2x - x) y - 1 = 0 -> 2x y² - x y - 1 = 0
        y = (xs + np.sqrt(xs * xs + 8 * xs)) / (4 * xs)
        y = np.clip(y, 1.0, 1.0 / xs)
        out[ok] = (1 - 1 / y) * (1 - xs * y) ** 2
        return out

    best, where = 0.0, {}
    ratios = np.exp(np.linspace(-6, 6, g))
    for n in range(2, nmax + 1):
        rng = np.random.default_rng(n)
        # weights: a simplex grid for N = 2, random Dirichlet draws beyond (plus uniform).
        if n == 2:
            ps = np.stack([np.linspace(0.01, 0.99, g), 1 - np.linspace(0.01, 0.99, g)], axis=1)
        else:
            ps = np.vstack([np.full((1, n), 1.0 / n), rng.dirichlet(np.ones(n), size=20 * g)])
        sig = np.vstack([np.ones((1, n)), np.exp(rng.uniform(-6, 6, size=(20 * g, n)))])
        if n == 2:
            sig = np.stack([np.ones(g), ratios], axis=1)
        for p in ps:
            d2 = (sig * p**2).sum(axis=1, keepdims=True)
            x = d2 / sig
            vals = np.prod(factor(x.ravel()).reshape(x.shape), axis=1)
            j = int(np.argmax(vals))
            if vals[j] > best:
                best = float(vals[j])
                where = {"n_states": n, "weights": p.tolist(), "mean_variances": sig[j].tolist()}
    return best, where
