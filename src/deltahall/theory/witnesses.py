r"""Witnesses for Theorems 5.1, 5.2, 5.3, Corollary 5.2.1 and Theorem C.1.

Each builder returns a target (a :class:`LatentMixture` of Gaussian states)
together with its optimal estimate, and *verifies* the δ-hallucination of
Definition 4.2,

.. math:: f_{A(X; Z_i)}(A^*(X)) \le δ \quad \text{for every } i \in [N],

by evaluating every state's density -- at the estimate (5.1, C.1), or its
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

Limits
------
Every builder refuses, before allocating anything, ``N > MAX_STATES`` (10 000),
``d > MAX_DIM`` (1 024) and ``N d² > MAX_FACTOR_ENTRIES`` (2**22), and a
length scale outside ``[SCALE_MIN, SCALE_MAX] = [1e-300, 1e300]`` or one whose
means or standard deviations would leave the float64 range (the message names
the parameter and the largest or smallest value that works).

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
from dataclasses import dataclass
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
from deltahall.theory.mixtures import (
    LOG_2PI,
    GaussianState,
    LatentMixture,
    check_problem_size,
    scaled_norm,
)
from deltahall.theory.regions import region_threshold_sq

__all__ = [
    "MAX_STATES_5_3",
    "SCALE_MAX",
    "SCALE_MIN",
    "CrossEntropyWitness",
    "LipschitzWitness",
    "MultiInputWitness",
    "Theorem51AsWritten",
    "Theorem52AsWritten",
    "TheoremC1AsWritten",
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

#: Smallest and largest length scale (and target standard deviation) a builder accepts: inside
#: this range the precision factors ``1/s`` and the means stay finite float64 numbers.
SCALE_MIN = 1e-300
SCALE_MAX = 1e300
#: Theorem 5.3 evaluates every state's density at every hinted output: N x N values.
MAX_STATES_5_3 = 2_048
_LOG_SCALE_MIN = math.log(SCALE_MIN)
_LOG_SCALE_MAX = math.log(SCALE_MAX)


# ----------------------------------------------------------------------------- the ball maximum


def max_log_density_in_ball(
    state: GaussianState, center: Any, eps: float
) -> tuple[float, FloatArray]:
    r"""Exact maximum of a Gaussian log-density over a closed Euclidean ball, and the maximiser.

    .. math::

        \max_{\|x - c\|_2 \le ε} \log f(x), \qquad
        f = \mathcal N(μ, Σ).

    The maximiser minimises the Mahalanobis distance over the ball, a convex
    trust-region problem: if ``||μ - c|| <= ε`` it is ``μ``; otherwise
    ``x = c + (Σ⁻¹ + λI)⁻¹ Σ⁻¹ (μ - c)`` with the unique ``λ > 0`` solving the
    secular equation ``||x - c|| = ε`` (bracketed root finding on ``log(1/(λε))``
    in the eigenbasis of Σ). Every length is divided by the largest entry of the
    Cholesky factor first and norms are taken after rescaling, so scales from
    1e-300 to 1e300 neither underflow nor overflow.

    Parameters
    ----------
    state : GaussianState
        The law ``N(μ, Σ)``, dimension ``d``.
    center : array_like, shape (d,)
        Centre ``c`` of the ball.
    eps : float >= 0
        Radius ``ε`` (0: the density at ``c``).

    Returns
    -------
    log_density : float
        The maximum of ``log f`` over the ball.
    argmax : ndarray, shape (d,)
        A point of the ball where it is attained.

    Raises
    ------
    ValueError
        Non-finite ``center`` or ``eps``, or ``eps < 0``.

    Examples
    --------
    >>> g = GaussianState([3.0], [[1.0]])
    >>> lf, x = max_log_density_in_ball(g, [0.0], 1.0)
    >>> round(float(x[0]), 12), round(lf - float(g.logpdf([1.0])[0]), 12)
    (1.0, 0.0)
    """
    c = check_finite_array(center, "center").reshape(-1)
    e = check_real(eps, "eps", low=0.0)
    b = state.loc - c
    if e == 0.0:
        return float(state.logpdf(c)[0]), c.copy()
    if float(scaled_norm(b)) <= e:
        return state.log_peak, state.loc.copy()
    kappa = float(np.max(np.abs(state.scale_tril)))
    u, s, _ = np.linalg.svd(state.scale_tril / kappa)
    w = 1.0 / s**2  # precision eigenvalues (scaled units)
    beta = u.T @ (b / kappa)
    et = e / kappa
    # With λ = 1 / (ε η): y/ε = wβ / (w ε + 1/η); solve ||y/ε|| = 1 for log η. Written with
    # exp(-log η) so that no intermediate overflows, whatever the bracket grows to.
    wb = w * beta
    wet = w * et

    def excess(log_eta: float) -> float:
        return math.log(float(scaled_norm(wb / (wet + math.exp(-log_eta)))))

    lo = -math.log(float(scaled_norm(wb))) - 1.0
    hi = lo + 2.0
    log_sat = (
        math.log(1e17) - math.log(float(np.min(w)) * et) if float(np.min(w)) * et > 0 else math.inf
    )
    while excess(hi) <= 0.0:
        if hi > log_sat or hi > 700.0:  # w ε η > 1e17: y equals β to machine precision
            return state.log_peak, state.loc.copy()
        hi += 2.0 * (hi - lo)
    log_eta = brentq(excess, lo, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500)
    denom = wet + math.exp(-log_eta)
    y = et * (wb / denom)
    # β / (w ε η + 1), in whichever form keeps exp() <= 1; the sum may overflow to inf
    # (a Mahalanobis distance beyond 1.8e308: the density underflows, log density -inf).
    q = (
        beta * math.exp(-log_eta) / denom
        if log_eta >= 0
        else beta / (wet * math.exp(log_eta) + 1.0)
    )
    with np.errstate(over="ignore"):
        maha = float(np.sum(w * q**2))
    x = c + kappa * (u @ y)
    return state.log_peak - 0.5 * maha, x


def verify_ball(mixture: LatentMixture, center: Any, eps: float) -> tuple[FloatArray, FloatArray]:
    r"""Per-state maximum log-density over the ε-ball, evaluated, and the maximisers.

    .. math:: \ell_i = \max_{\|a - c\| \le ε} \log f(a \mid Z_i), \quad i \in [N].

    Parameters
    ----------
    mixture : LatentMixture
        Gaussian states only, dimension ``d``.
    center : array_like, shape (d,)
        Centre of the ball (the estimate).
    eps : float >= 0
        Radius.

    Returns
    -------
    log_densities : ndarray, shape (N,)
        ``ℓ_i``; the larger of the exact maximum and the density evaluated at the maximiser.
    argmax : ndarray, shape (N, d)

    Raises
    ------
    ValueError
        As :func:`max_log_density_in_ball`.
    """
    logs, pts = [], []
    for s in mixture.states:
        lf, x = max_log_density_in_ball(s, center, eps)
        # Evaluate the density at the maximiser directly as well and keep the larger value.
        direct = float(s.logpdf(x)[0])
        logs.append(max(lf, direct))
        pts.append(x)
    return np.array(logs), np.stack(pts)


# ----------------------------------------------------------------------------- result types


def _json_float(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


@dataclass(frozen=True)
class WitnessResult:
    """A target whose optimal estimate δ-hallucinates (Definition 4.2), with the evidence.

    Attributes
    ----------
    theorem : str
        ``"5.1"``, ``"5.2"``, ``"5.3"``, ``"5.2.1"`` or ``"C.1"``.
    delta : float
        The tolerance δ in (0, 1].
    mixture : LatentMixture
        The target ``A(X)``: N Gaussian states of dimension d.
    estimate : ndarray, shape (d,)
        The optimal estimate ``A*(X)`` (Lemma B.1 / Appendix C), computed from the mixture.
    eps : float
        Radius of the ball around the estimate that was checked (0: the estimate only).
    log_densities : ndarray, shape (N,)
        ``log max_{||a - A*|| <= eps} f(a | Z_i)`` for each state (``-inf`` where the density
        is below the float64 range).
    argmax : ndarray, shape (N, d)
        Where each maximum is attained.
    as_written : bool
        True for the paper's construction taken literally.
    notes : tuple of str
        What the literal construction gets wrong (empty for the corrected builders).
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

    @property
    def log_delta(self) -> float:
        """``log δ``."""
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
        """``log δ - max_i log density``; non-negative iff the witness holds (``inf`` if every density underflows)."""
        return self.log_delta - float(np.max(self.log_densities))

    def details(self) -> dict[str, Any]:
        """Theorem-specific evidence as JSON-ready values (none for the plain witness)."""
        return {}

    def to_dict(self, *, max_matrix_dim: int = 32) -> dict[str, Any]:
        """Strict-JSON-ready summary: one entry per state with its density and ``log_density``.

        A ``log_density`` below the float64 range is ``None`` with ``log_density_note``
        saying why; covariance factors are listed only when ``d <= max_matrix_dim``.
        """
        states = []
        for i, s in enumerate(self.mixture.states):
            ld = float(self.log_densities[i])
            row: dict[str, Any] = {
                "index": i,
                "weight": float(self.mixture.weights[i]),
                "mean": s.loc.tolist(),
                "density": float(self.densities[i]),
                "log_density": _json_float(ld),
                "argmax": self.argmax[i].tolist(),
                "exceeds_delta": bool(ld > self.log_delta),
            }
            if self.mixture.dim <= max_matrix_dim:
                row["scale_tril"] = s.scale_tril.tolist()
            if not math.isfinite(ld):
                row["log_density_note"] = (
                    "below -1.8e308 (the float64 range): the density underflows to 0"
                )
            states.append(row)
        margin = self.log_margin
        out: dict[str, Any] = {
            "theorem": self.theorem,
            "as_written": self.as_written,
            "delta": self.delta,
            "log_delta": self.log_delta,
            "dim": self.mixture.dim,
            "n_states": self.mixture.n_states,
            "eps": self.eps,
            "estimate": self.estimate.tolist(),
            "hallucinates": self.hallucinates,
            "log_margin": _json_float(margin),
            "states": states,
            "notes": list(self.notes),
        }
        if not math.isfinite(margin):
            out["log_margin_note"] = (
                "every state's log density is below the float64 range, so the margin is unbounded"
            )
        if self.mixture.dim > max_matrix_dim:
            out["scale_tril_note"] = f"covariance factors omitted for d > {max_matrix_dim}"
        det = self.details()
        if det:
            out["details"] = det
        return out


