"""Witnesses for Theorems 5.1, 5.2, 5.3, Corollary 5.2.1 and Theorem C.1.

Each builder returns a target (a :class:`LatentMixture` of Gaussian states)
together with its optimal estimate, and *verifies* the δ-hallucination by
evaluating every state's density -- at the estimate (5.1, C.1), or its
maximum over the whole ε-ball around the estimate (5.2, 5.3), found by exact
maximisation (:func:`max_log_density_in_ball`). Nothing is taken from the
formula that chose the parameters.

The ``*_as_written`` builders follow the paper's constructions literally, so
their failures can be shown with numbers (see ``docs/theory.md``).

Corrected construction (5.1/5.2/5.3): state ``i`` has covariance
``Σ_i = s² C_i``; its ``U_i^δ`` lies in the ball of radius
``r_i = sqrt(t_i λ_max(Σ_i))``, ``t_i = 2 (log peak_i - log δ)^+`` about ``μ_i``.
With ``R = 1.01 max_i (ε + r_i) + s``, put the means on the line ``u = 1/√d``:
``μ_k = R (1 - p_k) / p_k u`` for the lightest state ``k`` (``p_k <= 1/2`` so
``|c_k| >= R``) and ``μ_i = -R u`` for the others. Then ``Σ p_i μ_i = 0`` and
every point within ε of the estimate is at distance ``>= R - ε > r_i`` from
``μ_i``: outside every ``U_i^δ``. This holds for every δ ∈ (0, 1], d >= 1,
N >= 2, positive weights, ``s > 0`` and ``ε >= 0``.

Examples
--------
>>> w = theorem_5_1(0.05, 3, dim=2)
>>> w.hallucinates, bool((w.densities <= 0.05).all())
(True, True)
>>> theorem_5_1_as_written(0.1, 2, weights=[0.01, 0.99]).hallucinates
False
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import brentq

from deltahall._validation import (
    check_delta,
    check_finite_array,
    check_int,
    check_probability_vector,
    check_real,
    check_spd,
)
from deltahall.theory.mixtures import LOG_2PI, GaussianState, LatentMixture
from deltahall.theory.regions import region_threshold_sq

__all__ = [
    "MultiInputWitness",
    "WitnessResult",
    "corollary_5_2_1",
    "max_log_density_in_ball",
    "theorem_5_1",
    "theorem_5_1_as_written",
    "theorem_5_2",
    "theorem_5_2_as_written",
    "theorem_5_3",
    "theorem_c_1",
    "theorem_c_1_as_written",
    "verify_ball",
]

FloatArray = npt.NDArray[np.float64]


def max_log_density_in_ball(state: GaussianState, center: Any, eps: float) -> tuple[float, FloatArray]:
    r"""Exact ``max_{||x - c|| <= ε} log f(x)`` for a Gaussian state, and the maximiser.

    The maximiser minimises the Mahalanobis distance over the ball, a convex
    trust-region problem: if ``||μ - c|| <= ε`` it is ``μ``; otherwise
    ``x = c + (Σ⁻¹ + λI)⁻¹ Σ⁻¹ (μ - c)`` with the unique ``λ > 0`` solving the
    secular equation ``||x - c|| = ε`` (bracketed root finding on ``log(1/(λε))``
    in the eigenbasis of Σ, after rescaling, so any scale and any ε are safe).

    Returns
    -------
    log_density : float
    argmax : ndarray, shape (d,)
    """
    c = check_finite_array(center, "center").reshape(-1)
    e = check_real(eps, "eps", low=0.0)
    b = state.loc - c
    if e == 0.0:
        return float(state.logpdf(c)[0]), c.copy()
    if np.linalg.norm(b) <= e:
        return state.log_peak, state.loc.copy()
    kappa = float(np.max(np.abs(state.scale_tril)))
    u, s, _ = np.linalg.svd(state.scale_tril / kappa)
    w = 1.0 / s**2  # precision eigenvalues (scaled units)
    beta = u.T @ (b / kappa)
    et = e / kappa
    # With λ = 1 / (ε η): y/ε = wβη / (w ε η + 1); solve ||y/ε|| = 1 for log η (no under/overflow).
    wb = w * beta

    def excess(log_eta: float) -> float:
        eta = math.exp(log_eta)
        return math.log(float(np.linalg.norm(wb * eta / (w * et * eta + 1.0))))

    lo = -math.log(float(np.linalg.norm(wb))) - 1.0
    hi = lo + 2.0
    while excess(hi) <= 0.0:
        if float(np.min(w)) * et * math.exp(hi) > 1e17:  # y equals β to machine precision
            return state.log_peak, state.loc.copy()
        hi += 2.0 * (hi - lo)
    log_eta = brentq(excess, lo, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500)
    eta = math.exp(log_eta)
    denom = w * et * eta + 1.0
    y = et * (wb * eta / denom)
    maha = float(np.sum(w * (beta / denom) ** 2))
    x = c + kappa * (u @ y)
    return state.log_peak - 0.5 * maha, x


def verify_ball(mixture: LatentMixture, center: Any, eps: float) -> tuple[FloatArray, FloatArray]:
    """Per-state maximum log-density over the ε-ball (evaluated, not assumed) and the maximisers."""
    logs, pts = [], []
    for s in mixture.states:
        lf, x = max_log_density_in_ball(s, center, eps)
        # Evaluate the density at the maximiser directly as well and keep the larger value.
        direct = float(s.logpdf(x)[0])
        logs.append(max(lf, direct))
        pts.append(x)
    return np.array(logs), np.stack(pts)


@dataclass(frozen=True)
class WitnessResult:
    """A target whose optimal estimate δ-hallucinates, with the evidence.

    Attributes
    ----------
    theorem : str
    delta : float
    mixture : LatentMixture
    estimate : ndarray, shape (d,)
        The optimal estimate ``A*(X)`` (Lemma B.1 / Appendix C), computed from the mixture.
    eps : float
        Radius of the ball around the estimate that was checked (0: the estimate only).
    log_densities : ndarray, shape (N,)
        ``log max_{||a - A*|| <= eps} f(a | Z_i)`` for each state.
    argmax : ndarray, shape (N, d)
        Where each maximum is attained.
    as_written : bool
        True for the paper's construction taken literally.
    notes : tuple of str
    extra : dict
        Theorem-specific evidence (hints, the paper's formulas, ...).
    """

    theorem: str
    delta: float
    mixture: LatentMixture
    estimate: FloatArray
    eps: float
    log_densities: FloatArray
    argmax: FloatArray
    as_written: bool = False
    notes: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def log_delta(self) -> float:
        return math.log(self.delta)

    @property
    def densities(self) -> FloatArray:
        """``exp(log_densities)`` (may underflow to 0 for tiny δ; use ``log_densities``)."""
        return np.exp(self.log_densities)

    @property
    def hallucinates(self) -> bool:
        """Definition 4.2 checked on the evaluated densities: every state <= δ."""
        return bool(np.all(self.log_densities <= self.log_delta))

    @property
    def log_margin(self) -> float:
        """``log δ - max_i log density``; non-negative iff the witness holds."""
        return self.log_delta - float(np.max(self.log_densities))

    def to_dict(self) -> dict[str, Any]:
        states = []
        for i, s in enumerate(self.mixture.states):
            states.append(
                {
                    "index": i,
                    "weight": float(self.mixture.weights[i]),
                    "mean": s.loc.tolist(),
                    "scale_tril": s.scale_tril.tolist(),
                    "density": float(self.densities[i]),
                    "log_density": float(self.log_densities[i]),
                    "argmax": self.argmax[i].tolist(),
                    "exceeds_delta": bool(self.log_densities[i] > self.log_delta),
                }
            )
        return {
            "theorem": self.theorem,
            "as_written": self.as_written,
            "delta": self.delta,
            "log_delta": self.log_delta,
            "dim": self.mixture.dim,
            "n_states": self.mixture.n_states,
            "eps": self.eps,
            "estimate": self.estimate.tolist(),
            "hallucinates": self.hallucinates,
            "log_margin": self.log_margin,
            "states": states,
            "notes": list(self.notes),
            "extra": self.extra,
        }


@dataclass(frozen=True)
class MultiInputWitness:
    """Corollary 5.2.1: one witness per input ``X_j``."""

    witnesses: tuple[WitnessResult, ...]

    @property
    def hallucinates(self) -> bool:
        return all(w.hallucinates for w in self.witnesses)


def _weights(weights: Any, n: int) -> FloatArray:
    n = check_int(n, "n_states", low=2)
    if weights is None:
        return np.full(n, 1.0 / n)
    w = check_probability_vector(weights, "weights")
    if w.size != n:
        raise ValueError(f"`weights` must have n_states = {n} entries; got {w.size}.")
    if np.any(w <= 0):
        raise ValueError(f"`weights` must be positive (every latent state must be possible); got {w.tolist()}.")
    return w


def _trils(cov: Any, n: int, dim: int, scale: float) -> list[FloatArray]:
    if cov is None:
        return [scale * np.eye(dim) for _ in range(n)]
    c = check_finite_array(cov, "cov")
    if c.ndim == 2:
        c = np.broadcast_to(c, (n, *c.shape))
    if c.shape != (n, dim, dim):
        raise ValueError(f"`cov` must have shape ({dim}, {dim}) or ({n}, {dim}, {dim}); got {np.shape(cov)}.")
    return [np.asarray(scale * np.linalg.cholesky(check_spd(ci, f"cov[{i}]")), dtype=np.float64) for i, ci in enumerate(c)]


def _max_sd(g: GaussianState) -> float:
    """sqrt(λ_max(Σ)) from the Cholesky factor (no overflow for huge scales)."""
    return float(np.linalg.svd(g.scale_tril, compute_uv=False)[0])


def _far_target(delta: float, n_states: int, dim: int, weights: Any, scale: float, cov: Any, eps: float) -> LatentMixture:
    dl = check_delta(delta)
    d = check_int(dim, "dim", low=1)
    s = check_real(scale, "scale", low=0.0, low_open=True)
    e = check_real(eps, "eps", low=0.0)
    w = _weights(weights, n_states)
    trils = _trils(cov, w.size, d, s)
    probe = [GaussianState(np.zeros(d), scale_tril=t) for t in trils]
    radii = [math.sqrt(max(region_threshold_sq(g, dl), 0.0)) * _max_sd(g) for g in probe]
    big = 1.01 * max(e + r for r in radii) + s
    if not math.isfinite(big):
        raise ValueError(f"`scale` = {s:g} with `eps` = {e:g} gives a non-finite mean distance.")
    k = int(np.argmin(w))
    coef = np.full(w.size, -big)
    coef[k] = big * (1.0 - w[k]) / w[k]
    u = np.full(d, 1.0 / math.sqrt(d))
    return LatentMixture(w, [GaussianState(coef[i] * u, scale_tril=trils[i]) for i in range(w.size)])


def _result(theorem: str, delta: float, mix: LatentMixture, eps: float, **kw: Any) -> WitnessResult:
    est = mix.mean()
    logs, arg = verify_ball(mix, est, eps)
    return WitnessResult(theorem, float(delta), mix, est, float(eps), logs, arg, **kw)


def theorem_5_1(
    delta: float, n_states: int, dim: int = 1, weights: Any = None, scale: float = 1.0, cov: Any = None
) -> WitnessResult:
    """Theorem 5.1: the quadratic-loss optimum ``E[A(X)]`` δ-hallucinates (corrected construction).

    Parameters
    ----------
    delta : float in (0, 1]
    n_states : int >= 2
    dim : int >= 1
    weights : array_like (N,), optional
        Positive, summing to 1 (uniform by default).
    scale : float > 0
        Length scale ``s``: covariances are ``s² C_i``.
    cov : array_like (d, d) or (N, d, d), optional
        Shape matrices ``C_i`` (positive definite; identity by default).
    """
    mix = _far_target(delta, n_states, dim, weights, scale, cov, 0.0)
    return _result("5.1", delta, mix, 0.0)


def theorem_5_2(
    delta: float, n_states: int, dim: int = 1, weights: Any = None, eps: float = 0.0, scale: float = 1.0, cov: Any = None
) -> WitnessResult:
    """Theorem 5.2: every estimate within ε of the optimum δ-hallucinates (corrected).

    ``log_densities`` are the exact maxima over the closed ε-ball.
    """
    mix = _far_target(delta, n_states, dim, weights, scale, cov, eps)
    return _result("5.2", delta, mix, eps)


def theorem_5_3(
    delta: float,
    n_states: int,
    dim: int = 1,
    weights: Any = None,
    lipschitz: float = 1.0,
    hint_bound: float = 1.0,
    scale: float = 1.0,
    cov: Any = None,
) -> WitnessResult:
    """Theorem 5.3: an L-Lipschitz estimator that is optimal at X hallucinates at every ``X + δ_i``.

    With ``||δ_i|| <= B``, ``||A*(X + δ_i) - A*(X)|| <= L B`` (B.8), so the
    5.2 witness with ``ε = L B`` covers every such estimator. ``extra`` also
    carries a concrete one: hints ``δ_i = B u_i`` (``u_i`` the direction from
    ``A*(X)`` to ``μ_i``) and ``A(X + h) = A*(X) + L h``, with every state's
    density at each ``A(X + δ_i)``.
    """
    lip = check_real(lipschitz, "lipschitz", low=0.0)
    hb = check_real(hint_bound, "hint_bound", low=0.0)
    mix = _far_target(delta, n_states, dim, weights, scale, cov, lip * hb)
    res = _result("5.3", delta, mix, lip * hb)
    dirs = mix.component_means() - res.estimate
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    outputs = res.estimate + lip * hb * dirs
    at_out = mix.log_component_pdf(outputs)  # (hint i, state j)
    extra = {
        "lipschitz": lip,
        "hint_bound": hb,
        "hints": (hb * dirs).tolist(),
        "example_outputs": outputs.tolist(),
        "example_log_densities": at_out.tolist(),
        "example_hallucinates": bool(np.all(at_out <= math.log(delta))),
    }
    return WitnessResult("5.3", res.delta, mix, res.estimate, res.eps, res.log_densities, res.argmax, extra=extra)


def corollary_5_2_1(
    delta: float, n_inputs: int, n_states: int, dim: int = 1, weights: Any = None, scale: float = 1.0
) -> MultiInputWitness:
    """Corollary 5.2.1: inputs ``X_1..X_S``, each with its own 5.1 witness (scale ``s (1 + j)``)."""
    s_in = check_int(n_inputs, "n_inputs", low=1)
    sc = check_real(scale, "scale", low=0.0, low_open=True)
    out = []
    for j in range(s_in):
        r = theorem_5_1(delta, n_states, dim, weights, sc * (1 + j))
        out.append(WitnessResult("5.2.1", r.delta, r.mixture, r.estimate, 0.0, r.log_densities, r.argmax, extra={"input": j}))
    return MultiInputWitness(tuple(out))


def theorem_c_1(
    delta: float, n_states: int, n_classes: int | None = None, weights: Any = None, scale: float = 1.0
) -> WitnessResult:
    """Theorem C.1 (cross-entropy), corrected.

    Targets ``q | Z_i ~ N(e_{i mod C}, v I_C)`` (a proper C-dimensional density);
    the cross-entropy optimum is ``p_X = Σ p_i e_{i mod C}``. With ``D`` the
    smallest distance from ``p_X`` to a vertex, the density at ``p_X`` is
    ``h(v) = -C/2 log(2πv) - D²/(2v)`` (log), which rises until ``v = D²/C`` and
    falls after. Let ``v_lo <= v_hi`` be where ``h = log δ`` (``v_lo = v_hi = D²/C``
    when ``h <= log δ`` everywhere). ``scale <= 1`` uses ``v = scale² v_lo``
    (concentrated targets), ``scale > 1`` uses ``v = scale² v_hi`` (diffuse).
    """
    dl = check_delta(delta)
    w = _weights(weights, n_states)
    c = w.size if n_classes is None else check_int(n_classes, "n_classes", low=2)
    s = check_real(scale, "scale", low=0.0, low_open=True)
    verts = np.eye(c)[np.arange(w.size) % c]
    p_x = w @ verts
    dmin2 = float(np.min(np.sum((verts - p_x) ** 2, axis=1)))
    target = math.log(dl) - 1e-9 * max(1.0, abs(math.log(dl)))

    def h(logv: float) -> float:
        return -0.5 * c * (LOG_2PI + logv) - 0.5 * dmin2 * math.exp(-logv)

    u_star = math.log(dmin2 / c)
    if h(u_star) <= target:
        u_lo = u_hi = u_star
    else:
        step = 1.0
        while h(u_star - step) > target:
            step *= 2
        u_lo = brentq(lambda u: h(u) - target, u_star - step, u_star, xtol=1e-14)
        step = 1.0
        while h(u_star + step) > target:
            step *= 2
        u_hi = brentq(lambda u: h(u) - target, u_star, u_star + step, xtol=1e-14)
        u_lo, u_hi = u_lo - 1e-12, u_hi + 1e-12
    logv = 2 * math.log(s) + (u_lo if s <= 1 else u_hi)
    sd = math.exp(0.5 * logv)
    if not (math.isfinite(sd) and sd > 0):
        raise ValueError(f"`scale` = {s:g} gives a non-finite target variance for Theorem C.1.")
    mix = LatentMixture(w, [GaussianState.isotropic(v, sd) for v in verts])
    extra = {"n_classes": c, "variance_log": logv, "v_lo_log": u_lo, "v_hi_log": u_hi}
    return _result("C.1", dl, mix, 0.0, extra=extra)


# ----------------------------------------------------------------------------- as written


def theorem_5_1_as_written(
    delta: float, n_states: int, dim: int = 1, weights: Any = None, cov_scale: float = 1.0
) -> WitnessResult:
    """Section B.1 literally: ``μ_i = m_i 1`` with ``m_i = sqrt((-2 ln δ - ln det Σ_i) / 1ᵀΣ_i1)``
    (Σ where Σ⁻¹ belongs), ``Σ_i = cov_scale² I`` for ``i < N``, ``μ_N = -Σ p_i/p_N μ_i`` and
    ``Σ_N = δ^{2/d} I`` (so ``det(Σ_N)^{-1/2} = δ^{-1}``, not δ)."""
    dl = check_delta(delta)
    d = check_int(dim, "dim", low=1)
    w = _weights(weights, n_states)
    cs = check_real(cov_scale, "cov_scale", low=0.0, low_open=True)
    radicand = (-2 * math.log(dl) - 2 * d * math.log(cs)) / (d * cs**2)
    if radicand < 0:
        raise ValueError(
            f"as written, m_i = sqrt((-2 ln δ - ln det Σ_i) / 1ᵀΣ_i1) is undefined: the radicand is {radicand:.6g} < 0."
        )
    m = math.sqrt(radicand)
    means = [np.full(d, m) for _ in range(w.size - 1)]
    mu_n = -sum(w[i] / w[-1] * means[i] for i in range(w.size - 1))
    states = [GaussianState.isotropic(mu, cs) for mu in means]
    states.append(GaussianState.isotropic(mu_n, dl ** (1.0 / d)))
    mix = LatentMixture(w, states)
    notes = (
        "Sigma_N = delta^(2/d) I gives det(Sigma_N)^(-1/2) = delta^(-1), not delta (B.6).",
        "m_i uses 1^T Sigma 1 where 1^T Sigma^{-1} 1 belongs (B.4).",
    )
    extra = {"m_i": m, "log_peak_state_N": states[-1].log_peak}
    return _result("5.1", dl, mix, 0.0, as_written=True, notes=notes, extra=extra)


def theorem_5_2_as_written(
    delta: float, n_states: int, dim: int = 1, weights: Any = None, eps: float = 0.0, c_const: float = 2.0
) -> WitnessResult:
    """Section B.3's example literally: ``μ_i = C i (N-i) (sqrt(-2 ln δ) + ε) / p_{N-i} 1``,
    identity covariances, N even. For ``i = N`` the factor ``i (N-i)`` is 0, so ``μ_N = 0``.
    The ball is checked around the true optimum ``Σ p_i μ_i`` (Lemma B.1), which is not 0."""
    dl = check_delta(delta)
    d = check_int(dim, "dim", low=1)
    w = _weights(weights, n_states)
    if w.size % 2:
        raise ValueError(f"as written, Theorem 5.2's construction needs an even `n_states`; got {w.size}.")
    e = check_real(eps, "eps", low=0.0)
    cc = check_real(c_const, "c_const", low=1.0, low_open=True)
    n = w.size
    k = math.sqrt(-2 * math.log(dl)) + e
    means = [np.full(d, cc * i * (n - i) * k / w[n - i - 1]) for i in range(1, n)] + [np.zeros(d)]
    mix = LatentMixture(w, [GaussianState(mu, np.eye(d)) for mu in means])
    notes = (
        "mu_N = 0 because i(N-i) = 0 at i = N, and p_0 is undefined.",
        "The pairing mu_i = -(p_{N-i}/p_i) mu_{N-i} matches i with N-i, so i = N/2 pairs with itself "
        "(forcing mu_{N/2} = 0) and i = N with index 0.",
        "All example means are positive multiples of 1, so sum_i p_i mu_i != 0.",
    )
    extra = {"sum_p_mu_norm": float(np.linalg.norm(mix.mean())), "log_density_state_N_at_0": float(mix.states[-1].logpdf(np.zeros(d))[0])}
    return _result("5.2", dl, mix, e, as_written=True, notes=notes, extra=extra)


def theorem_c_1_as_written(delta: float, n_states: int, variance: float | None = None) -> WitnessResult:
    """Appendix C literally: ``N(e_i, d)`` targets, ``p_i = 1/N``, ``d`` at its stated bound
    ``-(N-1)/(N ln δ²)`` unless ``variance`` is given. ``extra['paper_formula_density']`` is the
    paper's 1-d expression ``(2πd)^{-1/2} exp(-(N-1)/(2dN))``; ``log_densities`` use the proper
    N-dimensional density of ``N(e_i, d I_N)``."""
    dl = check_delta(delta)
    n = check_int(n_states, "n_states", low=2)
    if dl == 1.0 and variance is None:
        raise ValueError("as written, the variance bound -(N-1)/(N ln δ²) is undefined at `delta` = 1 (ln δ = 0).")
    bound = -(n - 1) / (n * math.log(dl**2)) if dl < 1 else math.inf
    v = bound if variance is None else check_real(variance, "variance", low=0.0, low_open=True)
    mix = LatentMixture(np.full(n, 1.0 / n), [GaussianState.isotropic(e, math.sqrt(v)) for e in np.eye(n)])
    formula = (2 * math.pi * v) ** -0.5 * math.exp(-(n - 1) / (2 * v * n))
    notes = ("The chain's step to delta^2/2 should read delta: at the bound the 1-d formula equals delta/sqrt(2 pi d).",)
    extra = {"variance": v, "variance_bound": bound, "paper_formula_density": formula}
    return _result("C.1", dl, mix, 0.0, as_written=True, notes=notes, extra=extra)
