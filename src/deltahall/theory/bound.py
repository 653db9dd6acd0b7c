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
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import stats
from scipy.optimize import minimize_scalar

from deltahall._validation import (
    check_choice,
    check_delta,
    check_finite_array,
    check_int,
    check_probability_vector,
    check_real,
)
from deltahall.theory.mixtures import GaussianState
from deltahall.theory.regions import covering_radius, region_threshold_sq

__all__ = [
    "BoundResult",
    "CheckResult",
    "IndependentMeans",
    "MCEstimate",
    "SampledMeans",
    "StateMeanLaw",
    "check_theorem_6_1",
    "estimate_hallucination_probability",
    "theorem_6_1_bound",
    "wilson_interval",
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
            "student_t": d * (d + 2) * t4 * v * v / ((v - 2) * (v - 4)) if self.kind == "student_t" else 0.0,
            "spike": v * t4,
        }[self.kind]

    @property
    def kurtosis_ratio(self) -> float:
        """``K_i^μ = (E||·||²)² / E||·||⁴``."""
        return self.sigma**2 / self.fourth_moment

    def sample(self, n: int, rng: np.random.Generator) -> FloatArray:
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
            u *= (rng.random((n, 1)) < self.param)
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
        return np.array([law.sigma for law in self.laws])

    @property
    def kurtosis(self) -> FloatArray:
        return np.array([law.kurtosis_ratio for law in self.laws])

    def sample(self, n: int, rng: np.random.Generator) -> FloatArray:
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
        return check_finite_array(self.sampler(n, rng), "sampler output", ndim=3)

    def moments(self, n: int, rng: np.random.Generator) -> tuple[FloatArray, FloatArray]:
        """Monte-Carlo ``σ_i^d`` and ``K_i^μ`` from ``n`` draws."""
        sq = np.sum((self.sample(n, rng) - np.asarray(self.mu0)) ** 2, axis=2)
        return sq.mean(axis=0), sq.mean(axis=0) ** 2 / (sq**2).mean(axis=0)


# ----------------------------------------------------------------------------- the stated bound


@dataclass(frozen=True)
class BoundResult:
    """Theorem 6.1 evaluated. ``applicable`` is False when some state has no α > 1 with θ_i(α) <= 1."""

    weights: FloatArray
    sigmas: FloatArray
    kurtosis: FloatArray
    radius: float
    d: float
    alphas: FloatArray
    thetas: FloatArray
    P: FloatArray
    applicable: bool
    product: float
    union_bound: float
    reason: str = ""

    def rows(self) -> list[dict[str, Any]]:
        return [
            {"state": i, "p_i": float(self.weights[i]), "sigma_i": float(self.sigmas[i]), "K_i": float(self.kurtosis[i]),
             "alpha_i": float(self.alphas[i]), "theta_i": float(self.thetas[i]), "P_i": float(self.P[i]),
             "P_i*K_i": float(self.P[i] * self.kurtosis[i])}
            for i in range(self.weights.size)
        ]


def _best_alpha(d: float, r: float, sigma: float) -> tuple[float, float, float]:
    a_max = (math.sqrt(sigma) - r) / d

    def neg(a: float) -> float:
        return -(1 - a**-2) * (1 - (a * d + r) ** 2 / sigma) ** 2

    grid = np.linspace(1.0, a_max, 257)[1:-1]
    a0 = float(grid[np.argmin([neg(a) for a in grid])])
    step = (a_max - 1.0) / 256
    res = minimize_scalar(neg, bounds=(max(1.0, a0 - step), min(a_max, a0 + step)), method="bounded",
                          options={"xatol": 1e-12 * max(1.0, a_max)})
    a = float(res.x) if -res.fun >= -neg(a0) else a0
    return a, (a * d + r) ** 2 / sigma, -neg(a)


def _union_bound(w: FloatArray, s: FloatArray, k: FloatArray, d: float, r: float) -> float:
    a_max = float(np.min((np.sqrt(s) - r) / d))
    if a_max <= 1.0:
        return 0.0

    def neg(a: float) -> float:
        th = (a * d + r) ** 2 / s
        return -(1 - a**-2 - float(np.sum(1 - (1 - th) ** 2 * k)))

    grid = np.linspace(1.0, a_max, 513)[1:-1]
    return max(0.0, max(-neg(a) for a in grid))


