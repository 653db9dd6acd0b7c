"""The theory commands as configs (``deltahall theory witness|bound|check``) and their JSON payloads.

The main job's theory step is :mod:`deltahall.experiments.theory_report`.

Each command is a frozen dataclass config (validated in ``__post_init__``, so a bad value is
refused before anything runs or is written) plus a ``run_*(config)`` function returning a typed
result. The CLI (:mod:`deltahall.cli.theory`) builds its options from these dataclasses, so
every default lives here or, for the witness options, in the builder's signature
(:mod:`deltahall.theory.witnesses`): a witness option left unset is not passed at all.

Limits (documented in ``docs/theory.md``): N <= 10 000 states, d <= 1 024,
``N d² <= 2**22`` (:func:`deltahall.theory.mixtures.check_problem_size`); at most
1e8 Monte-Carlo draws per estimate, ``draws * N <= 1e8`` and ``draws * N * d² <= 1e10``
(:func:`deltahall.theory.montecarlo.check_mc_work`); ``theory check`` at most 10 000 instances
and 1e9 draws in all (:mod:`deltahall.experiments.bound_sweep`, whose config and payload the
CLI takes from here).

JSON payloads (:func:`witness_payload`, :func:`bound_payload`) are built here from the theory's
plain result dataclasses and go through :func:`deltahall.io.rundir.to_jsonable`, so a
non-finite number is ``null`` and a ``*_note`` or ``null_fields`` entry says why.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from deltahall._validation import check_choice, check_int, check_real
from deltahall.experiments.bound_sweep import (
    CheckConfig,
    check_payload,
    run_check,
)
from deltahall.io.rundir import to_jsonable
from deltahall.theory import as_written as AW
from deltahall.theory import witnesses as W
from deltahall.theory.bound import BoundResult, StateBound, theorem_6_1_bound
from deltahall.theory.mixtures import GaussianState, check_problem_size
from deltahall.theory.montecarlo import (
    LAW_KINDS,
    MAX_MC_SAMPLES,
    IndependentMeans,
    MCEstimate,
    StateMeanLaw,
    check_mc_work,
    estimate_hallucination_probability,
)
from deltahall.theory.regions import covering_radius

logger = logging.getLogger(__name__)

__all__ = [
    "BoundConfig",
    "BoundReport",
    "CheckConfig",
    "check_payload",
    "WitnessConfig",
    "bound_payload",
    "run_bound",
    "run_check",
    "run_witness",
    "witness_payload",
]

Theorem = Literal["5.1", "5.2", "5.3", "5.2.1", "C.1"]
MeanLaw = Literal["gaussian", "sphere", "cube", "student_t", "spike"]


def _default(fn: Callable[..., Any], name: str) -> Any:
    """The default of parameter ``name`` in ``fn``'s signature (the one place it is written)."""
    return inspect.signature(fn).parameters[name].default


# ----------------------------------------------------------------------------- witness

_APPLIES: dict[str, set[str]] = {
    "5.1": {"dim", "weights", "scale", "cov"},
    "5.2": {"dim", "weights", "eps", "scale", "cov"},
    "5.3": {"dim", "weights", "lipschitz", "hint_bound", "scale", "cov"},
    "5.2.1": {"dim", "weights", "scale", "inputs"},
    "C.1": {"dim", "weights", "scale"},
}
_APPLIES_AS_WRITTEN: dict[str, set[str]] = {
    "5.1": {"dim", "weights", "scale"},
    "5.2": {"dim", "weights", "eps"},
    "C.1": set(),
}
_OPTIONAL = ("dim", "weights", "eps", "lipschitz", "hint_bound", "scale", "cov", "inputs")


