"""The text δ-measure: unit behaviour on hand-made similarities, and known truth with real MiniLM weights."""

from __future__ import annotations

import numpy as np
import pytest

from deltahall.experiments.qa import textdelta as td


def test_state_similarities_are_cosines_of_each_row_with_its_own_references() -> None:
    y = np.array([[1.0, 0.0], [0.0, 3.0]])
    refs = np.array([[[2.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [0.0, -1.0]]])
    s = td.state_similarities(y, refs)
    assert s == pytest.approx(np.array([[1.0, 0.0], [np.sqrt(0.5), -1.0]]))
    with pytest.raises(ValueError, match="`references` must have shape"):
        td.state_similarities(y, refs[:1])
    with pytest.raises(ValueError, match="all-zero row"):
        td.state_similarities(np.zeros((1, 2)), refs[:1])


def test_calibrate_tau_is_the_percentile_and_checks_it() -> None:
    v = np.linspace(0.0, 1.0, 101)
    assert td.calibrate_tau(v, 10) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="`percentile` must be"):
        td.calibrate_tau(v, 100)
    with pytest.raises(ValueError, match="at least one calibration value"):
        td.calibrate_tau([], 10)


def test_plain_rule_flags_only_answers_far_from_every_state() -> None:
    sims = np.array([[0.9, 0.1], [0.1, 0.9], [0.8, 0.8], [0.2, 0.3]])
    assert td.flagged(sims, 0.5).tolist() == [False, False, False, True]


def test_blend_aware_rule_also_flags_answers_close_to_both_states() -> None:
    sims = np.array([[0.9, 0.1], [0.1, 0.9], [0.8, 0.78], [0.2, 0.3]])
    assert td.flagged_margin(sims, 0.5, 0.2).tolist() == [False, False, True, True]
    cal = td.Calibration(tau=0.5, tau_margin=0.5, mu=0.2, percentile=10.0, n=1)
    assert td.split_counts(sims, cal) == {"near_a1": 1, "near_a2": 1, "near_both": 1, "neither": 1}
    # With a negative margin threshold an answer still counts for one state only.
    assert sum(td.split_counts(sims, td.Calibration(0.0, 0.0, -0.5, 10.0, 1)).values()) == len(sims)
    with pytest.raises(ValueError, match="`rule` must be 'plain' or 'margin'"):
        cal.flags(sims, "other")


def test_calibrated_floor_is_about_p_on_fresh_draws() -> None:
    g = np.random.default_rng(0)
    own = g.normal(0.8, 0.05, size=4000)
    other = own - g.normal(0.4, 0.1, size=4000)
    sims = np.stack([own, other], axis=1)
    cal = td.calibrate(own[:2000], td.margins(sims)[:2000, 0], 10.0)
    assert cal.flags(sims[2000:], "plain").mean() == pytest.approx(0.10, abs=0.02)
    assert 0.05 <= cal.flags(sims[2000:], "margin").mean() <= 0.11


def test_blends_and_dropout() -> None:
    assert td.joined_blend("a b.", "c d") == "a b. c d"
    assert td.interleaved_blend("a b c", "x y") == "a x b y c"
    kept = td.word_dropout("one two three four five six", rate=0.5, rng=0)
    assert kept == td.word_dropout("one two three four five six", rate=0.5, rng=0)
    assert set(kept.split()) <= set("one two three four five six".split())
    assert td.word_dropout("solo", rate=0.99, rng=1) == "solo"


def test_rate_has_a_wilson_interval() -> None:
    r = td.Rate.of([True, False, False, False])
    assert (r.k, r.n, r.rate) == (1, 4, 0.25)
    assert r.low < 0.25 < r.high


def test_calibration_split_is_seeded_and_two_sided() -> None:
    m = td.calibration_split(10, rng=3)
    assert m.sum() == 5 and (m == td.calibration_split(10, rng=3)).all()
    assert 1 <= td.calibration_split(2, fraction=0.9, rng=0).sum() <= 1


@pytest.fixture(scope="module")
def minilm():  # type: ignore[no-untyped-def]
    pytest.importorskip("sentence_transformers")
    from deltahall.models import load_embedder

    return load_embedder("@minilm")


def test_known_truth_with_real_minilm(minilm) -> None:  # type: ignore[no-untyped-def]
    """References inside; blends flagged more than either answer; off-topic almost always (60 questions)."""
    from deltahall.experiments.qa.dataset import load_dataset

    pairs = [r.answers for r in load_dataset(None)[:60]]
    res = td.known_truth_check(minilm.embed, pairs, rng=0)
    m, p = res.rates_margin, res.rates
    for ref in ("reference a1", "reference a2"):
        assert p[ref].rate == 0.0 and m[ref].rate <= 0.05
    for blend in ("joined blend", "interleaved blend"):
        assert m[blend].rate > max(m["reference a1"].rate, m["reference a2"].rate) + 0.5
        assert m[blend].low > m["held-out in-state draw"].high  # beyond the floor, intervals apart
    assert m["off-topic answer"].rate >= 0.95 and p["off-topic answer"].rate >= 0.95
    assert m["held-out in-state draw"].rate <= 0.3
    # the plain max-cosine rule does not see joined blends: they are close to both answers
    assert p["joined blend"].rate < 0.1