def theorem_6_1_bound(weights: Any, sigmas: Any, kurtosis: Any, radius: float) -> BoundResult:
    """Theorem 6.1 exactly as stated, plus the union bound (see module notes).

    Parameters
    ----------
    weights : (N,) positive, summing to 1
    sigmas : (N,) ``σ_i^d = E||μ_i - μ_0||²`` > 0
    kurtosis : (N,) ``K_i^μ`` in (0, 1]
    radius : float >= 0, the uniform covering radius ``r`` (Definition 6.3)
    """
    w = check_probability_vector(weights, "weights")
    s = check_finite_array(sigmas, "sigmas", ndim=1)
    k = check_finite_array(kurtosis, "kurtosis", ndim=1)
    r = check_real(radius, "radius", low=0.0)
    if s.size != w.size or k.size != w.size:
        raise ValueError(f"`sigmas` and `kurtosis` must have {w.size} entries; got {s.size} and {k.size}.")
    if np.any(s <= 0):
        raise ValueError(f"`sigmas` must be positive; got {s.tolist()}.")
    if np.any((k <= 0) | (k > 1 + 1e-12)):
        raise ValueError(f"`kurtosis` must be in (0, 1]; got {k.tolist()}.")
    d = math.sqrt(float(np.sum(w**2 * s)))
    n = w.size
    alphas, thetas, P = np.full(n, np.nan), np.full(n, np.nan), np.zeros(n)
    bad = [i for i in range(n) if math.sqrt(s[i]) - r <= d]
    for i in range(n):
        if i not in bad:
            alphas[i], thetas[i], P[i] = _best_alpha(d, r, float(s[i]))
    if bad:
        reason = f"no alpha > 1 with theta_i(alpha) <= 1 for states {bad} (need sqrt(sigma_i) > d + r = {d + r:.4g})"
        return BoundResult(w, s, k, r, d, alphas, thetas, P, False, float("nan"), 0.0, reason)
    return BoundResult(w, s, k, r, d, alphas, thetas, P, True, float(np.prod(P * k)), _union_bound(w, s, k, d, r))


