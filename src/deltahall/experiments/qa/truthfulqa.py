"""Load TruthfulQA (Lin et al., 2021), the evaluation set of Section 7.2.

Two sources:

- a CSV in the original layout (``TruthfulQA.csv`` of the authors' repository), with
  the columns ``Type, Category, Question, Best Answer, Correct Answers,
  Incorrect Answers, Source`` and answers separated by ``"; "``;
- ``"@standin"``: a 16-question offline stand-in written for deltahall (plumbing only);
- ``"hub"``: the Hugging Face dataset ``truthfulqa/truthful_qa`` (config
  ``"generation"``, split ``"validation"``), through the optional ``datasets``
  package, when online.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from deltahall.experiments.qa.standin import STANDIN, standin_rows

logger = logging.getLogger(__name__)

COLUMNS = (
    "Type",
    "Category",
    "Question",
    "Best Answer",
    "Correct Answers",
    "Incorrect Answers",
    "Source",
)
HUB_ID = "truthfulqa/truthful_qa"
SEPARATOR = "; "


@dataclass(frozen=True)
class TruthfulQAItem:
    """One TruthfulQA question with its reference answers."""

    question: str
    best_answer: str
    correct_answers: tuple[str, ...]
    incorrect_answers: tuple[str, ...]
    category: str = ""
    type: str = ""
    source: str = ""


def split_answers(cell: str) -> tuple[str, ...]:
    """Split a ``"; "``-separated answer cell into stripped, non-empty answers."""
    return tuple(a.strip() for a in cell.split(";") if a.strip())


def item_from_row(row: Mapping[str, str | None], *, where: str) -> TruthfulQAItem:
    """One item from a row keyed by the CSV's column names (:data:`COLUMNS`).

    Raises
    ------
    ValueError
        If the question is empty or there is no incorrect answer; the message starts with ``where``.
    """
    question = (row["Question"] or "").strip()
    incorrect = split_answers(row["Incorrect Answers"] or "")
    if not question:
        raise ValueError(f"{where}: empty `Question`.")
    if not incorrect:
        raise ValueError(f"{where}: no `Incorrect Answers` for {question!r}.")
    return TruthfulQAItem(
        question=question,
        best_answer=(row["Best Answer"] or "").strip(),
        correct_answers=split_answers(row["Correct Answers"] or ""),
        incorrect_answers=incorrect,
        category=(row["Category"] or "").strip(),
        type=(row["Type"] or "").strip(),
        source=(row["Source"] or "").strip(),
    )


def load_truthfulqa_csv(path: str | os.PathLike[str]) -> list[TruthfulQAItem]:
    """Read a TruthfulQA CSV in the original layout.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If a column is missing, or a row has an empty question or no incorrect
        answers (the message names the line).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"`truthfulqa` file not found: {p}")
    with open(p, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise ValueError(
                f"`truthfulqa` CSV {p} must have the columns {list(COLUMNS)}; missing {missing} "
                f"(found {list(header)})."
            )
        items = []
        for lineno, row in enumerate(reader, start=2):
            if None in row:
                raise ValueError(f"`truthfulqa` CSV {p}, line {lineno}: more cells than columns.")
            items.append(item_from_row(row, where=f"`truthfulqa` CSV {p}, line {lineno}"))
    if not items:
        raise ValueError(f"`truthfulqa` CSV {p} holds no rows.")
    return items


def load_truthfulqa_hub() -> list[TruthfulQAItem]:  # pragma: no cover - needs network
    """TruthfulQA from the Hugging Face hub (``datasets`` required, online)."""
    try:
        import datasets
    except ImportError as exc:
        raise ValueError(
            "`truthfulqa='hub'` needs the `datasets` package: pip install 'deltahall[hub]'."
        ) from exc
    ds = datasets.load_dataset(HUB_ID, "generation", split="validation")
    return [
        TruthfulQAItem(
            question=r["question"].strip(),
            best_answer=r["best_answer"].strip(),
            correct_answers=tuple(a.strip() for a in r["correct_answers"] if a.strip()),
            incorrect_answers=tuple(a.strip() for a in r["incorrect_answers"] if a.strip()),
            category=r.get("category", ""),
            type=r.get("type", ""),
            source=r.get("source", ""),
        )
        for r in ds
    ]


def subset_indices(n: int, size: int, seed: int) -> list[int]:
    """A seeded choice of ``size`` of ``n`` question indices, in the file's order.

    ``numpy.random.default_rng(seed).choice(n, size, replace=False)``, sorted: the rule of
    ``truthfulqa_subset_seed`` (and the same draw as the arms' first choice with that seed
    when ``n`` and ``size`` agree).

    Examples
    --------
    >>> subset_indices(817, 5, 0) == subset_indices(817, 5, 0)
    True
    >>> len(set(subset_indices(10, 10, 3)))
    10
    """
    import numpy as np

    if not 1 <= size <= n:
        raise ValueError(f"`size` must be in [1, {n}] (the questions available); got {size}.")
    return sorted(int(i) for i in np.random.default_rng(seed).choice(n, size=size, replace=False))


def load_truthfulqa(
    source: str | os.PathLike[str], limit: int | None = None, *, subset_seed: int | None = None
) -> list[TruthfulQAItem]:
    """TruthfulQA from ``"hub"``, a CSV path, or ``"@standin"``; ``limit`` questions if given.

    Without ``subset_seed`` the first ``limit`` questions are kept; with it, a seeded random
    choice of ``limit`` questions (:func:`subset_indices`, kept in the file's order), so a
    subset covers every category rather than the file's first ones.

    ``"@standin"`` is deltahall's small offline stand-in (:mod:`.standin`, parsed by
    :func:`item_from_row` like a CSV row), for plumbing only.
    """
    from deltahall.models.registry import check_data_alias

    check_data_alias(str(source), "truthfulqa", allowed=(STANDIN,))  # '@standim': lists the known
    if str(source) == "hub":
        items = load_truthfulqa_hub()
    elif str(source) == STANDIN:
        items = [item_from_row(r, where=f"stand-in row {i}") for i, r in enumerate(standin_rows())]
    else:
        items = load_truthfulqa_csv(source)
    if limit is not None and subset_seed is not None:
        keep = subset_indices(len(items), min(limit, len(items)), subset_seed)
        items = [items[i] for i in keep]
    elif limit is not None:
        items = items[:limit]
    logger.info("TruthfulQA: %d questions from %s", len(items), source)
    return items
