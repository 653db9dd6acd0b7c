r"""The one statistics module: every interval, test and detection score deltahall reports.

Everything here is a thin, validated wrapper over scipy or scikit-learn, so that the
whole project has **one** interval type and one convention per quantity:

- :func:`proportion` / :func:`proportion_ci`: a rate :math:`k/n` with its Wilson score
  interval (``scipy.stats.binomtest(...).proportion_ci(method="wilson")``). At ``n = 0`` the
  rate is NaN and the interval is ``(0, 1)``, the limit of the Wilson interval: no sample,
  no information. At ``k = 0`` the lower end is exactly 0, at ``k = n`` the upper end 1.
- :func:`bootstrap_mean_ci`: a percentile bootstrap interval of a mean
  (``scipy.stats.bootstrap``).
- :func:`paired_permutation_test`: the paired sign-flip permutation test of a mean
  difference (``scipy.stats.permutation_test`` with ``permutation_type="samples"``; exact
  when :math:`2^n` flips are no more than the resamples asked for), with the bootstrap
  interval of that difference.
- :func:`excess_test`: one-sided Fisher exact test that a generated rate exceeds the floor
  of held-out real samples (``scipy.stats.fisher_exact``), and
  :func:`stratified_excess_test`, its exact stratified form (the conditional test of a
  common odds ratio of 1 across strata: the sum of independent hypergeometric counts,
  computed exactly by convolution).
- :func:`detection_scores`: precision, recall and false-flag rate of boolean flags against
  a truth, and :func:`auroc` (``sklearn.metrics.roc_auc_score``). The positive class is
  always *flagged / hallucinated*; an undefined ratio (no flag, no positive) is NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from deltahall._validation import check_int, check_real

__all__ = [
    "CI_METHOD",
    "EXCESS_TEST",
    "MIXTURE_EXCESS_TEST",
    "STRATIFIED_EXCESS_TEST",
    "DetectionScores",
    "MeanCI",
    "PairedTest",
    "Proportion",
    "auroc",
    "bootstrap_mean_ci",
    "detection_scores",
    "excess_test",
    "mixture_excess_test",
    "paired_permutation_test",
    "proportion",
    "proportion_ci",
    "stratified_excess_test",
]

#: The one proportion interval.
CI_METHOD = "wilson"
EXCESS_TEST = "fisher_exact_one_sided"
STRATIFIED_EXCESS_TEST = "stratified_exact_one_sided"
MIXTURE_EXCESS_TEST = "mixture_matched_posterior_predictive_one_sided"


def _check_counts(k: Any, n: Any, kname: str = "k", nname: str = "n") -> tuple[int, int]:
    n = check_int(n, nname, low=0)
    k = check_int(k, kname, low=0)
    if k > n:
        raise ValueError(f"`{kname}` must be <= `{nname}` = {n}; got {k}.")
    return k, n


def proportion_ci(k: int, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of the proportion ``k / n``.

    Examples
    --------
    >>> lo, hi = proportion_ci(0, 10)
    >>> lo, round(hi, 4)
    (0.0, 0.2775)
    >>> proportion_ci(3, 3)[1], proportion_ci(0, 0)
    (1.0, (0.0, 1.0))
    """
    k, n = _check_counts(k, n)
    check_real(confidence, "confidence", low=0.0, high=1.0, low_open=True, high_open=True)
    if n == 0:
        return (0.0, 1.0)
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    lo = 0.0 if k == 0 else float(max(0.0, ci.low))
    hi = 1.0 if k == n else float(min(1.0, ci.high))
    return (lo, hi)


@dataclass(frozen=True)
class Proportion:
    """``k`` of ``n`` with the rate and its Wilson interval (``rate`` is NaN when ``n = 0``)."""

    k: int
    n: int
    rate: float
    ci: tuple[float, float]
    confidence: float = 0.95


def proportion(k: int, n: int, *, confidence: float = 0.95) -> Proportion:
    """``k / n`` with its Wilson interval.

    Examples
    --------
    >>> p = proportion(5, 10)
    >>> p.rate, tuple(round(c, 4) for c in p.ci)
    (0.5, (0.2366, 0.7634))
    """
    lo, hi = proportion_ci(k, n, confidence=confidence)
    k, n = int(k), int(n)
    return Proportion(
        k=k, n=n, rate=(k / n) if n else float("nan"), ci=(lo, hi), confidence=confidence
    )