@dataclass(frozen=True)
class WitnessConfig:
    """``deltahall theory witness``: build and verify one witness (options left None are not passed)."""

    theorem: Theorem = field(
        metadata={"help": "which result: 5.1, 5.2, 5.3, 5.2.1 (Corollary) or C.1", "required": True}
    )
    delta: float = field(metadata={"help": "density tolerance δ in (0, 1]", "required": True})
    states: int = field(metadata={"help": "number of latent states N, 2..10000", "required": True})
    dim: int | None = field(
        default=None,
        metadata={
            "help": f"output dimension d, 1..1024 (builder default {_default(W.theorem_5_1, 'dim')}); "
            "for C.1 the number of classes C >= 2 (default N)"
        },
    )
    weights: tuple[float, ...] | None = field(
        default=None, metadata={"help": "p_1..p_N, positive, summing to 1 (default uniform)"}
    )
    eps: float | None = field(
        default=None,
        metadata={
            "help": f"5.2: radius ε >= 0 of the ball of near-optimal estimates (builder default {_default(W.theorem_5_2, 'eps')})"
        },
    )
    lipschitz: float | None = field(
        default=None,
        metadata={
            "help": f"5.3: Lipschitz constant L >= 0 (builder default {_default(W.theorem_5_3, 'lipschitz')})"
        },
    )
    hint_bound: float | None = field(
        default=None,
        metadata={
            "help": f"5.3: hint norm bound B >= 0 (builder default {_default(W.theorem_5_3, 'hint_bound')})"
        },
    )
    scale: float | None = field(
        default=None,
        metadata={
            "help": f"length scale s in [1e-300, 1e300]: covariances s²·C (builder default {_default(W.theorem_5_1, 'scale')}); "
            "as written, 5.1's cov_scale"
        },
    )
    cov: tuple[float, ...] | None = field(
        default=None,
        metadata={
            "help": "d*d entries (row-major) of the shape matrix C, positive definite (default identity)"
        },
    )
    inputs: int | None = field(
        default=None,
        metadata={
            "help": f"5.2.1: number of inputs S, 1..1000 (builder default {_default(W.corollary_5_2_1, 'n_inputs')})"
        },
    )
    as_written: bool = field(
        default=False, metadata={"help": "use the paper's construction literally (5.1, 5.2, C.1)"}
    )

    def __post_init__(self) -> None:
        check_choice(self.theorem, "theorem", tuple(_APPLIES))
        check_real(self.delta, "delta")  # finiteness; the range is checked by the builder
        states = check_int(self.states, "states", low=2)
        classes = self.theorem == "C.1"
        dim = self.dim if self.dim is not None else (states if classes else 1)
        check_problem_size(
            states, dim, states_name="states", dim_name="dim (classes)" if classes else "dim"
        )
        for name in ("eps", "lipschitz", "hint_bound", "scale"):
            v = getattr(self, name)
            if v is not None:
                check_real(v, name)
        for name in ("weights", "cov"):
            vals = getattr(self, name)
            for x in vals or ():
                if not math.isfinite(x):
                    raise ValueError(f"`{name}` must be finite; got {list(vals)}.")
        if self.as_written:
            allowed = _APPLIES_AS_WRITTEN.get(self.theorem)
            if allowed is None:
                raise ValueError(
                    f"`--as-written` exists for theorems 5.1, 5.2 and C.1; got {self.theorem} (5.3 applies 5.2's construction)."
                )
        else:
            allowed = _APPLIES[self.theorem]
        for name in _OPTIONAL:
            if getattr(self, name) is not None and name not in allowed:
                how = " as written" if self.as_written else ""
                raise ValueError(
                    f"`--{name.replace('_', '-')}` does not apply to Theorem {self.theorem}{how}."
                )
        if self.cov is not None:
            d = 1 if self.dim is None else self.dim
            if len(self.cov) != d * d:
                raise ValueError(f"`cov` must have dim*dim = {d * d} entries; got {len(self.cov)}.")

    def kwargs(self) -> dict[str, Any]:
        """The builder's keyword arguments: only the options that were set."""
        kw: dict[str, Any] = {}
        if self.weights is not None:
            kw["weights"] = list(self.weights)
        if self.dim is not None:
            kw["n_classes" if self.theorem == "C.1" else "dim"] = self.dim
        for name in ("eps", "lipschitz", "hint_bound"):
            if getattr(self, name) is not None:
                kw[name] = getattr(self, name)
        if self.scale is not None:
            kw["cov_scale" if self.as_written else "scale"] = self.scale
        if self.cov is not None:
            d = 1 if self.dim is None else self.dim
            kw["cov"] = np.asarray(self.cov, dtype=np.float64).reshape(d, d)
        if self.inputs is not None:
            kw["n_inputs"] = self.inputs
        return kw


