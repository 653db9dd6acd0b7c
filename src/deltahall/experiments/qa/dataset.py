"""The open-ended question dataset of Section 7.2: schema, loader and validator.

The paper fine-tunes on "300 open-ended questions with 2 possible answers" (600
question-answer pairs). We ship our own dataset in the same shape as JSON Lines,
one object per line::

    {"id": "oq-0001", "topic": "cooking",
     "question": "What is a good way to keep fresh basil from wilting?",
     "answers": ["Stand the stems in a glass of water ...", "Blend the leaves with oil ..."]}

Schema (every key required, no other key allowed):

``id``        non-empty string, unique in the file.
``topic``     non-empty string (a free label used to check topic variety).
``question``  non-empty string; no two questions may be (near-)duplicates.
``answers``   a list of exactly 2 non-empty strings that differ clearly.

Validator bounds (the constants below, all difflib ``SequenceMatcher.ratio``):

- two questions are near-duplicates when the ratio of their normalised text
  (lower-cased, punctuation removed, whitespace collapsed) exceeds
  :data:`QUESTION_DUP_RATIO` = 0.9, or the normalised texts are equal;
- an answer pair is near-identical when the ratio of the lower-cased answers
  exceeds :data:`ANSWER_PAIR_RATIO` = 0.6;
- a question overlaps TruthfulQA when its normalised text equals a TruthfulQA
  question's, or their ratio exceeds :data:`TRUTHFULQA_OVERLAP_RATIO` = 0.8.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

QUESTION_DUP_RATIO = 0.9
ANSWER_PAIR_RATIO = 0.6
TRUTHFULQA_OVERLAP_RATIO = 0.8
REQUIRED_KEYS = ("id", "topic", "question", "answers")
N_ANSWERS = 2

_PUNCT = re.compile(r"[^\w\s]")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class QARow:
    """One question with its two answers (one line of the JSONL file)."""

    id: str
    topic: str
    question: str
    answers: tuple[str, str]
    line: int = 0

    def pairs(self) -> list[tuple[str, str]]:
        """The (question, answer) training pairs of this row."""
        return [(self.question, a) for a in self.answers]


@dataclass(frozen=True)
class Problem:
    """One defect found by the validator, located by line number and id."""

    line: int | None
    id: str | None
    kind: str
    message: str

    def __str__(self) -> str:
        where = []
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.id is not None:
            where.append(f"id {self.id!r}")
        prefix = f"{', '.join(where)}: " if where else ""
        return f"{prefix}[{self.kind}] {self.message}"


class DatasetError(ValueError):
    """The dataset file breaks the schema or a validator bound; ``problems`` lists every defect."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = list(problems)
        shown = "\n  ".join(str(p) for p in self.problems[:20])
        more = f"\n  ... and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
        super().__init__(f"dataset {source} has {len(self.problems)} problem(s):\n  {shown}{more}")


def normalise(text: str) -> str:
    """Lower-case, drop punctuation, collapse whitespace (used for duplicate checks)."""
    return _SPACE.sub(" ", _PUNCT.sub(" ", text.lower())).strip()


#: The data alias of the packaged dataset (:data:`deltahall.models.registry.DATA_ALIASES`).
PACKAGED = "@open-qa"


def packaged_path() -> Path:
    """Path of the packaged dataset ``deltahall/data/open_qa.jsonl``."""
    return Path(str(resources.files("deltahall") / "data" / "open_qa.jsonl"))


def dataset_path(spec: str | os.PathLike[str]) -> Path:
    """The file a ``data`` value names: :data:`PACKAGED` is the packaged dataset, else a path."""
    return packaged_path() if spec == PACKAGED else Path(spec)


def parse_jsonl(text: str) -> tuple[list[QARow], list[Problem]]:
    """Parse JSONL text into rows; schema violations become :class:`Problem` s (never raised)."""
    rows: list[QARow] = []
    problems: list[Problem] = []
    # Lines end at "\n" only: U+2028 and friends are legal inside JSON strings.
    for lineno, raw in enumerate(text.split("\n"), start=1):
        raw = raw.removesuffix("\r")
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            problems.append(Problem(lineno, None, "malformed", f"not valid JSON ({exc.msg})."))
            continue
        if not isinstance(obj, dict):
            problems.append(
                Problem(
                    lineno, None, "malformed", f"must be a JSON object; got {type(obj).__name__}."
                )
            )
            continue
        rid = obj.get("id") if isinstance(obj.get("id"), str) else None
        missing = [k for k in REQUIRED_KEYS if k not in obj]
        extra = sorted(set(obj) - set(REQUIRED_KEYS))
        if missing or extra:
            msg = []
            if missing:
                msg.append(f"missing key(s) {missing}")
            if extra:
                msg.append(f"unknown key(s) {extra}")
            problems.append(
                Problem(
                    lineno,
                    rid,
                    "malformed",
                    f"{'; '.join(msg)}; required keys are {list(REQUIRED_KEYS)}.",
                )
            )
            continue
        bad = False
        for key in ("id", "topic", "question"):
            if not isinstance(obj[key], str):
                problems.append(
                    Problem(
                        lineno,
                        rid,
                        "malformed",
                        f"`{key}` must be a string; got {type(obj[key]).__name__}.",
                    )
                )
                bad = True
            elif not obj[key].strip():
                problems.append(
                    Problem(
                        lineno,
                        rid,
                        "empty",
                        f"`{key}` must be a non-empty string; got {obj[key]!r}.",
                    )
                )
                bad = True
        answers = obj["answers"]
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            problems.append(
                Problem(lineno, rid, "malformed", "`answers` must be a list of strings.")
            )
            continue
        if len(answers) != N_ANSWERS:
            problems.append(
                Problem(
                    lineno,
                    rid,
                    "answer-count",
                    f"`answers` must hold exactly {N_ANSWERS} answers; got {len(answers)}.",
                )
            )
            continue
        for i, a in enumerate(answers):
            if not a.strip():
                problems.append(
                    Problem(
                        lineno,
                        rid,
                        "empty",
                        f"`answers[{i}]` must be a non-empty string; got {a!r}.",
                    )
                )
                bad = True
        if bad:
            continue
        rows.append(
            QARow(obj["id"], obj["topic"], obj["question"], (answers[0], answers[1]), lineno)
        )
    return rows, problems