def _as_1d(x: Any, name: str) -> npt.NDArray[np.float64]:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"`{name}` must be one-dimensional; got shape {a.shape}.")
    if a.size == 0:
        raise ValueError(f"`{name}` must hold at least one value; got none.")
    if not np.all(np.isfinite(a)):
        raise ValueError(
            f"`{name}` must be finite; got {int((~np.isfinite(a)).sum())} non-finite value(s)."
        )
    return a


@dataclass(frozen=True)
class MeanCI:
    """A mean over ``n`` values with its percentile-bootstrap interval."""

    mean: float
    low: float
    high: float
    n: int


def bootstrap_mean_ci(
    x: Any, *, rng: Any, n_resamples: int = 2000, confidence: float = 0.95
) -> MeanCI:
    """Percentile bootstrap interval of the mean of ``x`` (``scipy.stats.bootstrap``).

    A single value, or values that are all equal, give the degenerate interval at the mean.

    Examples
    --------
    >>> r = bootstrap_mean_ci([1.0, 2.0, 3.0, 4.0], rng=0)
    >>> r.mean, r.low <= r.mean <= r.high
    (2.5, True)
    """
    a = _as_1d(x, "x")
    check_int(n_resamples, "n_resamples", low=1)
    check_real(confidence, "confidence", low=0.0, high=1.0, low_open=True, high_open=True)
    mean = float(a.mean())
    if a.size == 1 or np.ptp(a) == 0.0:
        return MeanCI(mean, mean, mean, int(a.size))
    from scipy.stats import bootstrap

    res = bootstrap(
        (a,),
        np.mean,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method="percentile",
        vectorized=True,
        random_state=np.random.default_rng(rng),
    )
    return MeanCI(
        mean, float(res.confidence_interval.low), float(res.confidence_interval.high), int(a.size)
    )


@dataclass(frozen=True)
class PairedTest:
    """Mean of ``x - y`` over pairs, its bootstrap interval and a two-sided permutation p-value."""

    mean_diff: float
    low: float
    high: float
    p_value: float
    n: int
    test: str = "paired sign-flip permutation (two-sided)"


def paired_permutation_test(
    x: Any,
    y: Any,
    *,
    rng: Any,
    n_resamples: int = 9999,
    n_boot: int = 2000,
    confidence: float = 0.95,
) -> PairedTest:
    r"""Paired sign-flip permutation test of :math:`\bar d`, :math:`d_j = x_j - y_j`.

    Under the null that the two members of each pair are exchangeable, each :math:`d_j` is
    as likely as :math:`-d_j`. ``scipy.stats.permutation_test`` enumerates all :math:`2^n`
    sign patterns when that is at most ``n_resamples``, and otherwise draws ``n_resamples``
    of them (p-value :math:`(1 + \#) / (1 + B)`).

    Examples
    --------
    >>> t = paired_permutation_test([1, 2, 3, 4, 5, 6], [0, 1, 2, 3, 4, 5], rng=0)
    >>> round(t.mean_diff, 3), round(t.p_value, 4)
    (1.0, 0.0312)
    """
    a, b = _as_1d(x, "x"), _as_1d(y, "y")
    if a.size != b.size:
        raise ValueError(f"`x` and `y` must pair up one to one; got lengths {a.size} and {b.size}.")
    check_int(n_resamples, "n_resamples", low=1)
    g = np.random.default_rng(rng)
    d = a - b
    if np.all(d == 0.0):
        p = 1.0
    else:
        from scipy.stats import permutation_test

        def stat(u: Any, v: Any, axis: int = -1) -> Any:
            return np.mean(u - v, axis=axis)

        res = permutation_test(
            (a, b),
            stat,
            permutation_type="samples",
            alternative="two-sided",
            n_resamples=n_resamples,
            vectorized=True,
            random_state=g,
        )
        p = float(min(1.0, res.pvalue))
    ci = bootstrap_mean_ci(d, rng=g, n_resamples=n_boot, confidence=confidence)
    return PairedTest(float(d.mean()), ci.low, ci.high, p, int(d.size))


def excess_test(k_gen: int, n_gen: int, k_floor: int, n_floor: int) -> float:
    """One-sided Fisher exact p-value of "generated rate > floor" (1.0 when either n is 0).

    Examples
    --------
    >>> excess_test(30, 100, 10, 100) < 0.001
    True
    >>> excess_test(0, 100, 10, 100)
    1.0
    """
    k_gen, n_gen = _check_counts(k_gen, n_gen, "k_gen", "n_gen")
    k_floor, n_floor = _check_counts(k_floor, n_floor, "k_floor", "n_floor")
    if n_gen == 0 or n_floor == 0:
        return 1.0
    from scipy.stats import fisher_exact

    res = fisher_exact(
        [[k_gen, n_gen - k_gen], [k_floor, n_floor - k_floor]], alternative="greater"
    )
    return float(min(1.0, max(0.0, float(res[1]))))