@dataclass(frozen=True, kw_only=True)
class LipschitzWitness(WitnessResult):
    """Theorem 5.3's witness plus one concrete L-Lipschitz estimator and its outputs at the hints.

    Attributes
    ----------
    lipschitz : float
        ``L``.
    hint_bound : float
        ``B_δ = sup_i ||δ_i||``.
    hints : ndarray, shape (N, d)
        ``δ_i = B u_i``, ``u_i`` the unit direction from ``A*(X)`` to ``μ_i``.
    example_outputs : ndarray, shape (N, d)
        ``A(X + δ_i) = A*(X) + L δ_i`` for the estimator pushed as far as allowed toward ``μ_i``.
    example_log_densities : ndarray, shape (N, N)
        ``log f(A(X + δ_i) | Z_j)``, hint ``i`` by state ``j``.
    """

    lipschitz: float
    hint_bound: float
    hints: FloatArray
    example_outputs: FloatArray
    example_log_densities: FloatArray

    @property
    def example_hallucinates(self) -> bool:
        """Every output of the concrete estimator δ-hallucinates under every state."""
        return bool(np.all(self.example_log_densities <= self.log_delta))

    def details(self, *, max_matrix_states: int = 32) -> dict[str, Any]:
        """JSON-ready evidence; the N x N matrix only for ``N <= max_matrix_states`` (else its row maxima)."""
        out: dict[str, Any] = {
            "lipschitz": self.lipschitz,
            "hint_bound": self.hint_bound,
            "hints": self.hints.tolist(),
            "example_outputs": self.example_outputs.tolist(),
            "example_hallucinates": self.example_hallucinates,
        }
        if self.example_log_densities.shape[0] <= max_matrix_states:
            out["example_log_densities"] = [
                [_json_float(v) for v in row] for row in self.example_log_densities.tolist()
            ]
        else:
            out["example_max_log_density"] = [
                _json_float(v) for v in self.example_log_densities.max(axis=1).tolist()
            ]
            out["example_note"] = (
                f"N > {max_matrix_states}: per hint, the largest log density over the states "
                "instead of the N x N matrix"
            )
        return out


