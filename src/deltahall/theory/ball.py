r"""The ball maximiser: the largest Gaussian density within ε of a point (Theorems 5.2 and 5.3).

Theorems 5.2 and 5.3 claim that *every* estimate within ε of the optimum δ-hallucinates. The
witnesses check that claim by the exact maximum of each state's density over the closed ball
(:func:`max_log_density_in_ball`, a trust-region problem solved through its secular equation),
not by sampling points of the ball; :func:`verify_ball` does it for every state of a mixture.

Examples
--------
>>> from deltahall.theory.mixtures import GaussianState, LatentMixture
>>> mix = LatentMixture([0.5, 0.5], [GaussianState([-3.0], [[1.0]]), GaussianState([3.0], [[1.0]])])
>>> logs, where = verify_ball(mix, [0.0], 1.0)
>>> where.ravel().tolist()
[-1.0, 1.0]
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import brentq

from deltahall._validation import check_finite_array, check_real
from deltahall.theory.mixtures import GaussianState, LatentMixture, scaled_norm

__all__ = ["max_log_density_in_ball", "verify_ball"]

FloatArray = npt.NDArray[np.float64]


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