def stratified_excess_test(
    k_gen: Sequence[int], n_gen: Sequence[int], k_floor: Sequence[int], n_floor: Sequence[int]
) -> float:
    r"""Exact one-sided test that generated rates exceed the floor *within* strata.

    Stratum :math:`i` has :math:`k_i` of :math:`n_i` generated samples flagged and
    :math:`f_i` of :math:`m_i` held-out real samples. Conditional on each stratum's margins,
    under :math:`H_0` (no excess in any stratum: a common odds ratio of 1) :math:`k_i` is
    hypergeometric and independent across strata; the p-value is
    :math:`\Pr[\sum_i K_i \ge \sum_i k_i]`, the sum's law computed exactly by convolving the
    hypergeometric pmfs (the exact form of the Cochran–Mantel–Haenszel test). With one
    stratum it equals :func:`excess_test`. Strata with no generated or no real sample carry
    no information and are skipped.

    Examples
    --------
    >>> round(stratified_excess_test([30], [100], [10], [100]), 10) == round(excess_test(30, 100, 10, 100), 10)
    True
    >>> stratified_excess_test([5, 0], [50, 0], [5, 1], [50, 50])  # one stratum, at its floor
    0.6...
    """
    arrays = [list(v) for v in (k_gen, n_gen, k_floor, n_floor)]
    if len({len(a) for a in arrays}) != 1:
        raise ValueError("the four per-stratum count lists must have one entry per stratum.")
    from scipy.stats import hypergeom

    # the law of the sum over its support [offset, offset + len(dist)): each stratum's support has at
    # most n_floor + 1 points, so a million generated samples cost no more than a thousand
    dist = np.ones(1)
    offset = 0
    observed = 0
    for i, (kg, ng, kf, nf) in enumerate(zip(*arrays, strict=True)):
        kg, ng = _check_counts(kg, ng, f"k_gen[{i}]", f"n_gen[{i}]")
        kf, nf = _check_counts(kf, nf, f"k_floor[{i}]", f"n_floor[{i}]")
        if ng == 0 or nf == 0:
            continue
        total, flagged = ng + nf, kg + kf
        lo, hi = max(0, flagged - nf), min(flagged, ng)
        support = np.arange(lo, hi + 1)
        dist = np.convolve(dist, hypergeom.pmf(support, total, flagged, ng))
        offset += lo
        observed += kg
    if observed == 0:
        return 1.0
    p = float(dist[max(0, observed - offset) :].sum() / dist.sum())
    return float(min(1.0, max(0.0, p)))