def run_witness(config: WitnessConfig) -> list[W.WitnessResult]:
    """Build the witness(es) ``config`` asks for.

    Parameters
    ----------
    config : WitnessConfig

    Returns
    -------
    list of WitnessResult
        One, or one per input for Corollary 5.2.1.

    Raises
    ------
    ValueError
        What the builder refuses (sizes, scales, weights; see :mod:`deltahall.theory.witnesses`).
    """
    kw = config.kwargs()
    th = config.theorem
    if th == "5.2.1":
        return list(W.corollary_5_2_1(config.delta, config.states, **kw).witnesses)
    builders: dict[str, Callable[..., W.WitnessResult]] = (
        {
            "5.1": AW.theorem_5_1_as_written,
            "5.2": AW.theorem_5_2_as_written,
            "C.1": AW.theorem_c_1_as_written,
        }
        if config.as_written
        else {
            "5.1": W.theorem_5_1,
            "5.2": W.theorem_5_2,
            "5.3": W.theorem_5_3,
            "C.1": W.theorem_c_1,
        }
    )
    return [builders[th](config.delta, config.states, **kw)]


_BASE_FIELDS = frozenset(f.name for f in dataclasses.fields(W.WitnessResult))


def _details(result: W.WitnessResult, max_matrix_states: int) -> dict[str, Any]:
    """The fields a theorem's result adds to :class:`~deltahall.theory.witnesses.WitnessResult`."""
    out = {
        f.name: getattr(result, f.name)
        for f in dataclasses.fields(result)
        if f.name not in _BASE_FIELDS
    }
    if isinstance(result, W.LipschitzWitness):
        out["example_hallucinates"] = result.example_hallucinates
        if result.example_log_densities.shape[0] > max_matrix_states:
            del out["example_log_densities"]
            out["example_max_log_density"] = result.example_log_densities.max(axis=1)
            out["example_note"] = (
                f"N > {max_matrix_states}: per hint, the largest log density over the states "
                "instead of the N x N matrix"
            )
    return out


def witness_payload(
    result: W.WitnessResult, *, max_matrix_dim: int = 32, max_matrix_states: int = 32
) -> dict[str, Any]:
    """Strict-JSON-ready summary of a witness: one entry per state with its density and ``log_density``.

    A ``log_density`` below the float64 range is ``None`` with ``log_density_note`` saying why;
    covariance factors are listed only when ``d <= max_matrix_dim``; a theorem's own evidence
    (the fields its result type adds) is under ``details``, Theorem 5.3's N x N matrix only for
    ``N <= max_matrix_states``.

    Parameters
    ----------
    result : WitnessResult
        From :mod:`deltahall.theory.witnesses` or :mod:`deltahall.theory.as_written`.
    max_matrix_dim, max_matrix_states : int
        Largest ``d`` and ``N`` whose matrices are listed.

    Returns
    -------
    dict

    Examples
    --------
    >>> d = witness_payload(W.theorem_c_1(0.01, 3, scale=1e-200))  # densities below float64
    >>> d["hallucinates"], d["states"][0]["log_density"], d["log_margin"]
    (True, None, None)
    """
    mix = result.mixture
    states = []
    for i, st in enumerate(mix.states):
        ld = float(result.log_densities[i])
        row: dict[str, Any] = {
            "index": i,
            "weight": float(mix.weights[i]),
            "mean": st.loc,
            "density": float(result.densities[i]),
            "log_density": ld,
            "argmax": result.argmax[i],
            "exceeds_delta": bool(ld > result.log_delta),
        }
        if mix.dim <= max_matrix_dim:
            row["scale_tril"] = st.scale_tril
        if not math.isfinite(ld):
            row["log_density_note"] = (
                "below -1.8e308 (the float64 range): the density underflows to 0"
            )
        states.append(row)
    margin = result.log_margin
    out: dict[str, Any] = {
        "theorem": result.theorem,
        "as_written": result.as_written,
        "delta": result.delta,
        "log_delta": result.log_delta,
        "dim": mix.dim,
        "n_states": mix.n_states,
        "eps": result.eps,
        "estimate": result.estimate,
        "hallucinates": result.hallucinates,
        "log_margin": margin,
        "states": states,
        "notes": list(result.notes),
    }
    if not math.isfinite(margin):
        out["log_margin_note"] = (
            "every state's log density is below the float64 range, so the margin is unbounded"
        )
    if mix.dim > max_matrix_dim:
        out["scale_tril_note"] = f"covariance factors omitted for d > {max_matrix_dim}"
    det = _details(result, max_matrix_states)
    if det:
        out["details"] = det
    return to_jsonable(out)  # type: ignore[no-any-return]


