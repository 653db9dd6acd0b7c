"""``deltahall coinflip``: the coin-flip experiment (paper Section 7.1, Figure 3).

Sub-commands: ``run`` (one training run), ``sweep`` (the Figure 3 grid, resumable, with the
correlation tables and report.html), ``report`` (rebuild report.html of a sweep directory).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from deltahall.cli.config_args import add_dataclass_arguments, config_from_args
from deltahall.io.rundir import dumps_json

#: Settings of the sweep's ``base`` that the sweep itself sets for each run, with the reason a
#: config file that sets one is refused (the command line has no option for them).
_SWEEP_FIXED: dict[str, str] = {
    **{
        f"base.{k}": "the sweep sets it for each run (use ns, ms, objectives, base_seed)"
        for k in ("n", "m", "objective", "seed")
    },
    "base.run": "each run's options come from the sweep's (out_dir/runs/<name>, threads, progress)",
}


def register(sub: argparse._SubParsersAction, name: str, summary: str) -> None:
    from deltahall.experiments.coinflip.config import CoinFlipConfig
    from deltahall.experiments.coinflip.sweep import SweepConfig

    p = sub.add_parser(
        name,
        help=summary,
        description=(
            "2N coins with head probabilities (i+1)/(2N); a sample flips N of them and counts the heads; "
            "a transformer sees the chosen coins' labels and predicts the count. Measures training loss "
            "against the exact conditional probability of the estimate, epoch by epoch."
        ),
    )
    ss = p.add_subparsers(dest="coinflip_command", metavar="{run,sweep,report}")

    pr = ss.add_parser(
        "run",
        help="train one model; metrics.csv per epoch, resumable",
        description="Train one coin-flip model into --out-dir (checkpoint every epoch).",
    )
    add_dataclass_arguments(pr, CoinFlipConfig)
    _common(pr)
    pr.set_defaults(handler=_handle_run)

    ps = ss.add_parser(
        "sweep",
        help="the Figure 3 sweep (N x M x rounds x objectives), resumable",
        description=(
            "Train every run of the grid into --out-dir/runs/, skipping finished runs and "
            "resuming unfinished ones; then write runs.csv, correlations.csv, figures/ and "
            "report.html. Rerun the same command to resume."
        ),
    )
    add_dataclass_arguments(ps, SweepConfig, exclude=tuple(_SWEEP_FIXED))
    ps.add_argument("--no-report", action="store_true", help="skip figures and report.html")
    _common(ps)
    ps.set_defaults(handler=_handle_sweep)

    pp = ss.add_parser("report", help="rebuild report.html (tables, Figure 3) of a sweep directory")
    pp.add_argument("--sweep-dir", type=Path, required=True)
    pp.add_argument("--n-permutations", type=int, default=9999)
    pp.set_defaults(handler=_handle_report)
    p.set_defaults(handler=lambda a: (p.print_help(), 2)[1])


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        help=(
            "TOML or JSON file with option values (sweep: the settings of its runs flat or as a "
            "[base] table, run options flat or as a [run] table)"
        ),
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _entry_point_torch() -> None:
    import torch

    torch.use_deterministic_algorithms(True)


def _handle_run(args: argparse.Namespace) -> int:
    from deltahall.experiments.coinflip.config import CoinFlipConfig
    from deltahall.experiments.coinflip.train import run

    cfg = config_from_args(CoinFlipConfig, args, config_file=args.config)
    if cfg.run.out_dir is None:
        raise ValueError(
            "`--out-dir` must be given: the run directory for metrics and checkpoints."
        )
    _entry_point_torch()
    t0 = time.perf_counter()
    res = run(cfg)
    wall = time.perf_counter() - t0
    out = {
        "out_dir": str(res.out_dir),
        "seconds": wall,
        "final": res.final,
        "reference": res.reference,
    }
    if args.json:
        sys.stdout.write(dumps_json(out))
    else:
        f, r = res.final, res.reference
        print(f"{res.out_dir}: {len(res.history)} epochs, {wall:.1f} s")
        print(
            f"train MSE {f['train_mse']:.4f} (Bayes floor {r['bayes_mse_train']:.4f}), val MSE {f['val_mse']:.4f}, "
            f"RMS distance to E[Y|X] {f['dist_bayes']:.4f}"
        )
        print(
            f"P(Y=est|X) {f['cp_est']:.4f} (round E[Y|X]: {r['cp_bayes_round']:.4f}, mode: {r['cp_mode']:.4f}); "
            f"P(Y=ceil|X) {f['cp_ceil']:.4f}; P(Y=raw|X) {f['cp_raw']:.4f}"
        )
    return 0


def _sweep_config(args: argparse.Namespace) -> Any:
    """The sweep's config through the one resolver: defaults < config file (sweep and run
    options flat or as a ``[run]`` table, run settings flat or as a ``[base]`` table) < command line."""
    from deltahall.experiments.coinflip.sweep import SweepConfig

    return config_from_args(SweepConfig, args, config_file=args.config, exclude=_SWEEP_FIXED)


def _handle_sweep(args: argparse.Namespace) -> int:
    from deltahall.experiments.coinflip.sweep import run_sweep

    cfg = _sweep_config(args)
    _entry_point_torch()
    res = run_sweep(cfg)
    report = None
    if not args.no_report:
        from deltahall.experiments.coinflip.report import write_sweep_report

        report = write_sweep_report(
            res.out_dir,
            n_permutations=cfg.n_permutations,
            seed=cfg.base_seed,
            command="coinflip sweep",
        )
    if args.json:
        sys.stdout.write(
            dumps_json(
                {
                    "out_dir": str(res.out_dir),
                    "wall_seconds": res.wall_seconds,
                    "correlations": res.correlations,
                    "report": str(report) if report else None,
                }
            )
        )
        return 0
    print(
        f"{res.out_dir}: {len(res.runs)} runs, training wall time {res.wall_seconds:.1f} s (all sessions)"
    )
    print(
        f"{'objective':9s} {'N':>2s} {'M':>6s} {'from':>4s} {'prob':8s} {'pearson':>8s} {'p':>7s} {'spearman':>8s} {'p':>7s}"
    )
    for r in res.correlations:
        print(
            f"{r['objective']:9s} {r['n']:2d} {r['m']:6d} {r['from_epoch']:4d} {r['probability']:8s} {r['pearson']:8.3f} "
            f"{r['pearson_p']:7.4f} {r['spearman']:8.3f} {r['spearman_p']:7.4f}"
        )
    if report:
        print(f"report: {report}")
    return 0


def _handle_report(args: argparse.Namespace) -> int:
    from deltahall.experiments.coinflip.report import write_sweep_report

    path = write_sweep_report(args.sweep_dir, n_permutations=args.n_permutations)
    print(f"report: {path}", file=sys.stdout)
    return 0
