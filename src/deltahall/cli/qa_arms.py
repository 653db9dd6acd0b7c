"""``deltahall qa arms``: the four-arm QA design on a real language model (issue 9).

Options are the fields of :class:`deltahall.experiments.qa.arms.ArmsConfig`; ``--preset``
gives the base values (``cpu-real``: Gemma 3 270M on 2 CPU cores; ``tiny``: offline
plumbing), a ``--config`` file and explicit options override it.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from deltahall.cli.config_args import add_dataclass_arguments, config_from_args


def register_arms(qsub: argparse._SubParsersAction) -> None:
    """Add the ``arms`` sub-command to ``deltahall qa``."""
    from deltahall.experiments.qa.arms import ArmsConfig

    summary = (
        "four arms (original, two-answer, single-answer control, exposure control) on one real LM: "
        "TruthfulQA resemblance with bootstrap CIs and paired tests, and the text δ-measure"
    )
    a = qsub.add_parser(
        "arms",
        help=summary,
        description=summary
        + ". --preset: 'cpu-real' (Gemma 3 270M + LoRA, sized for 2 CPU cores; the default), "
        "'cpu-smollm2' (the same on SmolLM2-135M-Instruct with its chat template) or 'tiny' "
        "(random offline model, plumbing only); a --config file and explicit options override it.",
    )
    a.add_argument("--config", help="TOML or JSON file with option values")
    add_dataclass_arguments(a, ArmsConfig)
    a.add_argument(
        "--print-config", action="store_true", help="print the resolved config as JSON and exit"
    )
    a.add_argument("--json", action="store_true", help="print the summary as JSON")
    a.set_defaults(handler=_handle_arms, _parser=a)

    merge = (
        "pool `qa arms` runs of one design and other seeds into a new folder (tables recomputed)"
    )
    m = qsub.add_parser("arms-merge", help=merge, description=merge + ".")
    m.add_argument("--run-dir", required=True, nargs="+", help="two or more `qa arms` run folders")
    m.add_argument(
        "--out-dir", required=True, help="the new folder (not inside one of the --run-dir)"
    )
    m.add_argument(
        "--resume-from-checkpoint",
        help="'latest': pool again into an --out-dir that holds the pooled runs (same --run-dir)",
    )
    m.add_argument("--json", action="store_true", help="print the summary as JSON")
    m.set_defaults(handler=_handle_merge)


def resolve_config(args: argparse.Namespace) -> Any:
    """The :class:`ArmsConfig` of parsed arguments (preset < config file < command line)."""
    from deltahall.experiments.qa.arms import ArmsConfig

    return config_from_args(ArmsConfig, args, config_file=args.config)


def _handle_arms(args: argparse.Namespace) -> int:
    from deltahall.experiments.qa.arms import run
    from deltahall.experiments.qa.arms_tables import markdown
    from deltahall.io.rundir import dumps_json, to_jsonable

    cfg = resolve_config(args)
    if args.print_config:
        print(json.dumps(to_jsonable(cfg), indent=2, allow_nan=False))
        return 0
    res = run(cfg)
    if args.json:
        print(dumps_json(res.summary), end="")
        return 0
    if res.plumbing:
        print("Tiny random model: these numbers check the plumbing; they are NOT findings.")
    print(markdown(res.summary), end="")
    print(f"run directory: {res.run_dir} ({res.seconds:.1f} s)")
    return 0


def _handle_merge(args: argparse.Namespace) -> int:
    from deltahall.experiments.qa.arms_tables import markdown, merge_runs
    from deltahall.io.rundir import dumps_json

    summary = merge_runs(
        args.run_dir, args.out_dir, resume_from_checkpoint=args.resume_from_checkpoint
    )
    if args.json:
        print(dumps_json(summary), end="")
        return 0
    if summary.get("plumbing"):
        print("Tiny random model: these numbers check the plumbing; they are NOT findings.")
    print(markdown(summary), end="")
    print(f"pooled run directory: {args.out_dir}")
    return 0