# ----------------------------------------------------------------------------- bound


@dataclass(frozen=True)
class BoundConfig:
    """``deltahall theory bound``: Theorem 6.1 and a Monte-Carlo P_H^δ for one instance."""

    delta: float = field(metadata={"help": "density tolerance δ in (0, 1]", "required": True})
    states: int = field(default=2, metadata={"help": "number of latent states N, 2..10000"})
    weights: tuple[float, ...] | None = field(
        default=None, metadata={"help": "p_1..p_N (default uniform)"}
    )
    dim: int = field(default=1, metadata={"help": "output dimension d, 1..1024, N d² <= 2**22"})
    within_scale: tuple[float, ...] = field(
        default=(0.1,),
        metadata={"help": "s_i > 0 of the within-state laws N(μ_i, s_i² I): one value or N"},
    )
    mean_law: MeanLaw = field(default="gaussian", metadata={"help": "law of μ_i - μ_0"})
    mean_scale: tuple[float, ...] = field(
        default=(1.0,), metadata={"help": "τ_i > 0 of the mean law: one value or N"}
    )
    law_param: float = field(
        default=0.0, metadata={"help": "ν > 4 for student_t, q in (0, 1] for spike"}
    )
    mc_samples: int = field(
        default=200_000,
        metadata={"help": f"Monte-Carlo draws of the means, 1..{MAX_MC_SAMPLES:.0e}"},
    )
    confidence: float = field(
        default=0.95, metadata={"help": "confidence level of the Wilson interval, in (0, 1)"}
    )
    seed: int = field(default=0, metadata={"help": "random seed"})

    def __post_init__(self) -> None:
        check_real(self.delta, "delta", low=0.0, high=1.0, low_open=True)
        n, d = check_problem_size(self.states, self.dim, states_name="states")
        if self.weights is not None and len(self.weights) != n:
            raise ValueError(f"`weights` must have N = {n} entries; got {len(self.weights)}.")
        for x in self.weights or ():
            check_real(x, "weights", low=0.0, low_open=True)
        for name in ("within_scale", "mean_scale"):
            vals = getattr(self, name)
            if len(vals) not in (1, n):
                raise ValueError(f"`{name}` must have 1 or N = {n} values; got {len(vals)}.")
            for x in vals:
                check_real(x, name, low=0.0, low_open=True)
        check_choice(self.mean_law, "mean_law", LAW_KINDS)
        check_real(self.law_param, "law_param")
        if self.mean_law == "student_t":
            check_real(self.law_param, "law_param (nu of student_t)", low=4.0, low_open=True)
        if self.mean_law == "spike":
            check_real(self.law_param, "law_param (q of spike)", low=0.0, high=1.0, low_open=True)
        check_int(self.mc_samples, "mc_samples", low=1, high=MAX_MC_SAMPLES)
        check_mc_work(self.mc_samples, n, d, samples_name="mc_samples")
        check_real(self.confidence, "confidence", low=0.0, high=1.0, low_open=True, high_open=True)
        check_int(self.seed, "seed", low=0)

    def per_state(self, name: str) -> list[float]:
        """``within_scale`` or ``mean_scale`` as N values (a single value is repeated)."""
        vals = list(getattr(self, name))
        return vals * self.states if len(vals) == 1 else vals


