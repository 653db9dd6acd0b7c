r"""The corrected witnesses for Theorems 5.1, 5.2, 5.3, Corollary 5.2.1 and Theorem C.1.

Each builder returns a target (a :class:`LatentMixture` of Gaussian states)
together with its optimal estimate, and *verifies* the δ-hallucination of
Definition 4.2,

.. math:: f_{A(X; Z_i)}(A^*(X)) \le δ \quad \text{for every } i \in [N],

by evaluating every state's density -- at the estimate (5.1, C.1), or its
maximum over the whole ε-ball around the estimate (5.2, 5.3), found by exact
maximisation (:func:`deltahall.theory.ball.max_log_density_in_ball`). Nothing
is taken from the formula that chose the parameters.

The paper's constructions taken literally are in :mod:`deltahall.theory.as_written`
(they share this module's result type and argument checks).

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
from deltahall.theory.ball import verify_ball
from deltahall.theory.mixtures import (
    LOG_2PI,
    GaussianState,
    LatentMixture,
    check_problem_size,
    scaled_norm,
)
from deltahall.theory.regions import covering_radius

__all__ = [
    "MAX_STATES_5_3",
    "SCALE_MAX",
    "SCALE_MIN",
    "CrossEntropyWitness",
    "LipschitzWitness",
    "MultiInputWitness",
    "WitnessResult",
    "corollary_5_2_1",
    "theorem_5_1",
    "theorem_5_2",
    "theorem_5_3",
    "theorem_c_1",
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


# ----------------------------------------------------------------------------- result types


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
# check_weights, check_scale and verified are shared with deltahall.theory.as_written.


def check_weights(weights: Any, n: int) -> FloatArray:
    """``weights`` as N positive probabilities (uniform when None); the error names ``weights``."""
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


def check_scale(scale: Any, name: str = "scale") -> float:
    """A length scale in ``[SCALE_MIN, SCALE_MAX]``; the error names ``name``."""
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
    s = check_scale(scale)
    e = check_real(eps, eps_name, low=0.0)
    w = check_weights(weights, n)
    trils = _trils(cov, w.size, d, s)
    probe = [GaussianState(np.zeros(d), scale_tril=t) for t in trils]
    radii = [covering_radius(g, dl).radius for g in probe]  # U_i^δ ⊂ B(μ_i, r_i), Definition 6.3
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


def verified(theorem: str, delta: float, mix: LatentMixture, eps: float) -> dict[str, Any]:
    """The fields of a :class:`WitnessResult`: the optimum of ``mix`` and every state's density
    maximum over the ``eps``-ball around it, evaluated (:func:`~deltahall.theory.ball.verify_ball`)."""
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
    return WitnessResult(**verified("5.1", delta, mix, 0.0))


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
    return WitnessResult(**verified("5.2", delta, mix, eps))


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
    base = verified("5.3", delta, mix, radius)
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
    sc = check_scale(scale)
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
    w = check_weights(weights, n)
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
        **verified("C.1", dl, mix, 0.0),
        n_classes=c,
        log_variance=2 * log_sd,
        log_variance_low=u_lo,
        log_variance_high=u_hi,
    )
