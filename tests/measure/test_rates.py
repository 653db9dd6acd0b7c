"""Wilson intervals (against scipy, and their coverage) and the excess test."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest, fisher_exact

from deltahall.measure.rates import excess_p_value, rate_estimate, wilson_interval


@pytest.mark.parametrize(("k", "n"), [(0, 1), (0, 10), (3, 10), (10, 10), (17, 250), (499, 1000), (1, 100000)])
def test_wilson_matches_scipy(k: int, n: int) -> None:
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    np.testing.assert_allclose(wilson_interval(k, n), (ci.low, ci.high), rtol=1e-10, atol=1e-12)


def test_wilson_coverage_of_a_known_binomial() -> None:
    rng = np.random.default_rng(0)
    for p, n in ((0.1, 50), (0.3, 200), (0.02, 400)):
        ks = rng.binomial(n, p, 3000)
        covers = {int(k): lo <= p <= hi for k in np.unique(ks) for lo, hi in [wilson_interval(int(k), n)]}
        cover = np.mean([covers[int(k)] for k in ks])
        assert 0.925 <= cover <= 0.975, (p, n, cover)


def test_excess_p_value_is_fishers_one_sided() -> None:
    for kg, ng, kf, nf in ((30, 100, 10, 100), (5, 50, 5, 50), (0, 10, 3, 30)):
        ref = fisher_exact([[kg, ng - kg], [kf, nf - kf]], alternative="greater")[1]
        assert excess_p_value(kg, ng, kf, nf) == pytest.approx(ref)
    assert excess_p_value(50, 100, 5, 100) < 1e-9 < excess_p_value(5, 100, 50, 100)


def test_errors() -> None:
    with pytest.raises(ValueError, match="`n` must be >= 1; got 0"):
        wilson_interval(0, 0)
    with pytest.raises(ValueError, match="`k` must be <= `n` = 3; got 4"):
        rate_estimate(4, 3)
    with pytest.raises(ValueError, match="counts must not exceed totals"):
        excess_p_value(5, 4, 0, 1)