def mixture_excess_test(
    k_gen: int,
    n_gen: int,
    inside_gen: Sequence[int],
    k_floor: Sequence[int],
    n_floor: Sequence[int],
    *,
    draws: int = 20_000,
    seed: int = 0,
) -> float:
    r"""One-sided test that a generator is flagged more often than real data *of its own states*.

    :math:`H_0`: the generated samples are real samples of the reference states, in unknown
    proportions :math:`w` (a generator that reproduces one state exactly is such a mixture). Its
    flagged rate is then :math:`r(w, f) = \sum_i w_i f_i`, with :math:`f_i` state :math:`i`'s
    floor (the flagged share of its held-out real samples, counted by their *true* state:
    ``k_floor[i]`` of ``n_floor[i]``). The proportions come from the generated samples that are
    *not* flagged, by nearest state (``inside_gen[i]``), corrected for each state's own flag loss:
    :math:`w_i \propto u_i / (1 - \bar f_i)`, :math:`\bar f_i = (k_i + 1/2)/(m_i + 1)`; flagged samples enter only through ``k_gen``, so a
    hallucination's arbitrary nearest state does not matter. The p-value is posterior
    predictive: :math:`\Pr[K \ge k]` with :math:`K \sim \mathrm{Binomial}(n, \sum_i w_i F_i)` and
    :math:`F_i \sim \mathrm{Beta}(k_i + 1/2, m_i - k_i + 1/2)` (Jeffreys), by ``draws`` seeded
    Monte-Carlo draws. Posterior-predictive p-values are conservative under :math:`H_0`. With no
    sample inside, the proportions are the floor's own (``n_floor``).

    Examples
    --------
    >>> # one state reproduced exactly: flagged at its own floor, not an excess
    >>> mixture_excess_test(8, 100, [92, 0], [8, 1], [100, 100]) > 0.3
    True
    >>> mixture_excess_test(30, 100, [70, 0], [8, 1], [100, 100]) < 1e-3
    True
    """
    k, n = _check_counts(k_gen, n_gen, "k_gen", "n_gen")
    u = np.asarray([int(v) for v in inside_gen], dtype=np.float64)
    kf = [int(v) for v in k_floor]
    nf = [int(v) for v in n_floor]
    if not (len(u) == len(kf) == len(nf)):
        raise ValueError("`inside_gen`, `k_floor` and `n_floor` must have one entry per state.")
    for i, (a, b) in enumerate(zip(kf, nf, strict=True)):
        _check_counts(a, b, f"k_floor[{i}]", f"n_floor[{i}]")
    if (u < 0).any() or u.sum() > n - k:
        raise ValueError(
            f"`inside_gen` must count the {n - k} generated samples that are not flagged; "
            f"got {int(u.sum())}."
        )
    check_int(draws, "draws", low=100)
    if n == 0 or k == 0:
        return 1.0
    keep = np.asarray(nf) > 0
    if not keep.any():
        raise ValueError("the floor has no held-out real sample in any state.")
    kf_a = np.asarray(kf, dtype=np.float64)[keep]
    nf_a = np.asarray(nf, dtype=np.float64)[keep]
    u_a = u[keep]
    if u_a.sum() == 0:
        w = nf_a / nf_a.sum()  # nothing inside: the floor's own proportions
    else:
        w = u_a / (1.0 - (kf_a + 0.5) / (nf_a + 1.0))  # posterior-mean flag loss
        w /= w.sum()
    from scipy.stats import binom

    rng = np.random.default_rng([int(seed), 23])
    F = rng.beta(kf_a + 0.5, nf_a - kf_a + 0.5, size=(int(draws), kf_a.size))
    r = np.clip(F @ w, 0.0, 1.0)
    return float(min(1.0, max(0.0, float(np.mean(binom.sf(k - 1, n, r))))))


@dataclass(frozen=True)
class DetectionScores:
    """Flags scored against a truth; positive = flagged / hallucinated."""

    precision: float
    recall: float
    false_flag_rate: float
    n_flagged: int
    n_positive: int
    n: int


def detection_scores(flagged: npt.ArrayLike, truth: npt.ArrayLike) -> DetectionScores:
    """Precision, recall and false-flag rate of boolean ``flagged`` against ``truth``.

    Examples
    --------
    >>> s = detection_scores([True, True, False, False], [True, False, True, False])
    >>> s.precision, s.recall, s.false_flag_rate
    (0.5, 0.5, 0.5)
    """
    p, t = np.asarray(flagged, dtype=bool).ravel(), np.asarray(truth, dtype=bool).ravel()
    if p.shape != t.shape:
        raise ValueError(
            f"`flagged` and `truth` must have the same length; got {p.size} and {t.size}."
        )
    tp = int(np.sum(p & t))
    fp = int(np.sum(p & ~t))
    n_pos, n_flag, n_neg = int(t.sum()), int(p.sum()), int((~t).sum())
    nan = float("nan")
    return DetectionScores(
        precision=tp / n_flag if n_flag else nan,
        recall=tp / n_pos if n_pos else nan,
        false_flag_rate=fp / n_neg if n_neg else nan,
        n_flagged=n_flag,
        n_positive=n_pos,
        n=int(p.size),
    )


def auroc(score: npt.ArrayLike, truth: npt.ArrayLike) -> float:
    """Area under the ROC curve of ``score`` (larger = more likely hallucinated) against ``truth``.

    NaN when ``truth`` holds a single class.

    Examples
    --------
    >>> auroc([0.1, 0.4, 0.35, 0.8], [False, False, True, True])
    0.75
    """
    s = np.asarray(score, dtype=np.float64).ravel()
    t = np.asarray(truth, dtype=bool).ravel()
    if s.shape != t.shape:
        raise ValueError(
            f"`score` and `truth` must have the same length; got {s.size} and {t.size}."
        )
    if not np.all(np.isfinite(s)):
        raise ValueError("`score` must be finite.")
    if t.all() or not t.any():
        return float("nan")
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(t, s))