@dataclass(frozen=True, kw_only=True)
class CrossEntropyWitness(WitnessResult):
    """Theorem C.1's witness: targets ``N(e_{i mod C}, v I_C)``.

    Attributes
    ----------
    n_classes : int
        ``C``.
    log_variance : float
        ``log v`` of the targets used.
    log_variance_low, log_variance_high : float
        ``log v_lo`` and ``log v_hi``: the density at ``p_X`` is ``<= δ`` exactly for
        ``v ∈ (0, v_lo] ∪ [v_hi, ∞)``.
    """

    n_classes: int
    log_variance: float
    log_variance_low: float
    log_variance_high: float

    def details(self) -> dict[str, Any]:
        return {
            "n_classes": self.n_classes,
            "log_variance": self.log_variance,
            "log_variance_low": self.log_variance_low,
            "log_variance_high": self.log_variance_high,
        }


@dataclass(frozen=True, kw_only=True)
class Theorem51AsWritten(WitnessResult):
    """Section B.1 taken literally.

    Attributes
    ----------
    mean_coordinate : float
        ``m_i = sqrt((-2 ln δ - ln det Σ_i) / 1ᵀΣ_i1)``: every coordinate of ``μ_i``, ``i < N``.
    log_peak_last_state : float
        ``log`` of state N's peak density, ``-d/2 log 2π - 1/2 log det Σ_N``.
    """

    mean_coordinate: float
    log_peak_last_state: float

    def details(self) -> dict[str, Any]:
        return {
            "mean_coordinate": self.mean_coordinate,
            "log_peak_last_state": self.log_peak_last_state,
        }


@dataclass(frozen=True, kw_only=True)
class Theorem52AsWritten(WitnessResult):
    """Section B.3's example taken literally.

    Attributes
    ----------
    optimum_norm : float
        ``||Σ p_i μ_i||``: the proof assumes 0.
    log_density_last_state_at_zero : float
        ``log f(0 | Z_N)``: state N's density at the point the proof calls the optimum.
    """

    optimum_norm: float
    log_density_last_state_at_zero: float

    def details(self) -> dict[str, Any]:
        return {
            "optimum_norm": self.optimum_norm,
            "log_density_last_state_at_zero": self.log_density_last_state_at_zero,
        }


@dataclass(frozen=True, kw_only=True)
class TheoremC1AsWritten(WitnessResult):
    """Appendix C taken literally.

    Attributes
    ----------
    variance : float
        The variance ``d`` used.
    variance_bound : float
        The paper's bound ``-(N-1)/(N ln δ²)``.
    paper_formula_density : float
        The paper's 1-d expression ``(2πd)^{-1/2} exp(-(N-1)/(2dN))``.
    """

    variance: float
    variance_bound: float
    paper_formula_density: float

    def details(self) -> dict[str, Any]:
        return {
            "variance": self.variance,
            "variance_bound": _json_float(self.variance_bound),
            "paper_formula_density": self.paper_formula_density,
        }


@dataclass(frozen=True)
class MultiInputWitness:
    """Corollary 5.2.1: one witness per input ``X_j``.

    Attributes
    ----------
    witnesses : tuple of WitnessResult
        ``witnesses[j]`` is the target and optimal estimate at input ``X_{j+1}``.
    """

    witnesses: tuple[WitnessResult, ...]

    @property
    def hallucinates(self) -> bool:
        """The optimal estimate δ-hallucinates at every input."""
        return all(w.hallucinates for w in self.witnesses)


# ----------------------------------------------------------------------------- helpers


def _weights(weights: Any, n: int) -> FloatArray:
    if weights is None:
        return np.full(n, 1.0 / n)
    w = check_probability_vector(weights, "weights")
    if w.size != n:
        raise ValueError(f"`weights` must have n_states = {n} entries; got {w.size}.")
    if np.any(w <= 0):
        raise ValueError(
            f"`weights` must be positive (every latent state must be possible); got {w.tolist()}."
        )
    return w