@dataclass(frozen=True)
class BoundReport:
    """Theorem 6.1's bound, the Monte-Carlo truth and the instance's covering radius."""

    config: BoundConfig
    radius: float
    bound: BoundResult
    estimate: MCEstimate

    @property
    def holds(self) -> bool | None:
        """``p_hat >= bound`` (None when the theorem does not apply)."""
        b = self.bound.stated_bound
        return None if b is None else self.estimate.p_hat >= b


def _state_row(st: StateBound) -> dict[str, Any]:
    """One state's factor under the theorem's names (``alpha_i``/``theta_i`` None where no α is admissible)."""
    return {
        "state": st.index,
        "p_i": st.weight,
        "sigma_i": st.mean_variance,
        "K_i": st.kurtosis_ratio,
        "alpha_i": st.alpha,
        "theta_i": st.theta,
        "P_i": st.factor,
        "P_i*K_i": st.factor * st.kurtosis_ratio,
    }


def bound_payload(report: BoundReport) -> dict[str, Any]:
    """Strict-JSON-ready form of a :class:`BoundReport`.

    ``bound`` is None with ``reason`` (and ``null_fields``) when the theorem does not apply.

    Parameters
    ----------
    report : BoundReport

    Returns
    -------
    dict
    """
    b, e = report.bound, report.estimate
    out: dict[str, Any] = {
        "d": b.optimum_spread,
        "r": report.radius,
        "applicable": b.applicable,
        "reason": b.reason,
        "bound": b.stated_bound,
        "union_bound": b.union_bound,
        "states": [_state_row(st) for st in b.states],
        "p_hat": e.p_hat,
        "ci": [e.ci_low, e.ci_high],
        "confidence": e.confidence,
        "mc_samples": e.n_samples,
        "holds": report.holds,
    }
    if not b.applicable:
        out["null_fields"] = {
            "bound": b.reason,
            "holds": "the theorem does not apply",
            "states[].alpha_i/theta_i": "null for states with no alpha > 1, theta_i(alpha) <= 1",
        }
    return to_jsonable(out)  # type: ignore[no-any-return]


def run_bound(config: BoundConfig) -> BoundReport:
    """Evaluate Theorem 6.1 and estimate ``P_H^δ`` for the instance ``config`` describes.

    Parameters
    ----------
    config : BoundConfig
        Validated on construction.

    Returns
    -------
    BoundReport
    """
    n, d = config.states, config.dim
    w = (
        np.full(n, 1.0 / n)
        if config.weights is None
        else np.asarray(config.weights, dtype=np.float64)
    )
    within = [GaussianState.isotropic(np.zeros(d), s) for s in config.per_state("within_scale")]
    laws = tuple(
        StateMeanLaw(config.mean_law, m, d, config.law_param)
        for m in config.per_state("mean_scale")
    )
    means = IndependentMeans(tuple([0.0] * d), laws)
    r = max(covering_radius(g, config.delta).radius for g in within)
    b = theorem_6_1_bound(w, means.sigmas, kurtosis_ratios=means.kurtosis, radius=r)
    est = estimate_hallucination_probability(
        w,
        within,
        delta=config.delta,
        means=means,
        n_samples=config.mc_samples,
        rng=config.seed,
        confidence=config.confidence,
    )
    return BoundReport(config, r, b, est)
