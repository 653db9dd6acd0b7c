"""The paper's difflib resemblance (Section 7.2) against hand-computed values."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deltahall.experiments.qa.scoring import (
    embedding_similarity,
    mean_scores,
    ratio,
    reference_baselines,
    resemblance,
    score_record,
)
from deltahall.experiments.qa.truthfulqa import load_truthfulqa

TRUTHFULQA_SMALL = Path(__file__).parent / "fixtures" / "truthfulqa_small.csv"


def test_ratio_hand_computed() -> None:
    # "abcd" vs "abxd": blocks "ab" and "d" -> M = 3, ratio = 2*3 / (4+4).
    assert ratio("ABCD", "abxd") == pytest.approx(0.75)
    # "xyabcd" vs "abxd": "ab" then "d" -> 2*3 / (6+4).
    assert ratio("xyabcd", "abxd") == pytest.approx(0.6)
    assert ratio("ab", "cd") == 0.0
    assert ratio("Cat", "cAT") == 1.0


def test_resemblance_is_max_over_references() -> None:
    assert resemblance("ABCD", ["zzzz", "abxd", "q"]) == pytest.approx(0.75)
    assert resemblance("abcd", ["ABCD"]) == 1.0
    with pytest.raises(ValueError, match="`references` must hold at least one answer"):
        resemblance("abc", [])


def _rows():
    return [
        {
            "answer": "abcd",
            "full_text": "xyabcd",
            "incorrect_answers": ["abxd", "zzzz"],
            "correct_answers": ["abcd"],
        },
        {
            "answer": "ab",
            "full_text": "ab",
            "incorrect_answers": ["cd"],
            "correct_answers": ["AB", "a"],
        },
    ]


def test_mean_scores_and_gap_hand_computed() -> None:
    s = mean_scores(_rows())
    assert s.n == 2
    assert s.incorrect == pytest.approx((0.75 + 0.0) / 2)
    assert s.correct == pytest.approx(1.0)
    assert s.gap == pytest.approx(0.375 - 1.0)
    rec = score_record(_rows())
    # full_text of row 1: "xyabcd" vs "abxd" = 0.6; vs "abcd": "abcd" block -> 2*4/10 = 0.8.
    assert rec["resemblance_incorrect_with_prompt"] == pytest.approx((0.6 + 0.0) / 2)
    assert rec["resemblance_correct_with_prompt"] == pytest.approx((0.8 + 1.0) / 2)
    assert rec["gap_with_prompt"] == pytest.approx(0.3 - 0.9)


def test_missing_text_field_is_an_error() -> None:
    with pytest.raises(ValueError, match="has no 'full_text' field"):
        mean_scores(
            [{"answer": "a", "incorrect_answers": ["b"], "correct_answers": []}], "full_text"
        )
    with pytest.raises(ValueError, match="at least one answer"):
        mean_scores([])


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=30), st.lists(st.text(min_size=0, max_size=30), min_size=1, max_size=4))
def test_resemblance_matches_difflib(answer: str, refs: list[str]) -> None:
    expected = max(difflib.SequenceMatcher(None, answer.lower(), r.lower()).ratio() for r in refs)
    got = resemblance(answer, refs)
    assert got == pytest.approx(expected)
    assert 0.0 <= got <= 1.0


def test_reference_baselines_on_fixture() -> None:
    items = load_truthfulqa(TRUTHFULQA_SMALL)
    rows = {r["text"]: r for r in reference_baselines(items)}
    assert rows["empty answer"]["resemblance_incorrect"] == 0.0
    # Independent recomputation of one row with plain difflib.
    expected = sum(
        max(
            difflib.SequenceMatcher(
                None, f"{it.question} {it.best_answer}".lower(), r.lower()
            ).ratio()
            for r in it.incorrect_answers
        )
        for it in items
    ) / len(items)
    assert rows["question + best answer"]["resemblance_incorrect"] == pytest.approx(expected)
    assert rows["best answer"]["resemblance_correct"] > rows["best answer"]["resemblance_incorrect"]
    assert all(r["n"] == len(items) for r in rows.values())
    # The fixture's incorrect answers restate the question, so the question text alone scores high.
    assert (
        rows["question text"]["resemblance_incorrect"]
        > rows["off-topic answer"]["resemblance_incorrect"]
    )


def test_embedding_similarity_skips_without_sentence_transformers() -> None:
    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        assert embedding_similarity(_rows(), "any-model") is None
    else:  # pragma: no cover - optional dependency present
        pytest.skip("sentence-transformers installed; the skip path is not reachable")