def _scale(scale: Any, name: str = "scale") -> float:
    s = check_real(scale, name, low=0.0, low_open=True)
    if not SCALE_MIN <= s <= SCALE_MAX:
        raise ValueError(
            f"`{name}` must be in [{SCALE_MIN:g}, {SCALE_MAX:g}] (float64 range of the factors); got {s:g}."
        )
    return s


def _trils(cov: Any, n: int, dim: int, scale: float) -> list[FloatArray]:
    if cov is None:
        return [scale * np.eye(dim) for _ in range(n)]
    c = check_finite_array(cov, "cov")
    if c.ndim == 2:
        c = np.broadcast_to(c, (n, *c.shape))
    if c.shape != (n, dim, dim):
        raise ValueError(
            f"`cov` must have shape ({dim}, {dim}) or ({n}, {dim}, {dim}); got {np.shape(cov)}."
        )
    out = []
    for i, ci in enumerate(c):
        chol = np.linalg.cholesky(check_spd(ci, f"cov[{i}]"))
        with np.errstate(over="ignore", under="ignore"):
            t = np.asarray(scale * chol, dtype=np.float64)
        diag = np.abs(np.diag(t))
        if not np.all(np.isfinite(t)) or diag.min() < SCALE_MIN or np.abs(t).max() > SCALE_MAX:
            raise ValueError(
                f"`scale` = {scale:g} times the Cholesky factor of `cov[{i}]` leaves [{SCALE_MIN:g}, {SCALE_MAX:g}]; "
                "use a smaller or larger `scale`."
            )
        out.append(t)
    return out


def _max_sd(g: GaussianState) -> float:
    """sqrt(λ_max(Σ)) from the Cholesky factor (no overflow for huge scales)."""
    return float(np.linalg.svd(g.scale_tril, compute_uv=False)[0])


def _far_target(
    delta: float,
    n_states: int,
    dim: int,
    weights: Any,
    scale: float,
    cov: Any,
    eps: float,
    eps_name: str = "eps",
) -> LatentMixture:
    dl = check_delta(delta)
    n, d = check_problem_size(n_states, dim)
    s = _scale(scale)
    e = check_real(eps, eps_name, low=0.0)
    w = _weights(weights, n)
    trils = _trils(cov, w.size, d, s)
    probe = [GaussianState(np.zeros(d), scale_tril=t) for t in trils]
    radii = [math.sqrt(max(region_threshold_sq(g, dl), 0.0)) * _max_sd(g) for g in probe]
    big = 1.01 * max(e + r for r in radii) + s
    k = int(np.argmin(w))
    far = big * (1.0 - w[k]) / w[k]
    if not (math.isfinite(far) and far <= SCALE_MAX):
        raise ValueError(
            f"`scale` = {s:g} with `{eps_name}` = {e:g} and smallest weight {w[k]:g} puts a mean at distance "
            f"{far:g} > {SCALE_MAX:g} (float64 range); use a smaller `scale` or `{eps_name}`, or less skewed `weights`."
        )
    coef = np.full(w.size, -big)
    coef[k] = far
    u = np.full(d, 1.0 / math.sqrt(d))
    return LatentMixture(
        w, [GaussianState(coef[i] * u, scale_tril=trils[i]) for i in range(w.size)]
    )


def _verified(theorem: str, delta: float, mix: LatentMixture, eps: float) -> dict[str, Any]:
    est = mix.mean()
    logs, arg = verify_ball(mix, est, eps)
    return {
        "theorem": theorem,
        "delta": float(delta),
        "mixture": mix,
        "estimate": est,
        "eps": float(eps),
        "log_densities": logs,
        "argmax": arg,
    }


# ----------------------------------------------------------------------------- corrected builders


def theorem_5_1(
    delta: float,
    n_states: int,
    *,
    dim: int = 1,
    weights: Any = None,
    scale: float = 1.0,
    cov: Any = None,
) -> WitnessResult:
    r"""Theorem 5.1: the quadratic-loss optimum ``E[A(X)]`` δ-hallucinates (corrected construction).

    Theorem 5.1 (Existence of δ-Hallucination Under Single Input): there are infinitely many
    distributions of ``A(X)`` and ``Z`` such that the minimiser of the expected quadratic loss
    (Definition 3.1), ``A*(X) = E[A(X)]`` (Lemma B.1), satisfies

    .. math:: f_{A(X; Z_i)}\big(A^*(X)\big) \le δ \quad \text{for every } i \in [N].

    Parameters
    ----------
    delta : float in (0, 1]
        Tolerance δ of Definition 4.2.
    n_states : int, 2 <= N <= MAX_STATES
        Number of latent states.
    dim : int, 1 <= d <= MAX_DIM
        Output dimension ``d_a``.
    weights : array_like, shape (N,), optional
        ``p_i``; positive, summing to 1 (uniform by default).
    scale : float in [1e-300, 1e300]
        Length scale ``s``: covariances are ``s² C_i``.
    cov : array_like, shape (d, d) or (N, d, d), optional
        Shape matrices ``C_i`` (positive definite; identity by default).

    Returns
    -------
    WitnessResult
        ``eps = 0``; ``log_densities[i] = log f(A*(X) | Z_i)``.

    Raises
    ------
    ValueError
        δ outside (0, 1]; N, d or ``N d²`` above the limits; weights not positive or not
        summing to 1; ``cov`` not positive definite or of the wrong shape; a scale outside
        the float64 range (see the module notes).
    TypeError
        A non-integer ``n_states`` or ``dim``.

    Examples
    --------
    >>> theorem_5_1(1e-300, 4, dim=3, scale=1e-50).hallucinates
    True
    """
    mix = _far_target(delta, n_states, dim, weights, scale, cov, 0.0)
    return WitnessResult(**_verified("5.1", delta, mix, 0.0))


