"""The open-ended QA dataset: schema, validator bounds, the packaged file."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from deltahall.experiments.qa.dataset import (
    ANSWER_PAIR_RATIO,
    QUESTION_DUP_RATIO,
    TRUTHFULQA_OVERLAP_RATIO,
    DatasetError,
    load_dataset,
    normalise,
    packaged_path,
    validate,
)
from deltahall.experiments.qa.truthfulqa import load_truthfulqa

FIXTURES = Path(__file__).parent / "fixtures"
TQ = [it.question for it in load_truthfulqa(FIXTURES / "truthfulqa_small.csv")]
REAL_TRUTHFULQA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "TruthfulQA.csv"


def _problems(name: str, truthfulqa: list[str] | None = TQ) -> list:
    with pytest.raises(DatasetError) as info:
        validate(FIXTURES / name, truthfulqa_questions=truthfulqa)
    return info.value.problems


def test_good_fixture_validates() -> None:
    rows = validate(FIXTURES / "open_qa_small.jsonl", truthfulqa_questions=TQ)
    assert len(rows) == 8
    assert rows[2].id == "oq-0003" and rows[2].line == 3
    assert len([p for r in rows for p in r.pairs()]) == 16


def test_bounds_are_the_documented_ones() -> None:
    assert (QUESTION_DUP_RATIO, ANSWER_PAIR_RATIO, TRUTHFULQA_OVERLAP_RATIO) == (0.9, 0.6, 0.8)


def test_malformed_rows() -> None:
    probs = _problems("bad_malformed.jsonl")
    by_line = {p.line: p for p in probs}
    assert set(by_line) == {2, 3, 4, 5, 6}
    assert all(p.kind == "malformed" for p in probs)
    assert "not valid JSON" in by_line[2].message
    assert "must be a JSON object" in by_line[3].message
    assert "missing key(s) ['answers']" in by_line[4].message and by_line[4].id == "oq-0004"
    assert "unknown key(s) ['source']" in by_line[5].message
    assert "`answers` must be a list of strings" in by_line[6].message


def test_one_answer_gets_a_clear_error() -> None:
    with pytest.raises(
        DatasetError,
        match=r"line 2, id 'oq-0002': \[answer-count\] `answers` must hold exactly 2 answers; got 1\.",
    ):
        validate(FIXTURES / "bad_one_answer.jsonl")


def test_three_answers_rejected() -> None:
    (p,) = _problems("bad_three_answers.jsonl")
    assert p.kind == "answer-count" and "got 3" in p.message


def test_empty_strings() -> None:
    probs = _problems("bad_empty.jsonl")
    assert [(p.line, p.kind) for p in probs] == [(1, "empty"), (2, "empty"), (3, "empty")]
    assert "`question` must be a non-empty string" in probs[0].message
    assert "`answers[1]`" in probs[1].message
    assert "`id`" in probs[2].message


def test_duplicate_id() -> None:
    (p,) = _problems("bad_duplicate_id.jsonl")
    assert (p.kind, p.line, p.id) == ("duplicate-id", 2, "oq-0001")
    assert "line 1" in p.message


def test_duplicate_and_near_duplicate_questions() -> None:
    probs = _problems("bad_duplicate_question.jsonl")
    assert {p.kind for p in probs} == {"duplicate-question"}
    flagged = {p.id for p in probs}
    assert flagged == {"oq-0002", "oq-0003"}  # exact after normalisation; near (ratio 0.94)
    assert "oq-0004" not in flagged


def test_near_identical_answers() -> None:
    (p,) = _problems("bad_similar_answers.jsonl")
    assert p.kind == "similar-answers" and p.id == "oq-0001"
    assert f"> {ANSWER_PAIR_RATIO}" in p.message


def test_truthfulqa_overlap_exact_and_near() -> None:
    probs = _problems("bad_truthfulqa_overlap.jsonl")
    assert {p.kind for p in probs} == {"truthfulqa-overlap"}
    assert {p.id for p in probs} == {"oq-0001", "oq-0002", "oq-0003"}
    # Without TruthfulQA questions, the same file is fine.
    assert len(validate(FIXTURES / "bad_truthfulqa_overlap.jsonl")) == 4


def test_error_lists_every_problem_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"has 5 problem\(s\)"):
        validate(FIXTURES / "bad_malformed.jsonl")
    with pytest.raises(FileNotFoundError, match="`data` file not found"):
        validate(tmp_path / "nope.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DatasetError, match="no rows"):
        validate(empty)


def test_normalise() -> None:
    assert normalise("  What's   THE capital?! ") == "what s the capital"


@pytest.mark.skipif(not packaged_path().is_file(), reason="packaged dataset not written yet")
def test_packaged_dataset_validates() -> None:
    rows = load_dataset()
    assert len(rows) == 300
    assert sum(len(r.pairs()) for r in rows) == 600
    assert len({r.id for r in rows}) == 300
    assert len(Counter(r.topic for r in rows)) >= 10  # varied topics
    # Each line is one JSON object with exactly the schema keys.
    for line in packaged_path().read_text(encoding="utf-8").splitlines():
        assert set(json.loads(line)) == {"id", "topic", "question", "answers"}


@pytest.mark.skipif(
    not (packaged_path().is_file() and REAL_TRUTHFULQA.is_file()),
    reason="needs the packaged dataset and ../shared/data/TruthfulQA.csv",
)
def test_packaged_dataset_has_no_truthfulqa_overlap() -> None:
    tq = [it.question for it in load_truthfulqa(REAL_TRUTHFULQA)]
    assert len(tq) == 817
    assert len(validate(truthfulqa_questions=tq)) == 300
    assert len(validate("@open-qa")) == 300


def test_qa_validate_defaults_to_the_packaged_alias(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from deltahall.cli.main import main

    assert main(["qa", "validate", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and out["questions"] == 300 and out["source"].endswith("open_qa.jsonl")
