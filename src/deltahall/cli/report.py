"""``deltahall report``: the main job."""

from __future__ import annotations

import argparse
import sys

from deltahall.cli.config_args import add_dataclass_arguments, config_from_args


def register(sub: argparse._SubParsersAction, name: str, summary: str) -> None:
    from deltahall.experiments.main_job import MainJobConfig

    p = sub.add_parser(
        name,
        help=summary,
        description=(
            "Run every experiment's offline default (theory checks, a reduced coin-flip sweep, "
            "the digits text-to-image preset at reduced size, the tiny-model QA pipeline) and write "
            "one self-contained HTML report, report.html, into --out-dir."
        ),
    )
    add_dataclass_arguments(p, MainJobConfig)
    p.add_argument("--config", help="TOML or JSON file with option values")
    p.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    from deltahall.experiments.main_job import MainJobConfig, run

    cfg = config_from_args(MainJobConfig, args, config_file=args.config)
    res = run(cfg)
    for step, s in res.seconds.items():
        if step in res.failed:
            print(f"{step:10s} FAILED {s:7.1f} s")
        elif step in res.reused:
            print(f"{step:10s} reused {s:7.1f} s (re-check; originally {res.reused[step]:.1f} s)")
        else:
            print(f"{step:10s} ok     {s:7.1f} s")
    if res.reused:
        print(
            f"reused {len(res.reused)} step{'s' if len(res.reused) > 1 else ''} finished by an earlier "
            f"session: {', '.join(res.reused)} (original times labelled 'originally')"
        )
    print(f"report: {res.report_path}")
    if res.failed:
        for step, err in res.failed.items():
            print(f"deltahall report: step {step} failed: {err}", file=sys.stderr)
        return 1
    return 0
