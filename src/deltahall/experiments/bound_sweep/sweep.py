r"""The check of Theorem 6.1 over random instances: the stated bound against a Monte-Carlo truth.

Draws instances (N in 2..4, d in 1..3, five families of mean laws, Gaussian within-state laws,
δ log-uniform in [1e-3, 1]), keeps those where the theorem applies, and compares the bound
(:func:`deltahall.theory.bound.theorem_6_1_bound`) with ``P_H^δ`` estimated by
:func:`deltahall.theory.montecarlo.estimate_hallucination_probability`. A row whose whole
Wilson interval lies below the stated bound is a counterexample.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deltahall._validation import check_int, check_real
from deltahall.theory.bound import theorem_6_1_bound
from deltahall.theory.mixtures import GaussianState
from deltahall.theory.montecarlo import (
    LAW_KINDS,
    MAX_MC_SAMPLES,
    IndependentMeans,
    StateMeanLaw,
    estimate_hallucination_probability,
)
from deltahall.theory.regions import covering_radius

__all__ = [
    "MAX_CHECK_DRAWS",
    "MAX_CHECK_INSTANCES",
    "CheckConfig",
    "CheckResult",
    "CheckRow",
    "check_theorem_6_1",
    "random_instance",
    "run_check",
]


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


def random_instance(gen: np.random.Generator) -> dict[str, Any]:
    """One random instance: N in 2..4, d in 1..3, weights, mean laws, within-state laws and δ.

    Returns
    -------
    dict
        ``weights`` (ndarray, shape (N,)), ``laws`` (tuple of StateMeanLaw), ``within``
        (list of isotropic GaussianState), ``delta`` and ``dim``.
    """
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
        inst = random_instance(gen)
        means = IndependentMeans(tuple([0.0] * inst["dim"]), inst["laws"])
        r = max(covering_radius(g, inst["delta"]).radius for g in inst["within"])
        b = theorem_6_1_bound(
            inst["weights"], means.sigmas, kurtosis_ratios=means.kurtosis, radius=r
        )
        if not b.applicable or b.stated_bound is None:
            continue
        est = estimate_hallucination_probability(
            inst["weights"],
            inst["within"],
            delta=inst["delta"],
            means=means,
            n_samples=mc,
            rng=gen,
            confidence=conf,
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


@dataclass(frozen=True)
class CheckConfig:
    """``deltahall theory check``: Theorem 6.1 over random instances."""

    instances: int = field(
        default=100, metadata={"help": f"applicable instances to test, 1..{MAX_CHECK_INSTANCES}"}
    )
    mc_samples: int = field(
        default=20_000,
        metadata={
            "help": f"Monte-Carlo draws per instance; instances * mc_samples <= {MAX_CHECK_DRAWS:.0e}"
        },
    )
    confidence: float = field(
        default=inspect.signature(check_theorem_6_1).parameters["confidence"].default,
        metadata={"help": "confidence level of each interval, in (0, 1)"},
    )
    seed: int = field(default=0, metadata={"help": "random seed"})

    def __post_init__(self) -> None:
        n = check_int(self.instances, "instances", low=1, high=MAX_CHECK_INSTANCES)
        m = check_int(self.mc_samples, "mc_samples", low=1, high=MAX_MC_SAMPLES)
        if n * m > MAX_CHECK_DRAWS:
            raise ValueError(
                f"`instances` * `mc_samples` must be <= {MAX_CHECK_DRAWS:.0e} Monte-Carlo draws; got {n} * {m} = {n * m:.3g}."
            )
        check_real(self.confidence, "confidence", low=0.0, high=1.0, low_open=True, high_open=True)
        check_int(self.seed, "seed", low=0)


def run_check(
    config: CheckConfig, *, progress: Callable[[int, int], None] | None = None
) -> CheckResult:
    """Run :func:`check_theorem_6_1` with ``config``.

    Parameters
    ----------
    config : CheckConfig
        Validated on construction (limits included).
    progress : callable, optional
        ``progress(n_applicable, n_tried)`` after each applicable instance.

    Returns
    -------
    CheckResult
    """
    return check_theorem_6_1(
        config.instances,
        config.mc_samples,
        rng=config.seed,
        confidence=config.confidence,
        progress=progress,
    )