def theorem_5_2(
    delta: float,
    n_states: int,
    *,
    eps: float = 0.0,
    dim: int = 1,
    weights: Any = None,
    scale: float = 1.0,
    cov: Any = None,
) -> WitnessResult:
    r"""Theorem 5.2: every estimate within ε of the optimum δ-hallucinates (corrected).

    Theorem 5.2 (Existence of δ-Hallucination on Semi-Optimal Estimators under Single Input):
    there are infinitely many distributions of ``A(X)`` and ``Z`` such that every ``A'`` with

    .. math:: \|A'(X) - A^*(X)\|_2 \le ε \implies
              f_{A(X; Z_i)}\big(A'(X)\big) \le δ \quad \text{for every } i \in [N].

    ``log_densities`` are the exact maxima over the closed ε-ball (:func:`verify_ball`).

    Parameters
    ----------
    delta : float in (0, 1]
        Tolerance δ.
    n_states : int, 2 <= N <= MAX_STATES
        Number of latent states.
    eps : float >= 0
        Radius ε of the ball of near-optimal estimates.
    dim, weights, scale, cov
        As in :func:`theorem_5_1`.

    Returns
    -------
    WitnessResult

    Raises
    ------
    ValueError
        As :func:`theorem_5_1`; ``eps < 0`` or non-finite; an ``eps`` that puts the means
        beyond 1e300.
    TypeError
        A non-integer ``n_states`` or ``dim``.

    Examples
    --------
    >>> theorem_5_2(0.01, 2, eps=3e-201, scale=1e-200).hallucinates
    True
    """
    mix = _far_target(delta, n_states, dim, weights, scale, cov, eps)
    return WitnessResult(**_verified("5.2", delta, mix, eps))


def theorem_5_3(
    delta: float,
    n_states: int,
    *,
    lipschitz: float = 1.0,
    hint_bound: float = 1.0,
    dim: int = 1,
    weights: Any = None,
    scale: float = 1.0,
    cov: Any = None,
) -> LipschitzWitness:
    r"""Theorem 5.3: an L-Lipschitz estimator optimal at X hallucinates at every ``X + δ_i``.

    Theorem 5.3 (Existence of δ-Hallucination at Tilted Input): with hints bounded by
    ``B_δ = sup_i ||δ_i||_2`` and an L-Lipschitz estimator ``A*`` (Definition 3.2), there are
    infinitely many distributions of ``A(X; Z)`` such that

    .. math:: f_{A(X; Z_i)}\big(A^*(X + δ_j)\big) \le δ \quad \text{for all } i, j \in [N].

    With ``||δ_i|| <= B``, ``||A*(X + δ_i) - A*(X)|| <= L B`` (B.8), so the 5.2 witness with
    ``ε = L B`` covers every such estimator. The result also carries a concrete one: hints
    ``δ_i = B u_i`` (``u_i`` the direction from ``A*(X)`` to ``μ_i``) and
    ``A(X + h) = A*(X) + L h``, with every state's density at each ``A(X + δ_i)``.

    Parameters
    ----------
    delta : float in (0, 1]
        Tolerance δ.
    n_states : int, 2 <= N <= MAX_STATES_5_3 (2 048)
        Number of latent states.
    lipschitz : float >= 0
        Lipschitz constant ``L``.
    hint_bound : float >= 0
        Hint norm bound ``B``.
    dim, weights, scale, cov
        As in :func:`theorem_5_1`.

    Returns
    -------
    LipschitzWitness
        ``eps = L B``.

    Raises
    ------
    ValueError
        As :func:`theorem_5_2`, naming ``lipschitz`` or ``hint_bound``.
    TypeError
        A non-integer ``n_states`` or ``dim``.

    Examples
    --------
    >>> w = theorem_5_3(0.1, 3, lipschitz=2.0, hint_bound=0.5)
    >>> w.eps, w.hallucinates, w.example_hallucinates
    (1.0, True, True)
    """
    n_ok = check_int(n_states, "n_states", low=2)
    if n_ok > MAX_STATES_5_3:
        raise ValueError(
            f"`n_states` must be <= {MAX_STATES_5_3} for Theorem 5.3 (its concrete estimator is evaluated at "
            f"N x N points); got {n_ok}."
        )
    lip = check_real(lipschitz, "lipschitz", low=0.0)
    hb = check_real(hint_bound, "hint_bound", low=0.0)
    radius = lip * hb
    if not math.isfinite(radius):
        raise ValueError(f"`lipschitz` * `hint_bound` must be finite; got {lip:g} * {hb:g}.")
    mix = _far_target(
        delta, n_states, dim, weights, scale, cov, radius, eps_name="lipschitz * hint_bound"
    )
    base = _verified("5.3", delta, mix, radius)
    est = base["estimate"]
    diff = mix.component_means() - est
    dirs = diff / scaled_norm(diff, axis=1)[:, None]
    hints = hb * dirs
    outputs = est + lip * hints
    at_out = mix.log_component_pdf(outputs)  # (hint i, state j)
    return LipschitzWitness(
        **base,
        lipschitz=lip,
        hint_bound=hb,
        hints=hints,
        example_outputs=outputs,
        example_log_densities=at_out,
    )


