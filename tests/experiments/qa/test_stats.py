"""Bootstrap intervals, the paired sign-flip permutation test and the Wilson interval."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from deltahall.experiments.qa.stats import bootstrap_mean_ci, paired_test, wilson_interval


def test_bootstrap_interval_covers_the_true_mean_about_95_percent() -> None:
    g = np.random.default_rng(0)
    hits = 0
    for _ in range(300):
        x = g.normal(1.0, 2.0, size=40)
        ci = bootstrap_mean_ci(x, rng=g, n_boot=1000)
        hits += ci.low <= 1.0 <= ci.high
    # percentile bootstrap at n=40 slightly under-covers; 300 trials: sd of the rate ~0.013
    assert 0.89 <= hits / 300 <= 0.98


def test_bootstrap_matches_scipy_percentile_interval() -> None:
    from scipy.stats import bootstrap

    x = np.random.default_rng(1).exponential(size=60)
    ours = bootstrap_mean_ci(x, rng=2, n_boot=20000)
    ref = bootstrap((x,), np.mean, n_resamples=20000, method="percentile", rng=3).confidence_interval
    assert ours.low == pytest.approx(ref.low, abs=0.02)
    assert ours.high == pytest.approx(ref.high, abs=0.02)
    assert ours.mean == pytest.approx(x.mean())


def test_bootstrap_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="`x` must be finite"):
        bootstrap_mean_ci([1.0, float("nan")], rng=0)
    with pytest.raises(ValueError, match="`x` must hold at least one value"):
        bootstrap_mean_ci([], rng=0)
    with pytest.raises(ValueError, match="`level` must be"):
        bootstrap_mean_ci([1.0, 2.0], rng=0, level=1.5)


def test_paired_test_exact_enumeration_matches_brute_force() -> None:
    x = np.array([0.3, -0.1, 0.5, 0.2, 0.05, 0.4, -0.2])
    y = np.zeros_like(x)
    d = x - y
    obs = abs(d.mean())
    brute = np.mean([abs((np.array(s) * d).mean()) >= obs - 1e-12 for s in itertools.product([-1, 1], repeat=d.size)])
    t = paired_test(x, y, rng=0)
    assert t.p_value == pytest.approx(brute)
    assert t.mean_diff == pytest.approx(d.mean())
    assert "permutation" in t.test


def test_paired_test_detects_a_shift_and_not_noise() -> None:
    g = np.random.default_rng(4)
    base = g.normal(size=50)
    shifted = paired_test(base + 0.5 + g.normal(0, 0.3, 50), base, rng=0, n_perm=4000)
    null = paired_test(base + g.normal(0, 0.3, 50), base, rng=0, n_perm=4000)
    assert shifted.p_value < 0.001 and shifted.low > 0
    assert null.p_value > 0.05 and null.low < 0 < null.high


def test_paired_test_p_values_are_uniform_under_the_null() -> None:
    g = np.random.default_rng(5)
    ps = np.array([paired_test(g.normal(size=20), g.normal(size=20), rng=g, n_perm=400, n_boot=50).p_value
                   for _ in range(200)])
    assert 0.02 <= np.mean(ps < 0.05) <= 0.10


def test_paired_test_needs_pairs() -> None:
    with pytest.raises(ValueError, match="must pair up question by question"):
        paired_test([1.0, 2.0], [1.0], rng=0)


def test_wilson_known_values_and_edges() -> None:
    lo, hi = wilson_interval(5, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.2366, 0.7634)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert all(np.isnan(wilson_interval(0, 0)))
    with pytest.raises(ValueError, match="`k` must be <= `n`"):
        wilson_interval(3, 2)


def test_wilson_covers_the_true_rate() -> None:
    g = np.random.default_rng(6)
    p, n = 0.1, 60
    ks = g.binomial(n, p, size=2000)
    cover = np.mean([lo <= p <= hi for lo, hi in (wilson_interval(int(k), n) for k in ks)])
    assert 0.92 <= cover <= 0.98
