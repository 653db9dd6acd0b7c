"""``deltahall convert``: turn public data sets into the instrument's input formats.

``deltahall convert truthfulqa --csv TruthfulQA.csv --out ref.jsonl`` writes one JSONL row per
reference answer, ``{"text", "state", "prompt", "id"}``: each question is a prompt with two latent
states, ``correct`` (its Correct Answers) and ``incorrect`` (its Incorrect Answers), the per-prompt
reference of ``deltahall measure --reference ref.jsonl --embedder @minilm``. Generated answers go in
another JSONL file as ``{"text", "prompt", "id"}`` with the question text as ``prompt``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def register(sub: argparse._SubParsersAction, name: str, summary: str) -> None:
    p = sub.add_parser(name, help=summary, description=__doc__.splitlines()[0])
    kinds = p.add_subparsers(dest="kind", metavar="KIND")
    t = kinds.add_parser(
        "truthfulqa",
        help="TruthfulQA CSV -> per-prompt reference JSONL (correct / incorrect states)",
    )
    t.add_argument("--csv", type=Path, required=True, help="TruthfulQA.csv (the original layout)")
    t.add_argument("--out", type=Path, required=True, help="the reference JSONL to write")
    t.add_argument(
        "--min-answers",
        type=int,
        default=2,
        help="keep a state only with at least this many answers (leave-one-out calibration needs 2); "
        "a question left with fewer than two states is dropped",
    )
    t.set_defaults(handler=_truthfulqa)


def truthfulqa_rows(items: list, min_answers: int = 2) -> list[dict[str, str]]:  # type: ignore[type-arg]
    """Reference rows of TruthfulQA items (see the module docstring); questions with < 2 states dropped."""
    rows: list[dict[str, str]] = []
    for q, it in enumerate(items):
        states = {"correct": it.correct_answers, "incorrect": it.incorrect_answers}
        kept = {s: a for s, a in states.items() if len(a) >= min_answers}
        if len(kept) < 2:
            continue
        for s, answers in kept.items():
            for k, a in enumerate(answers):
                rows.append({"text": a, "state": s, "prompt": it.question, "id": f"q{q}-{s}-{k}"})
    return rows


def _truthfulqa(args: argparse.Namespace) -> int:
    from deltahall._validation import check_int, check_output_path
    from deltahall.experiments.qa.truthfulqa import load_truthfulqa_csv
    from deltahall.io import atomic_write_text

    check_int(args.min_answers, "min_answers", low=1)
    out = check_output_path(args.out, "out", inputs=[("csv", args.csv)])
    items = load_truthfulqa_csv(args.csv)
    rows = truthfulqa_rows(items, args.min_answers)
    if not rows:
        raise ValueError(
            f"`csv` {os.fspath(args.csv)!r}: no question has two states with >= {args.min_answers} answers."
        )
    atomic_write_text(
        out, "".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in rows)
    )
    n_q = len({r["prompt"] for r in rows})
    print(
        f"wrote {len(rows)} reference answers of {n_q} questions ({len(items) - n_q} dropped) to {out}"
    )
    return 0
