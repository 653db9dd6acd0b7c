"""``deltahall t2i``: the text-to-image experiment (Section 7.3, Figures 5-7).

Sub-commands: ``run`` (train, checkpoint, sample, detect; every option of
``T2IConfig``) and ``report`` (figures + an HTML page from a finished or partial run
directory). Under ``accelerate launch`` training uses every process; sampling and
detection run on the main process.
"""

from __future__ import annotations

import argparse
import json
import sys

from deltahall.cli.config_args import add_dataclass_arguments, config_from_args


def register(sub: argparse._SubParsersAction, name: str, summary: str) -> None:
    from deltahall.experiments.t2i.config import T2IConfig

    p = sub.add_parser(name, help=summary, description=summary)
    tsub = p.add_subparsers(dest="t2i_command", metavar="T2I_COMMAND")
    r = tsub.add_parser(
        "run",
        help="train, checkpoint, sample, detect; write metrics.csv and Figures 5-7",
        description=(
            "Run the experiment. --preset digits (default) runs offline on CPU in minutes; "
            "--preset afhq-sd15 is the paper's scale (Stable Diffusion v1.5 on AFHQ, GPUs; launch with "
            "`accelerate launch -m deltahall.cli.main t2i run ...` for several). Options left unset take "
            "the preset's value; --config FILE (TOML/JSON) supplies values, explicit options win. "
            "Ctrl-C leaves the latest checkpoint usable: continue with --resume-from-checkpoint latest."
        ),
    )
    r.add_argument("--config", help="TOML or JSON file with option values")
    add_dataclass_arguments(r, T2IConfig)
    r.add_argument("--json", action="store_true", help="print the metrics rows as JSON")
    r.set_defaults(handler=_handle_run)

    rep = tsub.add_parser("report", help="Figures 5-7 and report.html from a run directory")
    rep.add_argument("--run-dir", required=True, help="a `t2i run` output directory")
    rep.add_argument("--out", help="HTML file to write (default: RUN_DIR/report.html)")
    rep.set_defaults(handler=_handle_report)
    p.set_defaults(handler=lambda args: (p.print_help(), 2)[1])


def _handle_run(args: argparse.Namespace) -> int:
    from deltahall.experiments._run import require_extra
    from deltahall.experiments.t2i import T2IConfig, run

    cfg = config_from_args(T2IConfig, args, config_file=args.config)
    require_extra("t2i")
    _quiet_loading_bars()
    res = run(cfg)
    if not res.metrics:  # a non-main process under accelerate launch
        return 0
    if args.json:
        from deltahall.io.rundir import dumps_json

        sys.stdout.write(dumps_json(res.metrics))
        return 0
    print(f"{'step':>6} {'loss':>8}  {'rate':>6}  {'mean-emb':>8}  prompt")
    for r in sorted(res.metrics, key=lambda r: (r["step"], r["prompt_index"])):
        inside = "inside" if r["mean_embedding_inside"] else "OUTSIDE"
        print(f"{r['step']:>6} {r['loss']:>8.4f}  {r['rate']:>6.3f}  {inside:>8}  {r['prompt']!r}")
    print(f"run dir: {res.run_dir}")
    print(
        "seconds: " + json.dumps({k: round(v, 1) for k, v in res.seconds.items()}, allow_nan=False)
    )
    return 0


def _quiet_loading_bars() -> None:
    """Hide the per-file 'Loading weights' / 'Writing model shards' bars (the run has its own)."""
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


def _handle_report(args: argparse.Namespace) -> int:
    from deltahall.cli.run_report import write_run_report
    from deltahall.experiments.t2i.report import build_section
    from deltahall.experiments.t2i.results import save_figures

    return write_run_report(
        args,
        experiment="t2i",
        marker="metrics.csv",
        build_section=build_section,
        save_figures=save_figures,
    )
