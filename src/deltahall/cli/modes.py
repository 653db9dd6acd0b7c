"""``deltahall modes``: δ-hallucination of a DDPM on mixtures of Gaussians, against the exact truth.

Sub-commands: ``run`` (train, checkpoint, sample, score every detector against the truth,
recursive training; every option of ``ModesConfig``) and ``report`` (figures and an HTML page
from a run directory).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from deltahall.cli.config_args import add_dataclass_arguments, config_from_args


def register(sub: argparse._SubParsersAction, name: str, summary: str) -> None:
    from deltahall.experiments.modes.config import ModesConfig

    p = sub.add_parser(name, help=summary, description=summary)
    msub = p.add_subparsers(dest="modes_command", metavar="MODES_COMMAND")
    r = msub.add_parser(
        "run",
        help="train a DDPM on a Gaussian mixture; score the truth and every detector per checkpoint",
        description=(
            "Train a DDPM with a small MLP denoiser on the peer's mixture of Gaussians (--data 2d: 25 modes on a "
            "5 x 5 grid, the default; --data 1d: modes at 1, 2, 3). At every checkpoint K samples (the same noise "
            "each time) get their exact δ-hallucination flag and every detector's score; then recursive training. "
            "--preset tiny (default) runs in well under a minute; --preset cpu in about 25 minutes on 2 CPU cores. "
            "Options left unset take the preset's value; --config FILE (TOML/JSON) supplies values, explicit "
            "options win. A killed run continues with --resume-from-checkpoint latest."
        ),
    )
    r.add_argument("--config", help="TOML or JSON file with option values")
    add_dataclass_arguments(r, ModesConfig)
    r.add_argument(
        "--json", action="store_true", help="print result.json's headline fields as JSON"
    )
    r.set_defaults(handler=_handle_run)

    rep = msub.add_parser("report", help="figures and report.html from a `modes run` directory")
    rep.add_argument("--run-dir", required=True, help="a `modes run` output directory")
    rep.add_argument("--out", help="HTML file to write (default: RUN_DIR/report.html)")
    rep.set_defaults(handler=_handle_report)
    p.set_defaults(handler=lambda args: (p.print_help(), 2)[1])


def build_config(args: argparse.Namespace) -> Any:
    """The config of ``modes run``: the preset < the config file < the command line."""
    from deltahall.experiments.modes.config import ModesConfig

    return config_from_args(ModesConfig, args, config_file=args.config)


def _handle_run(args: argparse.Namespace) -> int:
    from deltahall.experiments.modes import run

    cfg = build_config(args)
    res = run(cfg)
    s = res.summary
    if args.json:
        from deltahall.io.rundir import dumps_json

        sys.stdout.write(
            dumps_json(
                {
                    k: s[k]
                    for k in ("final_step", "final", "headline_final", "recursive", "verdicts")
                }
            )
        )
        return 0
    print(
        f"{'step':>6} {'val loss':>9} {'true rate':>9} {'95% CI':>17}  AUROC hcdr / variance / knn"
    )
    for m in res.metrics:
        auc = " / ".join(
            "-" if m[f"{d}_auroc"] is None else f"{m[f'{d}_auroc']:.3f}"
            for d in ("hcdr", "variance", "knn")
        )
        print(
            f"{m['step']:>6} {m['val_loss']:>9.4f} {m['true_rate']:>9.4f} [{m['true_lo']:.4f}, {m['true_hi']:.4f}]  {auc}"
        )
    for k, v in s["verdicts"].items():
        print(f"{k}: {v}")
    print(f"run dir: {res.out_dir}")
    return 0


def _handle_report(args: argparse.Namespace) -> int:
    from deltahall.cli.run_report import write_run_report
    from deltahall.experiments.modes.report import build_section
    from deltahall.experiments.modes.results import save_figures

    return write_run_report(
        args,
        experiment="modes",
        marker="result.json",
        build_section=build_section,
        save_figures=save_figures,
    )
