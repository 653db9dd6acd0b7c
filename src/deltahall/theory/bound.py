r"""Theorem 6.1: the hallucination-probability lower bound, exactly as stated, and its ceiling.

The setting (Definition 6.1, Assumption 6.1): state ``i`` has a within-state
law around a random conditional mean ``μ_i``; the ``μ_i`` are independent
with common mean ``μ_0``. The optimal estimate is ``A* = Σ p_i μ_i``
(Lemma B.1) and it δ-hallucinates iff ``A* ∉ U_i^δ`` for all ``i``. The bound
needs only the moments of the means and the covering radius ``r`` (Definition 6.3);
the laws of the means and a Monte-Carlo ``P_H^δ`` to hold it against are in
:mod:`deltahall.theory.montecarlo`.

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
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize_scalar

from deltahall._validation import (
    check_finite_array,
    check_int,
    check_probability_vector,
    check_real,
)

__all__ = [
    "BoundResult",
    "StateBound",
    "supremum_of_stated_bound",
    "theorem_6_1_bound",
]

FloatArray = npt.NDArray[np.float64]


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
