r"""The paper's constructions taken literally (Sections B.1, B.3 and Appendix C).

Each ``*_as_written`` builder follows the proof's construction as printed and then *verifies*
Definition 4.2 on it exactly as the corrected builders of :mod:`deltahall.theory.witnesses` do,
so a construction that fails is shown failing with numbers; ``notes`` on the result say what the
printed proof gets wrong (see ``docs/theory.md``).

Examples
--------
>>> theorem_5_1_as_written(0.1, 2, weights=[0.01, 0.99]).hallucinates
False
>>> theorem_c_1_as_written(0.01, 2).hallucinates
False
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from deltahall._validation import check_delta, check_real
from deltahall.theory.mixtures import GaussianState, LatentMixture, check_problem_size, scaled_norm
from deltahall.theory.witnesses import (
    SCALE_MAX,
    WitnessResult,
    check_scale,
    check_weights,
    verified,
)

__all__ = [
    "Theorem51AsWritten",
    "Theorem52AsWritten",
    "TheoremC1AsWritten",
    "theorem_5_1_as_written",
    "theorem_5_2_as_written",
    "theorem_c_1_as_written",
]


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
    w = check_weights(weights, n)
    cs = check_scale(cov_scale, "cov_scale")
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
        **verified("5.1", dl, mix, 0.0),
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
    w = check_weights(weights, n)
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
        **verified("5.2", dl, mix, e),
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
        **verified("C.1", dl, mix, 0.0),
        as_written=True,
        notes=notes,
        variance=v,
        variance_bound=bound,
        paper_formula_density=formula,
    )
