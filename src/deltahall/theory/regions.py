"""Regions: U_i^δ (Definition 6.2), HCDR membership, HDR thresholds (Appendix A), covering radii (Definition 6.3).

* ``U_i^δ = {a : f(a | Z_i) > δ}``; the HCDR at level δ is their union, so an
  estimate is outside the HCDR exactly when it δ-hallucinates (Remark 6.1).
* The highest-density region of mass ``m`` of a law ``f`` is ``{a : f(a) >= c_m}``
  where ``c_m`` is the ``(1 - m)``-quantile of ``f(Y)``, ``Y ~ f`` (Hyndman 1996).
  For a Gaussian, ``log c_m = log peak - χ²_d(m) / 2`` exactly; for any other
  law it is estimated by sampling, with a stated standard error.
* For a Gaussian, ``U_i^δ`` is the ellipsoid ``(a-μ)ᵀΣ⁻¹(a-μ) < t`` with
  ``t = 2 (log peak - log δ)``, so the minimal covering radius about ``μ_i`` is
  ``r_i = sqrt(t λ_max(Σ))`` (``0`` when ``U_i^δ`` is empty).

Examples
--------
>>> from deltahall.theory.mixtures import GaussianState
>>> g = GaussianState([0.0, 0.0], [[1.0, 0.0], [0.0, 4.0]])
>>> round(covering_radius(g, 0.01).radius, 4)
4.0735
>>> round(hdr_threshold(g, 0.9).mass, 2)
0.9
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

from deltahall._validation import check_delta, check_int, check_real
from deltahall.stats import Proportion, proportion
from deltahall.theory.estimators import DeltaTest
from deltahall.theory.mixtures import GaussianState, LatentMixture, as_points

__all__ = [
    "CoveringRadius",
    "HDRThreshold",
    "covering_radius",
    "hdr_mass",
    "hdr_threshold",
    "in_hcdr",
    "in_state_region",
    "region_threshold_sq",
    "sample_state_region",
]

FloatArray = npt.NDArray[np.float64]


def in_state_region(
    mixture: LatentMixture, x: Any, *, delta: float, state: int
) -> npt.NDArray[np.bool_]:
    r"""Membership of each row of ``x`` in the high conditional density region of one state (Definition 6.2).

    .. math:: U_i^δ = \{a : f(a \mid Z_i) > δ\}.

    Parameters
    ----------
    mixture : LatentMixture
        The target.
    x : array_like, shape (n, d)
        Points.
    delta : float in (0, 1]
        Tolerance δ.
    state : int in [0, N)
        The state ``i`` (0-based).

    Returns
    -------
    ndarray of bool, shape (n,)

    Raises
    ------
    ValueError
        δ outside (0, 1], ``state`` out of range, non-finite ``x``.

    Examples
    --------
    >>> mix = LatentMixture([0.5, 0.5], [GaussianState([-3.0], [[1.0]]), GaussianState([3.0], [[1.0]])])
    >>> in_state_region(mix, [[-3.0], [3.0]], delta=0.05, state=0).tolist()
    [True, False]
    """
    d = check_delta(delta)
    i = check_int(state, "state", low=0, high=mixture.n_states - 1)
    return mixture.states[i].logpdf(as_points(x, mixture.dim)) > math.log(d)


def in_hcdr(mixture: LatentMixture, x: Any, *, delta: float) -> npt.NDArray[np.bool_]:
    r"""Membership in the HCDR, the complement of δ-hallucination (Definition 6.2, Remark 6.1).

    .. math:: a \in \bigcup_{i \in [N]} U_i^δ \iff \max_i f(a \mid Z_i) > δ .

    Parameters
    ----------
    mixture : LatentMixture
        The target.
    x : array_like, shape (n, d)
        Points.
    delta : float in (0, 1]
        Tolerance δ.

    Returns
    -------
    ndarray of bool, shape (n,)

    Raises
    ------
    ValueError
        δ outside (0, 1], non-finite ``x``.

    Examples
    --------
    >>> mix = LatentMixture([0.5, 0.5], [GaussianState([-3.0], [[1.0]]), GaussianState([3.0], [[1.0]])])
    >>> in_hcdr(mix, [[0.0], [3.0]], delta=0.05).tolist()
    [False, True]
    """
    return ~DeltaTest(mixture, delta, n_threads=1).hallucinates(x)


def region_threshold_sq(state: GaussianState, delta: float) -> float:
    r"""The squared Mahalanobis radius of a Gaussian state's ``U^δ`` (Definition 6.2).

    .. math:: U^δ = \{a : (a-μ)^\top Σ^{-1} (a-μ) < t\},\qquad t = 2(\log\text{peak} - \log δ).

    Parameters
    ----------
    state : GaussianState
        The law ``N(μ, Σ)``.
    delta : float in (0, 1]
        Tolerance δ.

    Returns
    -------
    float
        ``t``; ``t <= 0`` means ``U^δ`` is empty (the peak density is at most δ).

    Raises
    ------
    ValueError
        δ outside (0, 1].

    Examples
    --------
    >>> round(region_threshold_sq(GaussianState([0.0], [[1.0]]), 0.1), 6)
    2.767293
    """
    return 2.0 * (state.log_peak - math.log(check_delta(delta)))


@dataclass(frozen=True)
class CoveringRadius:
    """Minimal covering radius ``r_i`` of Definition 6.3.

    Attributes
    ----------
    radius : float
        ``r_i``.
    exact : bool
        True for Gaussian states; otherwise ``radius`` is the largest distance from the
        mean among ``n_samples`` sampled points that fell in ``U_i^δ`` -- a lower estimate.
    n_samples : int
        Draws used (0 when exact).
    """

    radius: float
    exact: bool
    n_samples: int


def covering_radius(
    state: Any, delta: float, *, rng: Any = None, n_samples: int = 200_000
) -> CoveringRadius:
    r"""The minimal covering radius of Definition 6.3.

    .. math:: r_i = \inf\{r \ge 0 : U_i^δ \subset B(μ_i, r)\} = \sqrt{t\, λ_{\max}(Σ_i)} \text{ (Gaussian)} .

    Parameters
    ----------
    state : GaussianState or any conditional law
        The law; a non-Gaussian one needs ``sample``, ``logpdf`` and ``mean``.
    delta : float in (0, 1]
        Tolerance δ.
    rng : seed or Generator, optional
        Used only for non-Gaussian laws.
    n_samples : int >= 1
        Draws, only for non-Gaussian laws.

    Returns
    -------
    CoveringRadius

    Raises
    ------
    ValueError
        δ outside (0, 1], ``n_samples < 1``.

    Examples
    --------
    >>> round(covering_radius(GaussianState([0.0], [[4.0]]), 0.1).radius, 6)
    2.350318
    """
    dl = check_delta(delta)
    if isinstance(state, GaussianState):
        t = region_threshold_sq(state, dl)
        if t <= 0:
            return CoveringRadius(0.0, True, 0)
        sd_max = float(np.linalg.svd(state.scale_tril, compute_uv=False)[0])  # sqrt(λ_max(Σ))
        return CoveringRadius(math.sqrt(t) * sd_max, True, 0)
    n = check_int(n_samples, "n_samples", low=1)
    gen = np.random.default_rng(rng)
    pts = state.sample(n, gen)
    inside = state.logpdf(pts) > math.log(dl)
    mu = np.asarray(state.mean(), dtype=np.float64)
    r = float(np.max(np.linalg.norm(pts[inside] - mu, axis=1))) if inside.any() else 0.0
    return CoveringRadius(r, False, n)


def sample_state_region(state: GaussianState, delta: float, *, n: int, rng: Any) -> FloatArray:
    """Points drawn uniformly from the ellipsoid ``U^δ`` of a Gaussian state (Definition 6.2).

    Parameters
    ----------
    state : GaussianState
        The law.
    delta : float in (0, 1]
        Tolerance δ.
    n : int >= 0
        Number of points.
    rng : seed or Generator
        Randomness.

    Returns
    -------
    ndarray, shape (n, d)
        Empty ``(0, d)`` when ``U^δ`` is empty.

    Raises
    ------
    ValueError
        δ outside (0, 1], ``n < 0``.

    Examples
    --------
    >>> g = GaussianState([0.0], [[1.0]])
    >>> pts = sample_state_region(g, 0.1, n=100, rng=0)
    >>> bool(np.all(g.logpdf(pts) > np.log(0.1)))
    True
    """
    t = region_threshold_sq(state, delta)
    n = check_int(n, "n", low=0)
    if t <= 0:
        return np.empty((0, state.dim))
    gen = np.random.default_rng(rng)
    z = gen.standard_normal((n, state.dim))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    rad = gen.random(n) ** (1.0 / state.dim)
    return state.loc + (math.sqrt(t) * rad[:, None] * z) @ state.scale_tril.T


@dataclass(frozen=True)
class HDRThreshold:
    """Density threshold of the HDR of a given mass (Appendix A).

    Attributes
    ----------
    log_threshold : float
        ``log c_m``; the HDR is ``{a : log f(a) >= log_threshold}``.
    mass : float
        The requested mass ``m``.
    exact : bool
        True for the chi-square formula (Gaussian), False for Monte-Carlo.
    n_samples : int
    mass_std_error : float
        Standard error of the mass actually enclosed by the estimated threshold,
        ``sqrt(m (1 - m) / n)`` (0 when exact).
    log_threshold_ci : tuple of float
        Order-statistic confidence interval for ``log c_m`` at ``confidence``.
    """

    log_threshold: float
    mass: float
    exact: bool
    n_samples: int
    mass_std_error: float
    log_threshold_ci: tuple[float, float]


def hdr_threshold(
    law: Any, mass: float, *, rng: Any = None, n_samples: int = 200_000, confidence: float = 0.95
) -> HDRThreshold:
    r"""Threshold of the highest-density region of mass ``mass`` (Appendix A; Hyndman 1996).

    .. math:: \text{HDR}_m = \{a : f(a) \ge c_m\},\qquad \Pr_{Y \sim f}[f(Y) \ge c_m] = m .

    Exact for :class:`GaussianState` (``log c_m = log peak - χ²_d(m)/2``); otherwise by
    sampling ``n_samples`` draws from ``law`` (anything with ``sample`` and ``logpdf``,
    e.g. a :class:`LatentMixture`).

    Parameters
    ----------
    law : GaussianState or any law with ``sample`` and ``logpdf``
        The density ``f``.
    mass : float in (0, 1)
        ``m``.
    rng : seed or Generator, optional
        Randomness (sampling path only).
    n_samples : int >= 10
        Draws (sampling path only).
    confidence : float in (0, 1)
        Level of the order-statistic interval for ``log c_m``.

    Returns
    -------
    HDRThreshold

    Raises
    ------
    ValueError
        ``mass`` or ``confidence`` outside (0, 1), ``n_samples < 10``.

    Examples
    --------
    >>> round(hdr_threshold(GaussianState([0.0], [[1.0]]), 0.95).log_threshold, 6)
    -2.839668
    """
    m = check_real(mass, "mass", low=0.0, high=1.0, low_open=True, high_open=True)
    conf = check_real(confidence, "confidence", low=0.0, high=1.0, low_open=True, high_open=True)
    if isinstance(law, GaussianState):
        lt = law.log_peak - 0.5 * float(stats.chi2.ppf(m, law.dim))
        return HDRThreshold(lt, m, True, 0, 0.0, (lt, lt))
    n = check_int(n_samples, "n_samples", low=10)
    gen = np.random.default_rng(rng)
    draws = law.sample(n, gen)
    pts = draws[0] if isinstance(draws, tuple) else draws
    logf = np.sort(np.asarray(law.logpdf(pts), dtype=np.float64))
    q = 1.0 - m
    k = q * n
    z = float(stats.norm.ppf(0.5 + conf / 2))
    half = z * math.sqrt(n * m * q)
    lo, hi = int(max(0, math.floor(k - half))), int(min(n - 1, math.ceil(k + half)))
    lt = float(np.quantile(logf, q))
    return HDRThreshold(lt, m, False, n, math.sqrt(m * q / n), (float(logf[lo]), float(logf[hi])))


def hdr_mass(
    law: Any,
    log_threshold: float,
    *,
    rng: Any = None,
    n_samples: int = 200_000,
    confidence: float = 0.95,
) -> Proportion:
    r"""Monte-Carlo mass of a density super-level set (Appendix A), with its Wilson interval.

    .. math:: m = \Pr_{Y \sim f}[\log f(Y) \ge \log c].

    Parameters
    ----------
    law : any law with ``sample`` and ``logpdf``
        The density ``f``.
    log_threshold : float
        ``log c``.
    rng : seed or Generator, optional
        Randomness.
    n_samples : int >= 1
        Draws.
    confidence : float in (0, 1)
        Level of the interval (:func:`deltahall.stats.proportion`, Wilson).

    Returns
    -------
    Proportion
        ``k`` draws of ``n`` inside the set, ``rate = k / n`` and its Wilson interval ``ci``.

    Raises
    ------
    ValueError
        ``n_samples < 1``; ``confidence`` outside (0, 1).

    Examples
    --------
    >>> g = GaussianState([0.0], [[1.0]])
    >>> m = hdr_mass(g, hdr_threshold(g, 0.9).log_threshold, rng=0, n_samples=20_000)
    >>> m.ci[0] <= 0.9 <= m.ci[1]
    True
    """
    n = check_int(n_samples, "n_samples", low=1)
    gen = np.random.default_rng(rng)
    draws = law.sample(n, gen)
    pts = draws[0] if isinstance(draws, tuple) else draws
    k = int(np.count_nonzero(np.asarray(law.logpdf(pts)) >= log_threshold))
    return proportion(k, n, confidence=confidence)
