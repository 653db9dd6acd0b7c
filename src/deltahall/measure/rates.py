"""Rates with uncertainty: Wilson intervals and the one-sided excess-over-floor test.

A δ-hallucination rate measured on ``n`` samples is a binomial proportion; it is
reported with its Wilson score interval (Wilson, 1927), which keeps close to its
nominal coverage even for small ``n`` and rates near 0 or 1, where the normal
(Wald) interval fails. Whether a generator hallucinates *more than real data does*
is a comparison of two proportions: the generated rate against the floor (the
flagged fraction of held-out real samples); it is tested with Fisher's exact test,
one-sided.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from deltahall._validation import check_int, check_real

__all__ = ["CI_METHOD", "EXCESS_TEST", "RateEstimate", "excess_p_value", "rate_estimate", "wilson_interval"]

CI_METHOD = "wilson"
EXCESS_TEST = "fisher_exact_one_sided"


def wilson_interval(k: int, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``k / n``.

    .. math::

        \\frac{\\hat p + \\frac{z^2}{2n} \\pm z\\sqrt{\\frac{\\hat p(1-\\hat p)}{n} + \\frac{z^2}{4n^2}}}
             {1 + z^2/n}

    Examples
    --------
    >>> lo, hi = wilson_interval(0, 10)
    >>> round(lo, 6), round(hi, 4)
    (0.0, 0.2775)
    """
    k = check_int(k, "k", low=0)
    n = check_int(n, "n", low=1)
    if k > n:
        raise ValueError(f"`k` must be <= `n` = {n}; got {k}.")
    check_real(confidence, "confidence", low=0.0, high=1.0, low_open=True, high_open=True)
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + confidence / 2.0))
    p = k / n
    den = 1.0 + z * z / n
    mid = (p + z * z / (2.0 * n)) / den
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / den
    lo, hi = max(0.0, mid - half), min(1.0, mid + half)
    if k == 0:
        lo = 0.0
    if k == n:
        hi = 1.0
    return lo, hi


@dataclass(frozen=True)
class RateEstimate:
    """A flagged count ``k`` out of ``n`` with its Wilson interval."""

    k: int
    n: int
    rate: float
    ci: tuple[float, float]

    def as_dict(self) -> dict[str, object]:
        return {"k": self.k, "n": self.n, "rate": self.rate, "ci": list(self.ci)}


def rate_estimate(k: int, n: int, *, confidence: float = 0.95) -> RateEstimate:
    """``k / n`` with its Wilson interval."""
    lo, hi = wilson_interval(k, n, confidence=confidence)
    return RateEstimate(k=int(k), n=int(n), rate=k / n, ci=(lo, hi))


def excess_p_value(k_gen: int, n_gen: int, k_floor: int, n_floor: int) -> float:
    """One-sided Fisher exact test that the generated flagged rate exceeds the floor.

    Tests :math:`H_0: \\pi_{gen} \\le \\pi_{real}` against :math:`\\pi_{gen} > \\pi_{real}`
    from ``k_gen / n_gen`` flagged generated samples and ``k_floor / n_floor`` flagged
    held-out real samples (conditional on the margins; exact for any sample size).

    Examples
    --------
    >>> round(excess_p_value(30, 100, 10, 100), 5) < 0.001
    True
    >>> excess_p_value(0, 100, 10, 100)
    1.0
    """
    for v, name in ((k_gen, "k_gen"), (n_gen, "n_gen"), (k_floor, "k_floor"), (n_floor, "n_floor")):
        check_int(v, name, low=0)
    if k_gen > n_gen or k_floor > n_floor:
        raise ValueError(f"counts must not exceed totals; got {k_gen}/{n_gen} and {k_floor}/{n_floor}.")
    from scipy.stats import fisher_exact

    table = [[k_gen, n_gen - k_gen], [k_floor, n_floor - k_floor]]
    res = fisher_exact(table, alternative="greater")
    return float(min(1.0, max(0.0, float(res[1]))))