def corollary_5_2_1(
    delta: float,
    n_states: int,
    *,
    n_inputs: int = 3,
    dim: int = 1,
    weights: Any = None,
    scale: float = 1.0,
) -> MultiInputWitness:
    r"""Corollary 5.2.1: inputs ``X_1..X_S``, each with its own Theorem 5.1 witness.

    Corollary 5.2.1 (Existence of δ-Hallucination under Multiple Inputs): for inputs
    ``X_j, j ∈ [S]``, there are infinitely many distributions such that the quadratic-loss
    optimum satisfies

    .. math:: f_{A(X_j; Z_i)}\big(A^*(X_j)\big) \le δ \quad \text{for all } i \in [N],\ j \in [S].

    Input ``j`` (0-based) uses length scale ``s (1 + j)``.

    Parameters
    ----------
    delta : float in (0, 1]
        Tolerance δ.
    n_states : int, 2 <= N <= MAX_STATES
        Number of latent states per input.
    n_inputs : int, 1 <= S <= 1000
        Number of inputs.
    dim, weights, scale
        As in :func:`theorem_5_1` (``scale (1 + j)`` must stay <= 1e300).

    Returns
    -------
    MultiInputWitness

    Raises
    ------
    ValueError
        As :func:`theorem_5_1`; ``n_inputs`` outside [1, 1000].
    TypeError
        A non-integer ``n_states``, ``n_inputs`` or ``dim``.

    Examples
    --------
    >>> corollary_5_2_1(0.01, 2, n_inputs=4).hallucinates
    True
    """
    s_in = check_int(n_inputs, "n_inputs", low=1, high=1000)
    sc = _scale(scale)
    check_problem_size(n_states, dim)
    out = []
    for j in range(s_in):
        r = theorem_5_1(delta, n_states, dim=dim, weights=weights, scale=sc * (1 + j))
        out.append(
            WitnessResult("5.2.1", r.delta, r.mixture, r.estimate, 0.0, r.log_densities, r.argmax)
        )
    return MultiInputWitness(tuple(out))


def _c1_roots(log_delta: float, c: int, dmin2: float) -> tuple[float, float]:
    """``log v_lo <= log v_hi`` with ``h(log v) = log δ`` (both ``log(D²/C)`` if h never exceeds log δ)."""
    target = log_delta - 1e-9 * max(1.0, abs(log_delta))

    def h(logv: float) -> float:
        return -0.5 * c * (LOG_2PI + logv) - 0.5 * dmin2 * math.exp(-logv)

    u_star = math.log(dmin2 / c)
    if h(u_star) <= target:
        return u_star, u_star
    step = 1.0
    while h(u_star - step) > target:
        step *= 2
    u_lo = brentq(lambda u: h(u) - target, u_star - step, u_star, xtol=1e-14)
    step = 1.0
    while h(u_star + step) > target:
        step *= 2
    u_hi = brentq(lambda u: h(u) - target, u_star, u_star + step, xtol=1e-14)
    return u_lo - 1e-12, u_hi + 1e-12


def theorem_c_1(
    delta: float,
    n_states: int,
    *,
    n_classes: int | None = None,
    weights: Any = None,
    scale: float = 1.0,
) -> CrossEntropyWitness:
    r"""Theorem C.1 (cross-entropy), corrected.

    Theorem C.1 (Existence of δ-Hallucination under Cross-Entropy Loss): there are infinitely
    many target distributions such that the minimiser of the expected cross-entropy
    (Definition C.1), ``p_X(t) = E_a q_X^a(t)``, satisfies

    .. math:: f\big(p_X \mid Z = Z_i\big) \le δ \quad \text{for every } i \in [N].

    Targets ``q | Z_i ~ N(e_{i mod C}, v I_C)`` (a proper C-dimensional density); the
    optimum is ``p_X = Σ p_i e_{i mod C}``. With ``D`` the smallest distance from ``p_X`` to
    a vertex, the log density at ``p_X`` is ``h(v) = -C/2 log(2πv) - D²/(2v)``, which rises
    until ``v = D²/C`` and falls after. Let ``v_lo <= v_hi`` be where ``h = log δ``
    (``v_lo = v_hi = D²/C`` when ``h <= log δ`` everywhere); the witness holds exactly for
    ``v ∈ (0, v_lo] ∪ [v_hi, ∞)``. ``scale <= 1`` uses ``v = scale² v_lo`` (concentrated
    targets), ``scale > 1`` uses ``v = scale² v_hi`` (diffuse).

    Parameters
    ----------
    delta : float in (0, 1]
        Tolerance δ.
    n_states : int, 2 <= N <= MAX_STATES
        Number of latent states.
    n_classes : int, optional
        ``C >= 2`` (default N); ``N C² <= MAX_FACTOR_ENTRIES``.
    weights : array_like, shape (N,), optional
        ``p_i`` (uniform by default).
    scale : float > 0
        Multiplies the targets' standard deviation ``sqrt(v_lo)`` or ``sqrt(v_hi)``; the
        result must stay in [1e-300, 1e300].

    Returns
    -------
    CrossEntropyWitness

    Raises
    ------
    ValueError
        As :func:`theorem_5_1`; a ``scale`` whose standard deviation leaves [1e-300, 1e300]
        (the message gives the usable range of ``scale`` for this δ and N).
    TypeError
        A non-integer ``n_states`` or ``n_classes``.

    Examples
    --------
    >>> w = theorem_c_1(0.01, 2)
    >>> round(math.exp(w.log_variance_low), 4), w.hallucinates
    (0.0421, True)
    """
    dl = check_delta(delta)
    n = check_int(n_states, "n_states", low=2)
    c = n if n_classes is None else check_int(n_classes, "n_classes", low=2)
    check_problem_size(n, c, dim_name="n_classes")
    w = _weights(weights, n)
    s = check_real(scale, "scale", low=0.0, low_open=True)
    verts = np.eye(c)[np.arange(w.size) % c]
    p_x = w @ verts
    dmin2 = float(np.min(np.sum((verts - p_x) ** 2, axis=1)))
    u_lo, u_hi = _c1_roots(math.log(dl), c, dmin2)
    u = u_lo if s <= 1 else u_hi
    log_sd = math.log(s) + 0.5 * u
    if not _LOG_SCALE_MIN <= log_sd <= _LOG_SCALE_MAX:
        lo_s = math.exp(max(_LOG_SCALE_MIN - 0.5 * u_lo, -745.0))
        hi_s = math.exp(min(_LOG_SCALE_MAX - 0.5 * u_hi, 709.0))
        raise ValueError(
            f"`scale` = {s:g} gives the targets a standard deviation of about 1e{log_sd / math.log(10):.0f}, "
            f"outside [{SCALE_MIN:g}, {SCALE_MAX:g}] (float64); for delta = {dl:g} and {c} classes use "
            f"`scale` in [{lo_s:.3g}, {hi_s:.3g}]."
        )
    sd = math.exp(log_sd)
    mix = LatentMixture(w, [GaussianState.isotropic(v, sd) for v in verts])
    return CrossEntropyWitness(
        **_verified("C.1", dl, mix, 0.0),
        n_classes=c,
        log_variance=2 * log_sd,
        log_variance_low=u_lo,
        log_variance_high=u_hi,
    )