# ----------------------------------------------------------------------------- Monte-Carlo P_H


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``k / n``."""
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


@dataclass(frozen=True)
class MCEstimate:
    """Monte-Carlo estimate of P_H^δ with a Wilson confidence interval."""

    p_hat: float
    ci_low: float
    ci_high: float
    n_samples: int
    n_hallucinated: int
    confidence: float


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
    """Estimate ``P_H^δ = Pr[A* ∉ U_i^δ for all i]`` over draws of the conditional means.

    Parameters
    ----------
    weights : (N,)
    within : N GaussianState
        Within-state laws; only their covariances are used (they are centred at the drawn ``μ_i``).
    delta : float in (0, 1]
    means : IndependentMeans, SampledMeans or anything with ``sample(n, rng) -> (n, N, d)``
    n_samples : int
    rng : seed or numpy Generator
    """
    w = check_probability_vector(weights, "weights")
    check_delta(delta)
    n = check_int(n_samples, "n_samples", low=1)
    conf = check_real(confidence, "confidence", low=0.0, high=1.0, low_open=True, high_open=True)
    if len(within) != w.size:
        raise ValueError(f"`within` must have one law per weight ({w.size}); got {len(within)}.")
    gen = np.random.default_rng(rng)
    W = np.stack([g.precision_factor for g in within])  # (N, d, d)
    t = np.array([region_threshold_sq(g, delta) for g in within])
    hits = 0
    done = 0
    while done < n:
        m = min(chunk_size, n - done)
        mus = np.asarray(means.sample(m, gen), dtype=np.float64)
        a = np.einsum("i,mid->md", w, mus)
        z = np.einsum("ijk,mik->mij", W, a[:, None, :] - mus)
        maha = np.einsum("mij,mij->mi", z, z)
        hits += int(np.count_nonzero(np.all(maha >= t, axis=1)))
        done += m
    lo, hi = wilson_interval(hits, n, conf)
    return MCEstimate(hits / n, lo, hi, n, hits, conf)


# ----------------------------------------------------------------------------- the check


@dataclass(frozen=True)
class CheckResult:
    """Bound vs Monte-Carlo truth over random instances.

    ``n_held``: applicable instances with ``p_hat >= bound``;
    ``counterexamples``: rows where the whole confidence interval lies below the bound.
    """

    rows: tuple[dict[str, Any], ...]
    n_tried: int
    n_applicable: int
    n_held: int
    counterexamples: tuple[dict[str, Any], ...]
    min_ratio: float
    union_violations: int


def _random_instance(gen: np.random.Generator) -> dict[str, Any]:
    n = int(gen.integers(2, 5))
    dim = int(gen.integers(1, 4))
    w = gen.dirichlet(np.full(n, 1.5)) + 0.02
    w /= w.sum()
    kinds = [str(gen.choice(LAW_KINDS))] * n if gen.random() < 0.6 else [str(k) for k in gen.choice(LAW_KINDS, n)]
    laws = []
    for kd in kinds:
        param = float(gen.uniform(4.5, 12)) if kd == "student_t" else float(gen.uniform(0.3, 1.0)) if kd == "spike" else 0.0
        laws.append(StateMeanLaw(kd, float(np.exp(gen.uniform(np.log(0.5), np.log(3.0)))), dim, param))
    within = [GaussianState.isotropic(np.zeros(dim), float(np.exp(gen.uniform(np.log(0.02), np.log(0.4))))) for _ in range(n)]
    delta = float(np.exp(gen.uniform(np.log(1e-3), 0.0)))
    return {"weights": w, "laws": tuple(laws), "within": within, "delta": delta, "dim": dim}


def check_theorem_6_1(
    n_instances: int = 100, mc_samples: int = 20_000, rng: Any = 0, *, confidence: float = 0.99, max_tries: int | None = None
) -> CheckResult:
    """Draw random instances (N in 2..4, d in 1..3, five families of mean laws, Gaussian
    within-state laws), keep those where Theorem 6.1 applies, and compare its bound
    with a Monte-Carlo P_H^δ. Stops after ``n_instances`` applicable ones or ``max_tries``."""
    n_inst = check_int(n_instances, "n_instances", low=1)
    gen = np.random.default_rng(rng)
    tries_cap = 50 * n_inst if max_tries is None else check_int(max_tries, "max_tries", low=1)
    rows: list[dict[str, Any]] = []
    tried = 0
    while len(rows) < n_inst and tried < tries_cap:
        tried += 1
        inst = _random_instance(gen)
        means = IndependentMeans(tuple([0.0] * inst["dim"]), inst["laws"])
        r = max(covering_radius(g, inst["delta"]).radius for g in inst["within"])
        b = theorem_6_1_bound(inst["weights"], means.sigmas, means.kurtosis, r)
        if not b.applicable:
            continue
        est = estimate_hallucination_probability(
            inst["weights"], inst["within"], inst["delta"], means, mc_samples, gen, confidence=confidence
        )
        rows.append({
            "N": int(inst["weights"].size), "dim": inst["dim"], "delta": inst["delta"],
            "laws": "/".join(law.kind for law in inst["laws"]), "weights": [round(float(x), 4) for x in inst["weights"]],
            "r": r, "d": b.d, "bound": b.product, "union_bound": b.union_bound,
            "p_hat": est.p_hat, "ci_low": est.ci_low, "ci_high": est.ci_high,
            "holds": est.p_hat >= b.product, "counterexample": est.ci_high < b.product,
        })
    ratios = [row["p_hat"] / row["bound"] for row in rows if row["bound"] > 0]
    return CheckResult(
        rows=tuple(rows),
        n_tried=tried,
        n_applicable=len(rows),
        n_held=sum(bool(row["holds"]) for row in rows),
        counterexamples=tuple(row for row in rows if row["counterexample"]),
        min_ratio=min(ratios) if ratios else float("nan"),
        union_violations=sum(row["ci_high"] < row["union_bound"] for row in rows),
    )
