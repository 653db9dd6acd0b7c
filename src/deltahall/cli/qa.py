"""``deltahall qa``: the open-ended QA experiment (Section 7.2, Figure 4, Table 1).

Sub-commands: ``run`` (fine-tune, generate, score, tabulate), ``validate`` (the
question dataset), ``score`` (recompute scores from saved answers), ``table``
(rebuild Table 1 / Figure 4 from a run directory's answers, through
:func:`deltahall.experiments._derived.rewrite`), ``intervals`` (the tables with intervals, a new
folder run by the shared runner), ``baselines`` (model-free scores of TruthfulQA's own texts),
and ``arms`` / ``arms-merge`` (:mod:`deltahall.cli.qa_arms`).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from deltahall.cli.config_args import add_dataclass_arguments, config_from_args
from deltahall.io.rundir import dumps_json


def register(sub: argparse._SubParsersAction, name: str, summary: str) -> None:
    from deltahall.experiments.qa.config import QAConfig

    p = sub.add_parser(name, help=summary, description=summary)
    qsub = p.add_subparsers(dest="qa_command", metavar="QA_COMMAND")

    r = qsub.add_parser(
        "run",
        help="fine-tune, answer TruthfulQA, score, write Table 1 and Figure 4",
        description=(
            "Run the experiment. Under `accelerate launch` fine-tuning uses every process. "
            "--preset: 'paper' (Section 7.2 scale, needs GPUs + hub; the default), 'cpu-smollm2' (the "
            "paper's pipeline on @smollm2-135m-instruct, CPU, a seeded TruthfulQA subset) or 'tiny' "
            "(offline plumbing); a --config file and explicit options override it."
        ),
    )
    r.add_argument("--config", help="TOML or JSON file with option values")
    add_dataclass_arguments(r, QAConfig)
    r.add_argument("--json", action="store_true", help="print the score rows as JSON")
    r.set_defaults(handler=_handle_run)

    v = qsub.add_parser(
        "validate", help="check a question dataset against the schema and the bounds"
    )
    v.add_argument(
        "--data",
        default="@open-qa",
        help="JSONL file, or '@open-qa' (default: the packaged dataset)",
    )
    v.add_argument("--truthfulqa", help="TruthfulQA CSV (or 'hub') to check for overlap")
    v.add_argument("--json", action="store_true", help="print a JSON summary")
    v.set_defaults(handler=_handle_validate)

    s = qsub.add_parser("score", help="recompute scores from saved answer files (no model needed)")
    s.add_argument(
        "--answers", nargs="+", required=True, help="answers JSONL file(s) written by `qa run`"
    )
    s.add_argument(
        "--embedding-model", help="also compute a sentence-transformers similarity (optional)"
    )
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(handler=_handle_score)

    t = qsub.add_parser(
        "table", help="rescore a run directory from its answers; rewrite Table 1 and Figure 4"
    )
    t.add_argument(
        "--run-dir",
        required=True,
        help="a finished (or partial) `qa run` directory (the rebuild is noted in its derived.json)",
    )
    t.add_argument(
        "--metric",
        default="resemblance_incorrect",
        help="metric of table1.csv (default: resemblance_incorrect)",
    )
    t.set_defaults(handler=_handle_table)

    c = qsub.add_parser(
        "intervals",
        help="Table 1 and Figure 4 with 95 %% intervals and paired tests vs the original "
        "model, from the answer files of one or more runs (seeds pooled)",
    )
    c.add_argument(
        "--run-dir", required=True, nargs="+", help="`qa run` directories (finished or partial)"
    )
    c.add_argument(
        "--out-dir",
        required=True,
        help="a new folder for table1_ci.csv, paired_ci.csv, table1_ci.md, figures/ and "
        "manifest.json (not inside a --run-dir)",
    )
    c.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default: 2000)")
    c.add_argument(
        "--n-perm", type=int, default=9999, help="random sign flips per paired test (default: 9999)"
    )
    c.add_argument(
        "--resume-from-checkpoint",
        help="'latest': recompute the tables in an --out-dir that holds them, with the same "
        "settings (the input runs may have grown); unset: refuse such a folder",
    )
    c.set_defaults(handler=_handle_intervals)

    b = qsub.add_parser(
        "baselines", help="model-free: score TruthfulQA's best answers and question texts"
    )
    b.add_argument("--truthfulqa", required=True, help="TruthfulQA CSV, 'hub' or '@standin'")
    b.add_argument("--json", action="store_true", help="print JSON")
    b.set_defaults(handler=_handle_baselines)

    from deltahall.cli.qa_arms import register_arms

    register_arms(qsub)
    p.set_defaults(handler=lambda args: (p.print_help(), 2)[1])


def _handle_run(args: argparse.Namespace) -> int:
    from deltahall.experiments.qa.config import QAConfig
    from deltahall.experiments.qa.pipeline import run
    from deltahall.experiments.qa.results import markdown_table, table1

    cfg = config_from_args(QAConfig, args, config_file=args.config)
    res = run(cfg)
    if not res.scores:  # a non-main process under accelerate launch
        return 0
    if args.json:
        from deltahall.io.rundir import dumps_json

        print(dumps_json(res.scores), end="")
        return 0
    headline = res.headline(cfg)
    cols, rows = table1(res.scores, headline)
    if res.plumbing:
        print("Tiny offline model: these numbers check the plumbing; they are NOT findings.")
    print(f"{headline} (Table 1 layout):")
    print(markdown_table(cols, rows), end="")
    print(
        f"run directory: {res.run_dir} ({res.seconds:.1f} s); all tables in {res.run_dir / 'table1.md'}"
    )
    return 0


def _handle_validate(args: argparse.Namespace) -> int:
    from collections import Counter

    from deltahall.experiments.qa.dataset import DatasetError, dataset_path, validate
    from deltahall.experiments.qa.truthfulqa import load_truthfulqa

    tq = [it.question for it in load_truthfulqa(args.truthfulqa)] if args.truthfulqa else None
    source = str(dataset_path(args.data))
    try:
        rows = validate(args.data, truthfulqa_questions=tq)
    except DatasetError as exc:
        if args.json:
            sys.stdout.write(
                dumps_json(
                    {"source": source, "ok": False, "problems": [str(p) for p in exc.problems]}
                )
            )
            return 1
        raise ValueError(str(exc)) from None
    topics = Counter(r.topic for r in rows)
    summary = {
        "source": source,
        "ok": True,
        "questions": len(rows),
        "pairs": 2 * len(rows),
        "topics": len(topics),
        "checked_against_truthfulqa": tq is not None,
    }
    if args.json:
        sys.stdout.write(dumps_json(summary))
    else:
        print(
            f"{source}: OK — {len(rows)} questions, {2 * len(rows)} question-answer pairs, {len(topics)} topics"
            + (
                "; no TruthfulQA overlap"
                if tq is not None
                else "; TruthfulQA overlap not checked (pass --truthfulqa)"
            )
        )
    return 0


def _handle_score(args: argparse.Namespace) -> int:
    from deltahall.experiments.qa.generate import load_answers
    from deltahall.experiments.qa.scoring import embedding_similarity, score_record

    out: list[dict[str, Any]] = []
    for path in args.answers:
        rows = load_answers(path)
        rec: dict[str, Any] = {"answers": path, **score_record(rows)}
        if args.embedding_model:
            emb = embedding_similarity(rows, args.embedding_model)
            if emb is None:
                rec["embedding"] = "skipped (sentence-transformers missing)"
            else:
                rec.update(emb)
        out.append(rec)
    if args.json:
        sys.stdout.write(dumps_json(out))  # strict: a NaN score is null, with the reason
        return 0
    for rec in out:
        print(f"{rec['answers']}: n={rec['n']}")
        print(
            f"  answer only    : incorrect {rec['resemblance_incorrect']:.4f}  correct {rec['resemblance_correct']:.4f}  gap {rec['gap']:+.4f}"
        )
        print(
            f"  prompt included: incorrect {rec['resemblance_incorrect_with_prompt']:.4f}  correct "
            f"{rec['resemblance_correct_with_prompt']:.4f}  gap {rec['gap_with_prompt']:+.4f}"
        )
    return 0


def _handle_intervals(args: argparse.Namespace) -> int:
    from pathlib import Path

    from deltahall.experiments._run import RunOptions
    from deltahall.experiments.qa.intervals import IntervalsConfig, run

    cfg = IntervalsConfig(
        run_dirs=tuple(args.run_dir),
        n_boot=args.n_boot,
        n_perm=args.n_perm,
        run=RunOptions(
            out_dir=Path(args.out_dir),
            resume_from_checkpoint=args.resume_from_checkpoint,
            progress=False,
        ),
    )
    files = run(cfg)
    print(files["table1_ci_md"].read_text(encoding="utf-8"), end="")
    print(f"written: {', '.join(str(p) for p in files.values())}")
    return 0


def _handle_table(args: argparse.Namespace) -> int:
    from deltahall.experiments._derived import rewrite
    from deltahall.experiments.qa.results import TABLES, rescore_run, tables_markdown, write_results

    metrics = [m for m, _ in TABLES]
    if args.metric not in metrics:
        raise ValueError(f"`metric` must be one of {', '.join(metrics)}; got {args.metric!r}.")

    def write(rd: Any, manifest: dict[str, Any]) -> tuple[list[dict[str, Any]], bool, list[str]]:
        rows = rescore_run(rd.root)  # every score recomputed before the first write
        plumbing = bool(manifest.get("plumbing", False))
        paths = write_results(rd, rows, headline=args.metric, plumbing=plumbing)
        return rows, plumbing, sorted(p.name for p in paths.values())

    rows, plumbing, names = rewrite(args.run_dir, experiment="qa", write=write, command="qa table")
    print(tables_markdown(rows, plumbing=plumbing), end="")
    print(f"wrote {', '.join(names)} in {args.run_dir}")
    return 0


def _handle_baselines(args: argparse.Namespace) -> int:
    from deltahall.experiments.qa.results import markdown_table
    from deltahall.experiments.qa.scoring import reference_baselines
    from deltahall.experiments.qa.truthfulqa import load_truthfulqa

    rows = reference_baselines(load_truthfulqa(args.truthfulqa))
    if args.json:
        sys.stdout.write(dumps_json(rows))
    else:
        print(
            markdown_table(
                ["text", "n", "resemblance_incorrect", "resemblance_correct", "gap"], rows
            ),
            end="",
        )
    return 0