# ----------------------------------------------------------------------------- as written


def theorem_5_1_as_written(
    delta: float, n_states: int, *, dim: int = 1, weights: Any = None, cov_scale: float = 1.0
) -> Theorem51AsWritten:
    r"""Section B.1 taken literally (the proof of Theorem 5.1).

    .. math::

        μ_i = m_i \mathbf 1,\quad m_i = \sqrt{\frac{-2\ln δ - \ln\det Σ_i}{\mathbf 1^\top Σ_i \mathbf 1}},
        \quad i < N;\qquad μ_N = -\sum_{i<N} \frac{p_i}{p_N} μ_i,\quad Σ_N = δ^{2/d} I,

    with ``Σ_i = cov_scale² I`` for ``i < N``. The proof uses Σ where Σ⁻¹ belongs in ``m_i``
    and ``det(Σ_N)^{-1/2} = δ^{-1}``, not δ; the result's ``notes`` say so.

    Parameters
    ----------
    delta : float in (0, 1]
        Tolerance δ.
    n_states : int, 2 <= N <= MAX_STATES
        Number of latent states.
    dim : int, 1 <= d <= MAX_DIM
        Output dimension.
    weights : array_like, shape (N,), optional
        ``p_i`` (uniform by default).
    cov_scale : float > 0
        Standard deviation of states ``1..N-1``.

    Returns
    -------
    Theorem51AsWritten

    Raises
    ------
    ValueError
        As :func:`theorem_5_1`; a negative radicand (``m_i`` undefined when ``det Σ_i > δ^{-2}``).
    TypeError
        A non-integer ``n_states`` or ``dim``.

    Examples
    --------
    >>> r = theorem_5_1_as_written(0.1, 2, weights=[0.01, 0.99])
    >>> round(float(r.densities[1]), 3), r.hallucinates
    (3.897, False)
    """
    dl = check_delta(delta)
    n, d = check_problem_size(n_states, dim)
    w = _weights(weights, n)
    cs = _scale(cov_scale, "cov_scale")
    numerator = -2 * math.log(dl) - 2 * d * math.log(cs)  # -2 ln δ - ln det Σ_i
    if numerator < 0:
        raise ValueError(
            "as written, m_i = sqrt((-2 ln δ - ln det Σ_i) / 1ᵀΣ_i1) is undefined: the radicand is "
            f"{numerator / d / cs / cs:.6g} < 0 (`cov_scale` = {cs:g} is too large for `delta` = {dl:g})."
        )
    m = math.sqrt(numerator / d) / cs  # 1ᵀΣ_i1 = d cs², without forming cs² (no underflow)
    far = m * max(1.0, float(np.sum(w[:-1])) / float(w[-1]))
    if not far <= SCALE_MAX:
        raise ValueError(
            f"as written, `cov_scale` = {cs:g} puts the means at {far:.3g} > {SCALE_MAX:g} (float64 range); "
            "use a larger `cov_scale` or less skewed `weights`."
        )
    means = [np.full(d, m) for _ in range(w.size - 1)]
    mu_n = -sum(w[i] / w[-1] * means[i] for i in range(w.size - 1))
    states = [GaussianState.isotropic(mu, cs) for mu in means]
    states.append(GaussianState.isotropic(mu_n, dl ** (1.0 / d)))
    mix = LatentMixture(w, states)
    notes = (
        "Sigma_N = delta^(2/d) I gives det(Sigma_N)^(-1/2) = delta^(-1), not delta (B.6).",
        "m_i uses 1^T Sigma 1 where 1^T Sigma^{-1} 1 belongs (B.4).",
    )
    return Theorem51AsWritten(
        **_verified("5.1", dl, mix, 0.0),
        as_written=True,
        notes=notes,
        mean_coordinate=m,
        log_peak_last_state=states[-1].log_peak,
    )


