"""``deltahall coinflip``: the coin-flip experiment (paper Section 7.1, Figure 3).

Sub-commands: ``run`` (one training run), ``sweep`` (the Figure 3 grid, resumable, with the
correlation tables and report.html), ``report`` (rebuild report.html of a sweep directory).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

from deltahall._validation import BadInput
from deltahall.cli.config_args import (
    add_dataclass_arguments,
    check_known_keys,
    config_from_args,
    load_config_file,
)
from deltahall.io.rundir import dumps_json

_SWEEP_VARIED = ("n", "m", "objective", "seed")


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
    add_dataclass_arguments(ps, SweepConfig, exclude=("base",))
    add_dataclass_arguments(ps, CoinFlipConfig, exclude=(*_SWEEP_VARIED, "run", "preset"))
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
        help="TOML or JSON file with option values (sweep: a [base] table for run options)",
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
    from deltahall.experiments.coinflip.config import CoinFlipConfig
    from deltahall.experiments.coinflip.sweep import SweepConfig

    file_vals: dict[str, Any] = load_config_file(args.config) if args.config else {}
    base_file = file_vals.pop("base", {})
    if not isinstance(base_file, dict):
        raise ValueError(
            f"config file {args.config}: `base` must be a table of run settings; got {base_file!r}."
        )
    bad = sorted(set(base_file) & set(_SWEEP_VARIED))
    if bad:
        raise ValueError(
            f"`[base]` in {args.config} must not set {bad}: the sweep varies them (use ns, ms, objectives)."
        )
    base_known = {f.name for f in dataclasses.fields(CoinFlipConfig)} - {"run", *_SWEEP_VARIED}
    check_known_keys(args.config, "base", base_file, base_known)
    from deltahall.experiments._run import RunOptions

    run_names = {f.name for f in dataclasses.fields(RunOptions)}
    sweep_names = {f.name for f in dataclasses.fields(SweepConfig)}
    base_args = argparse.Namespace(
        **{k: v for k, v in vars(args).items() if k not in sweep_names | run_names}
    )
    base = config_from_args(
        CoinFlipConfig, base_args, **_merge(base_file, base_args, CoinFlipConfig)
    )
    # The rest of the file (sweep options, run options flat or as a [run] table) goes through
    # the one resolver; a key of neither is refused, naming the known ones.
    known = (sweep_names - {"base"}) | run_names
    unknown = sorted(set(file_vals) - known)
    if unknown:
        raise BadInput(
            f"config file {args.config} has unknown keys {unknown}; known keys are {sorted(known)} "
            "and a [base] table of run settings."
        )
    return config_from_args(
        SweepConfig, args, config_file=args.config, file_values=file_vals, base=base
    )


def _merge(file_vals: dict[str, Any], args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """File values for fields of ``cls`` not given on the command line (the CLI wins)."""
    from deltahall.cli.config_args import _UNSET

    names = {f.name for f in dataclasses.fields(cls)} - {"run", "base"}
    out = {}
    for k, v in file_vals.items():
        if k in names and getattr(args, k, _UNSET) is _UNSET:
            out[k] = tuple(v) if isinstance(v, list) else v
    return out


def _handle_sweep(args: argparse.Namespace) -> int:
    from deltahall.experiments.coinflip.sweep import run_sweep

    cfg = _sweep_config(args)
    _entry_point_torch()
    res = run_sweep(cfg)
    report = None
    if not args.no_report:
        from deltahall.experiments.coinflip.report import write_sweep_report

        report = write_sweep_report(
            res.out_dir, n_permutations=cfg.n_permutations, seed=cfg.base_seed
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