def _ratio_above(a: str, b: str, bound: float) -> tuple[bool, float]:
    sm = difflib.SequenceMatcher(None, a, b)
    if sm.real_quick_ratio() <= bound or sm.quick_ratio() <= bound:
        return False, 0.0
    r = sm.ratio()
    return r > bound, r


def check_rows(
    rows: Sequence[QARow], truthfulqa_questions: Iterable[str] | None = None
) -> list[Problem]:
    """Every content defect in ``rows`` (duplicates, near-identical answers, TruthfulQA overlap)."""
    problems: list[Problem] = []
    seen_ids: dict[str, int] = {}
    for r in rows:
        if r.id in seen_ids:
            problems.append(
                Problem(r.line, r.id, "duplicate-id", f"id also used on line {seen_ids[r.id]}.")
            )
        else:
            seen_ids[r.id] = r.line
        a0, a1 = (a.lower() for a in r.answers)
        sm = difflib.SequenceMatcher(None, a0, a1)
        ratio = sm.ratio()
        if ratio > ANSWER_PAIR_RATIO:
            problems.append(
                Problem(
                    r.line,
                    r.id,
                    "similar-answers",
                    f"the two answers are near-identical: difflib ratio {ratio:.3f} > {ANSWER_PAIR_RATIO}.",
                )
            )
    norm = [normalise(r.question) for r in rows]
    for i in range(len(rows)):
        for j in range(i):
            if norm[i] == norm[j]:
                hit, ratio = True, 1.0
            else:
                hit, ratio = _ratio_above(norm[i], norm[j], QUESTION_DUP_RATIO)
            if hit:
                problems.append(
                    Problem(
                        rows[i].line,
                        rows[i].id,
                        "duplicate-question",
                        f"question duplicates line {rows[j].line} (id {rows[j].id!r}): "
                        f"difflib ratio {ratio:.3f} > {QUESTION_DUP_RATIO}.",
                    )
                )
    if truthfulqa_questions is not None:
        problems.extend(check_truthfulqa_overlap(rows, truthfulqa_questions, norm))
    return problems


def check_truthfulqa_overlap(
    rows: Sequence[QARow], truthfulqa_questions: Iterable[str], norm: Sequence[str] | None = None
) -> list[Problem]:
    """Rows whose question equals (after :func:`normalise`) or nearly matches a TruthfulQA question."""
    norm = list(norm) if norm is not None else [normalise(r.question) for r in rows]
    tq = [(q, normalise(q)) for q in truthfulqa_questions]
    exact = {n: q for q, n in tq}
    problems: list[Problem] = []
    for r, n in zip(rows, norm, strict=True):
        if n in exact:
            problems.append(
                Problem(
                    r.line,
                    r.id,
                    "truthfulqa-overlap",
                    f"question equals TruthfulQA's {exact[n]!r}.",
                )
            )
            continue
        sm = difflib.SequenceMatcher(None, "", n)  # seq2 (cached side) = our question
        for q, tn in tq:
            sm.set_seq1(tn)
            if (
                sm.real_quick_ratio() <= TRUTHFULQA_OVERLAP_RATIO
                or sm.quick_ratio() <= TRUTHFULQA_OVERLAP_RATIO
            ):
                continue
            ratio = sm.ratio()
            if ratio > TRUTHFULQA_OVERLAP_RATIO:
                problems.append(
                    Problem(
                        r.line,
                        r.id,
                        "truthfulqa-overlap",
                        f"question is close to TruthfulQA's {q!r}: difflib ratio {ratio:.3f} > {TRUTHFULQA_OVERLAP_RATIO}.",
                    )
                )
                break
    return problems


def validate(
    path: str | os.PathLike[str] = PACKAGED,
    truthfulqa_questions: Iterable[str] | None = None,
) -> list[QARow]:
    """Load and validate a dataset file; return its rows.

    Parameters
    ----------
    path : path or ``"@open-qa"``
        A JSONL file in the schema above, or :data:`PACKAGED` (default): the packaged dataset.
    truthfulqa_questions : iterable of str, optional
        TruthfulQA's questions; when given, any overlap is a defect.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    DatasetError
        Listing every defect with its line number and id.
    """
    p = dataset_path(path)
    if not p.is_file():
        raise FileNotFoundError(f"`data` file not found: {p}")
    data = p.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ValueError(
            f"`data` file {p} is not UTF-8 text (line {line}, byte {exc.start})."
        ) from None
    rows, problems = parse_jsonl(text)
    problems += check_rows(rows, truthfulqa_questions)
    if not rows and not problems:
        problems.append(Problem(None, None, "empty", "the file holds no rows."))
    if problems:
        raise DatasetError(str(p), problems)
    return rows


def load_dataset(path: str | os.PathLike[str] = PACKAGED) -> list[QARow]:
    """Load the dataset (a file, or the packaged one for :data:`PACKAGED`), validated without TruthfulQA."""
    return validate(path)
