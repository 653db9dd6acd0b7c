"""deltahall.stats: each function against scipy / scikit-learn, and the conventions at the edges."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

from deltahall import stats


@pytest.mark.parametrize(
    "k,n", [(0, 1), (1, 1), (0, 10), (3, 10), (10, 10), (50, 100), (999, 1000), (7, 200_000)]
)
@pytest.mark.parametrize("confidence", [0.5, 0.95, 0.99])
def test_proportion_ci_is_scipys_wilson(k: int, n: int, confidence: float) -> None:
    ref = sps.binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    np.testing.assert_allclose(
        stats.proportion_ci(k, n, confidence=confidence),
        (ref.low, ref.high),
        rtol=1e-10,
        atol=1e-12,
    )


def test_proportion_edges_are_exact() -> None:
    assert stats.proportion_ci(0, 7)[0] == 0.0
    assert stats.proportion_ci(7, 7)[1] == 1.0
    p = stats.proportion(0, 0)
    assert np.isnan(p.rate) and p.ci == (0.0, 1.0)


def test_wilson_covers_at_its_level() -> None:
    g = np.random.default_rng(0)
    n, p = 60, 0.15
    ks = g.binomial(n, p, size=4000)
    cover = np.mean([lo <= p <= hi for lo, hi in (stats.proportion_ci(int(k), n) for k in ks)])
    assert 0.92 <= cover <= 0.98


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: stats.proportion_ci(5, 3), "`k` must be <= `n` = 3"),
        (lambda: stats.proportion_ci(-1, 3), "`k` must be >= 0"),
        (lambda: stats.proportion_ci(1, 2, confidence=1.0), r"`confidence` must be in \(0, 1\)"),
        (lambda: stats.proportion_ci(1.5, 2), "`k` must be an integer"),
        (lambda: stats.bootstrap_mean_ci([1.0, float("nan")], rng=0), "must be finite"),
        (lambda: stats.bootstrap_mean_ci([], rng=0), "at least one value"),
        (lambda: stats.paired_permutation_test([1.0, 2.0], [1.0], rng=0), "pair up"),
        (lambda: stats.stratified_excess_test([1], [2, 3], [0], [1]), "one entry per stratum"),
        (lambda: stats.detection_scores([True], [True, False]), "same length"),
        (lambda: stats.mixture_excess_test(1, 10, [9, 0], [1], [10, 10]), "one entry per state"),
        (lambda: stats.mixture_excess_test(2, 10, [9, 0], [1, 1], [10, 10]), "not flagged"),
        (lambda: stats.mixture_excess_test(2, 10, [8, 0], [0, 0], [0, 0]), "no held-out"),
    ],
)
def test_refusals(call, match) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_bootstrap_matches_scipy_and_degenerates_cleanly() -> None:
    x = np.random.default_rng(1).exponential(size=40)
    ours = stats.bootstrap_mean_ci(x, rng=2, n_resamples=5000)
    ref = sps.bootstrap(
        (x,), np.mean, n_resamples=5000, method="percentile", random_state=np.random.default_rng(2)
    )
    assert (ours.low, ours.high) == pytest.approx(
        (ref.confidence_interval.low, ref.confidence_interval.high)
    )
    one = stats.bootstrap_mean_ci([3.0], rng=0)
    assert (one.mean, one.low, one.high) == (3.0, 3.0, 3.0)


def test_paired_permutation_exact_matches_brute_force() -> None:
    x = np.array([0.3, 1.2, -0.4, 2.0, 0.9, 1.1])
    y = np.array([0.1, 0.2, 0.0, 1.0, 1.5, 0.3])
    d = x - y
    flips = np.array(list(itertools.product([-1, 1], repeat=d.size)))
    brute = np.mean(np.abs((flips * d).mean(axis=1)) >= abs(d.mean()) - 1e-12)
    t = stats.paired_permutation_test(x, y, rng=0)
    assert t.p_value == pytest.approx(brute) and t.n == 6 and t.low <= t.mean_diff <= t.high


def test_paired_permutation_is_uniform_under_the_null_and_detects_a_shift() -> None:
    g = np.random.default_rng(3)
    ps = np.array(
        [
            stats.paired_permutation_test(
                g.normal(size=20), g.normal(size=20), rng=g, n_resamples=499, n_boot=20
            ).p_value
            for _ in range(200)
        ]
    )
    assert 0.02 <= np.mean(ps <= 0.05) <= 0.10
    base = g.normal(size=50)
    assert (
        stats.paired_permutation_test(base + 0.5 + g.normal(0, 0.3, 50), base, rng=0).p_value
        < 0.001
    )
    assert stats.paired_permutation_test(base, base, rng=0).p_value == 1.0


def test_excess_test_is_fishers() -> None:
    ref = sps.fisher_exact([[30, 70], [10, 90]], alternative="greater")[1]
    assert stats.excess_test(30, 100, 10, 100) == pytest.approx(ref)
    assert stats.excess_test(0, 0, 1, 10) == 1.0


@pytest.mark.parametrize(
    "case", [([30], [100], [10], [100]), ([0], [5], [3], [9]), ([7], [7], [0], [4])]
)
def test_stratified_excess_with_one_stratum_is_fishers(case) -> None:
    kg, ng, kf, nf = (c[0] for c in case)
    assert stats.stratified_excess_test(*case) == pytest.approx(
        stats.excess_test(kg, ng, kf, nf), abs=1e-12
    )


def test_stratified_excess_matches_a_brute_force_sum_of_hypergeometrics() -> None:
    kg, ng, kf, nf = [3, 2], [6, 5], [1, 4], [8, 6]
    dists = []
    for a, b, c, d in zip(kg, ng, kf, nf, strict=True):
        m = a + c
        support = np.arange(max(0, m - d), min(m, b) + 1)
        dists.append((support, sps.hypergeom.pmf(support, b + d, m, b)))
    p = sum(
        pa * pb
        for (sa, pa_), (sb, pb_) in [tuple(dists)]
        for xa, pa in zip(sa, pa_, strict=True)
        for xb, pb in zip(sb, pb_, strict=True)
        if xa + xb >= sum(kg)
    )
    assert stats.stratified_excess_test(kg, ng, kf, nf) == pytest.approx(p)


def test_stratified_excess_does_not_call_one_state_with_a_low_floor_an_excess() -> None:
    # state 0 has a floor of 20 %, state 1 of 0 %; a generator copying state 0 is at its floor.
    pooled = stats.excess_test(40, 200, 20, 200)
    strat = stats.stratified_excess_test([40, 0], [200, 0], [20, 0], [100, 100])
    assert pooled < 0.01 and strat > 0.3


def test_mixture_excess_rejects_a_copied_state_rarely_and_a_real_excess_always() -> None:
    """Floors of 20 % and 2 %: a generator copying either state is at its own floor (H0)."""
    g = np.random.default_rng(9)
    floors = np.array([0.20, 0.02])
    rejected = 0
    reps = 300
    for r in range(reps):
        st = r % 2
        kf = g.binomial(60, floors)
        k = int(g.binomial(80, floors[st]))
        inside = [0, 0]
        inside[st] = 80 - k
        rejected += stats.mixture_excess_test(k, 80, inside, kf.tolist(), [60, 60], seed=r) < 0.05
    assert rejected / reps <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / reps)
    # the same generator with a quarter of its samples hallucinated (all flagged)
    assert stats.mixture_excess_test(22, 80, [0, 58], [12, 1], [60, 60]) < 1e-4
    # nearest states of flagged samples play no part; the seed makes the value reproducible
    a = stats.mixture_excess_test(5, 80, [75, 0], [12, 1], [60, 60], seed=3)
    assert a == stats.mixture_excess_test(5, 80, [75, 0], [12, 1], [60, 60], seed=3) and a > 0.5


def test_detection_scores_and_auroc_match_sklearn() -> None:
    g = np.random.default_rng(4)
    truth = g.random(300) < 0.3
    score = truth + g.normal(0, 0.8, 300)
    assert stats.auroc(score, truth) == pytest.approx(roc_auc_score(truth, score))
    flagged = score > 0.5
    s = stats.detection_scores(flagged, truth)
    from sklearn.metrics import precision_score, recall_score

    assert s.precision == pytest.approx(precision_score(truth, flagged))
    assert s.recall == pytest.approx(recall_score(truth, flagged))
    assert s.false_flag_rate == pytest.approx(np.mean(flagged[~truth]))
    assert np.isnan(stats.auroc([0.1, 0.2], [True, True]))
    assert np.isnan(stats.detection_scores([False, False], [True, False]).precision)