def theorem_5_2_as_written(
    delta: float,
    n_states: int,
    *,
    eps: float = 0.0,
    dim: int = 1,
    weights: Any = None,
    c_const: float = 2.0,
) -> Theorem52AsWritten:
    r"""Section B.3's example taken literally (the proof of Theorem 5.2).

    .. math:: μ_i = C\, i (N - i) \frac{\sqrt{-2\ln δ} + ε}{p_{N-i}} \mathbf 1_{d},\quad Σ_i = I,\quad N \text{ even}.

    For ``i = N`` the factor ``i (N-i)`` is 0, so ``μ_N = 0``. The ball is checked around the
    true optimum ``Σ p_i μ_i`` (Lemma B.1), which is not 0.

    Parameters
    ----------
    delta : float in (0, 1]
        Tolerance δ.
    n_states : int, even, 2 <= N <= MAX_STATES
        Number of latent states.
    eps : float >= 0
        Radius ε.
    dim : int, 1 <= d <= MAX_DIM
        Output dimension.
    weights : array_like, shape (N,), optional
        ``p_i`` (uniform by default).
    c_const : float > 1
        The constant ``C``.

    Returns
    -------
    Theorem52AsWritten

    Raises
    ------
    ValueError
        As :func:`theorem_5_2`; an odd ``n_states``; ``c_const <= 1``.
    TypeError
        A non-integer ``n_states`` or ``dim``.

    Examples
    --------
    >>> theorem_5_2_as_written(0.01, 4, weights=[0.25, 0.4, 0.25, 0.1], eps=0.5).hallucinates
    False
    """
    dl = check_delta(delta)
    n, d = check_problem_size(n_states, dim)
    w = _weights(weights, n)
    if n % 2:
        raise ValueError(
            f"as written, Theorem 5.2's construction needs an even `n_states`; got {n}."
        )
    e = check_real(eps, "eps", low=0.0)
    cc = check_real(c_const, "c_const", low=1.0, low_open=True)
    k = math.sqrt(-2 * math.log(dl)) + e
    coefs = [cc * i * (n - i) * k / float(w[n - i - 1]) for i in range(1, n)]
    if not all(c <= SCALE_MAX for c in coefs):  # also False for inf/nan
        raise ValueError(
            f"`eps` = {e:g} with `c_const` = {cc:g} puts the means beyond {SCALE_MAX:g}; use smaller values."
        )
    means = [np.full(d, c) for c in coefs] + [np.zeros(d)]
    mix = LatentMixture(w, [GaussianState(mu, np.eye(d)) for mu in means])
    notes = (
        "mu_N = 0 because i(N-i) = 0 at i = N, and p_0 is undefined.",
        "The pairing mu_i = -(p_{N-i}/p_i) mu_{N-i} matches i with N-i, so i = N/2 pairs with itself "
        "(forcing mu_{N/2} = 0) and i = N with index 0.",
        "All example means are positive multiples of 1, so sum_i p_i mu_i != 0.",
    )
    return Theorem52AsWritten(
        **_verified("5.2", dl, mix, e),
        as_written=True,
        notes=notes,
        optimum_norm=float(scaled_norm(mix.mean())),
        log_density_last_state_at_zero=float(mix.states[-1].logpdf(np.zeros(d))[0]),
    )


def theorem_c_1_as_written(
    delta: float, n_states: int, *, variance: float | None = None
) -> TheoremC1AsWritten:
    r"""Appendix C taken literally (the proof of Theorem C.1).

    .. math::

        q \mid Z_i \sim \mathcal N(e_i, d),\quad p_i = \frac1N,\quad
        d \le -\frac{N-1}{N \ln δ^2},\quad
        P(p_X \mid Z_i) = \frac{1}{\sqrt{2πd}} \exp\Big(-\frac{N-1}{2dN}\Big) \overset{?}{\le} δ .

    ``d`` is taken at its stated bound unless ``variance`` is given.
    ``paper_formula_density`` is the paper's 1-d expression; ``log_densities`` use the
    proper N-dimensional density of ``N(e_i, d I_N)``.

    Parameters
    ----------
    delta : float in (0, 1)
        Tolerance δ (the bound is undefined at δ = 1 unless ``variance`` is given).
    n_states : int, 2 <= N, N³ <= MAX_FACTOR_ENTRIES
        Number of latent states (= classes).
    variance : float > 0, optional
        The variance ``d`` to use instead of the bound.

    Returns
    -------
    TheoremC1AsWritten

    Raises
    ------
    ValueError
        δ outside (0, 1]; δ = 1 without ``variance``; N above the limits; ``variance <= 0``.
    TypeError
        A non-integer ``n_states``.

    Examples
    --------
    >>> r = theorem_c_1_as_written(0.01, 2)
    >>> round(r.variance_bound, 4), round(r.paper_formula_density, 5), r.hallucinates
    (0.0543, 0.01712, False)
    """
    dl = check_delta(delta)
    n, _ = check_problem_size(n_states, n_states, dim_name="n_states (classes)")
    if dl == 1.0 and variance is None:
        raise ValueError(
            "as written, the variance bound -(N-1)/(N ln δ²) is undefined at `delta` = 1 (ln δ = 0)."
        )
    bound = -(n - 1) / (n * 2 * math.log(dl)) if dl < 1 else math.inf
    v = bound if variance is None else check_real(variance, "variance", low=0.0, low_open=True)
    sd = math.sqrt(v)  # in [1e-162, 1.4e154] for every positive finite float
    mix = LatentMixture(np.full(n, 1.0 / n), [GaussianState.isotropic(e, sd) for e in np.eye(n)])
    with np.errstate(under="ignore"):
        formula = (2 * math.pi * v) ** -0.5 * math.exp(max(-(n - 1) / (2 * v * n), -745.0))
    notes = (
        "The chain's step to delta^2/2 should read delta: at the bound the 1-d formula equals delta/sqrt(2 pi d).",
    )
    return TheoremC1AsWritten(
        **_verified("C.1", dl, mix, 0.0),
        as_written=True,
        notes=notes,
        variance=v,
        variance_bound=bound,
        paper_formula_density=formula,
    )
