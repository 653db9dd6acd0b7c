r"""Uncertainty for the four-arm QA experiment: bootstrap over questions, paired tests, Wilson.

The unit of resampling is the **question**: a model's score on one TruthfulQA
question (averaged over seeds when there are several) is one observation, and the
arms are compared on the same questions, so comparisons are paired.

- :func:`bootstrap_mean_ci`: percentile bootstrap 95 % interval of a mean over questions;
- :func:`paired_test`: a **paired sign-flip permutation test** of the mean per-question
  difference (two-sided; under the null the sign of each question's difference is
  exchangeable), together with a percentile bootstrap interval of that mean difference;
- :func:`wilson_interval`: Wilson score interval of a binomial rate (the δ-hallucination rates).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from deltahall._validation import check_int, check_real


def _as_1d(x: Any, name: str) -> npt.NDArray[np.float64]:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"`{name}` must be one-dimensional; got shape {a.shape}.")
    if a.size == 0:
        raise ValueError(f"`{name}` must hold at least one value; got none.")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"`{name}` must be finite; got {int((~np.isfinite(a)).sum())} non-finite value(s).")
    return a


@dataclass(frozen=True)
class MeanCI:
    """A mean over ``n`` questions with its percentile-bootstrap interval."""

    mean: float
    low: float
    high: float
    n: int


def bootstrap_mean_ci(x: Any, *, rng: Any, n_boot: int = 2000, level: float = 0.95) -> MeanCI:
    """Percentile bootstrap interval of the mean of ``x`` (one value per question).

    Parameters
    ----------
    x : array-like, shape (n,)
        Per-question scores.
    rng : int or numpy Generator
        Randomness of the resampling.
    n_boot : int
        Bootstrap resamples.
    level : float
        Coverage of the interval, in (0, 1).

    Returns
    -------
    MeanCI

    Examples
    --------
    >>> r = bootstrap_mean_ci([1.0, 2.0, 3.0, 4.0], rng=0)
    >>> r.mean, r.low <= r.mean <= r.high
    (2.5, True)
    """
    a = _as_1d(x, "x")
    check_int(n_boot, "n_boot", low=1)
    check_real(level, "level", low=0.0, high=1.0, low_open=True, high_open=True)
    g = np.random.default_rng(rng)
    idx = g.integers(0, a.size, size=(n_boot, a.size))
    means = a[idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return MeanCI(float(a.mean()), float(lo), float(hi), int(a.size))


@dataclass(frozen=True)
class PairedTest:
    """Mean of ``x - y`` over paired questions, its bootstrap interval and a permutation p-value.

    ``test`` names the test: ``"paired sign-flip permutation (two-sided)"``.
    """

    mean_diff: float
    low: float
    high: float
    p_value: float
    n: int
    test: str = "paired sign-flip permutation (two-sided)"


def paired_test(x: Any, y: Any, *, rng: Any, n_perm: int = 10000, n_boot: int = 2000,
                level: float = 0.95) -> PairedTest:
    r"""Paired sign-flip permutation test of :math:`\bar d`, :math:`d_j = x_j - y_j`.

    Under the null hypothesis that the two arms are exchangeable on each question,
    every :math:`d_j` is as likely to be :math:`-d_j`; the p-value is
    :math:`(1 + \#\{|\bar d^{*}| \ge |\bar d|\}) / (1 + B)` over ``n_perm`` random
    sign flips (exact enumeration of all :math:`2^n` flips when that is fewer).

    Parameters
    ----------
    x, y : array-like, shape (n,)
        Scores of two arms on the same questions, in the same order.
    rng : int or numpy Generator
    n_perm, n_boot : int
        Random sign flips, bootstrap resamples of the mean difference.

    Raises
    ------
    ValueError
        If ``x`` and ``y`` differ in length.

    Examples
    --------
    >>> t = paired_test([1, 2, 3, 4, 5, 6], [0, 1, 2, 3, 4, 5], rng=0)
    >>> round(t.mean_diff, 3), round(t.p_value, 4)
    (1.0, 0.0312)
    """
    a, b = _as_1d(x, "x"), _as_1d(y, "y")
    if a.size != b.size:
        raise ValueError(f"`x` and `y` must pair up question by question; got lengths {a.size} and {b.size}.")
    check_int(n_perm, "n_perm", low=1)
    g = np.random.default_rng(rng)
    d = a - b
    n = d.size
    observed = abs(d.mean())
    tol = 1e-12 * max(1.0, observed)
    if 2 ** n <= n_perm:
        signs = ((np.arange(2 ** n)[:, None] >> np.arange(n)[None, :]) & 1) * 2 - 1
        stats = np.abs((signs * d).mean(axis=1))
        p = float(np.mean(stats >= observed - tol))
    else:
        signs = g.choice(np.array([-1.0, 1.0]), size=(n_perm, n))
        stats = np.abs((signs * d).mean(axis=1))
        p = float((1 + np.sum(stats >= observed - tol)) / (1 + n_perm))
    ci = bootstrap_mean_ci(d, rng=g, n_boot=n_boot, level=level)
    return PairedTest(float(d.mean()), ci.low, ci.high, p, n)


def wilson_interval(k: int, n: int, *, level: float = 0.95) -> tuple[float, float]:
    r"""Wilson score interval of a binomial rate :math:`k/n`.

    .. math::

        \frac{\hat p + z^2/2n \pm z\sqrt{\hat p(1-\hat p)/n + z^2/4n^2}}{1 + z^2/n}

    Returns ``(nan, nan)`` when ``n == 0``.

    Examples
    --------
    >>> lo, hi = wilson_interval(0, 10)
    >>> round(lo, 4), round(hi, 4)
    (0.0, 0.2775)
    """
    check_int(k, "k", low=0)
    check_int(n, "n", low=0)
    if k > n:
        raise ValueError(f"`k` must be <= `n`; got k={k}, n={n}.")
    check_real(level, "level", low=0.0, high=1.0, low_open=True, high_open=True)
    if n == 0:
        return (float("nan"), float("nan"))
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + level / 2.0))
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if k == 0 else max(0.0, centre - half)  # exact ends (no rounding residue)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return (lo, hi)
