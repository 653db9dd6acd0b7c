"""``deltahall theory``: check the paper's theorems numerically.

Sub-commands: ``witness`` (Theorems 5.1, 5.2, 5.3, Corollary 5.2.1, C.1),
``bound`` (Theorem 6.1 for one instance), ``check`` (Theorem 6.1 over random
instances) and ``figures`` (Figures 2 and 8).

The options of ``witness``, ``bound`` and ``check`` are built from the config dataclasses in
:mod:`deltahall.experiments.theory_checks` (one place for every default); ``--config FILE``
(TOML or JSON) supplies values too, and the command line wins over it.

With ``--out-dir`` a command is a run of the shared runner
(:func:`deltahall.experiments._run.execute`): the folder is checked first (one holding a run of
this command is refused unless ``--resume-from-checkpoint latest`` with the same settings, which
redoes it), the computation runs before anything is written (a refused computation leaves the
folder as it was), then ``manifest.json``, the tables and last ``<command>.json``, atomically.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from deltahall.cli.config_args import _UNSET, add_dataclass_arguments, config_from_args

_WITNESS_HELP = """\
Build a target A(X) whose optimal estimator provably δ-hallucinates (Definition 4.2:
f(A*(X) | Z_i) <= δ for every latent state i) and verify it by evaluating every density.

  5.1    the quadratic-loss optimum E[A(X)] (Lemma B.1) hallucinates
  5.2    every estimate within --eps of the optimum hallucinates (the largest density over
         the whole ε-ball is found by exact maximisation, not sampling)
  5.3    an L-Lipschitz estimator optimal at X hallucinates at every hinted input X + δ_i,
         ||δ_i|| <= B (ε = L·B)
  5.2.1  Corollary 5.2.1: --inputs S inputs, one witness each
  C.1    the cross-entropy optimum (mean of the target distributions) hallucinates

--as-written follows the paper's construction literally, to show where it fails.
Limits (refused up front): N <= 10000, d <= 1024, N*d^2 <= 2^22 (for C.1, d is the number
of classes); scale in [1e-300, 1e300] and means/standard deviations inside that range.
Each state's density at the estimate (or its maximum over the ball) is printed and,
with --json, listed in the field `density` (and `log_density`, exact for tiny δ).

examples:
  deltahall theory witness --theorem 5.1 --delta 0.01 --states 3 --dim 2
  deltahall theory witness --theorem 5.2 --delta 1e-300 --states 4 --eps 2.5 --json
  deltahall theory witness --theorem 5.1 --delta 0.1 --states 2 --weights 0.01 0.99 --as-written
"""

_BOUND_HELP = """\
Theorem 6.1 for one instance: N states with Gaussian within-state laws N(μ_i, s_i² I_d)
and independent conditional means μ_i = μ_0 + (offset from --mean-law). Prints d, θ_i(α),
the best α_i, P_i, K_i^μ and the product bound exactly as stated, a union bound that the
lemmas do justify, and a Monte-Carlo estimate of the true P_H^δ with a confidence interval.

Limits: as for witness; --mc-samples <= 1e8, mc-samples * N <= 1e8, mc-samples * N * d^2 <= 1e10.

example:
  deltahall theory bound --delta 0.5 --states 2 --within-scale 0.05 --mean-law cube --mean-scale 1
"""

_CHECK_HELP = """\
Compare Theorem 6.1's bound with Monte-Carlo P_H^δ over random instances (N in 2..4,
d in 1..3, five laws of the means, random weights and δ). Reports how often the bound
holds and lists every counterexample (confidence interval entirely below the bound).
Limits: --instances <= 10000, --mc-samples <= 1e8, instances * mc-samples <= 1e9.
A progress bar on stderr (when it is a terminal) counts the applicable instances.

example:
  deltahall theory check --instances 100 --mc-samples 20000 --seed 0
"""


def register(sub: argparse._SubParsersAction, name: str, summary: str) -> None:
    from deltahall.experiments.theory_checks import BoundConfig, CheckConfig, WitnessConfig

    p = sub.add_parser(
        name,
        help=summary,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ts = p.add_subparsers(dest="theory_command", metavar="SUBCOMMAND")
    fmt = argparse.RawDescriptionHelpFormatter

    w = ts.add_parser(
        "witness",
        help="build and verify a δ-hallucination witness",
        description=_WITNESS_HELP,
        formatter_class=fmt,
    )
    _dataclass_options(w, WitnessConfig, flags={"as_written"})
    _common(w)
    w.set_defaults(handler=_witness, config_cls=WitnessConfig)

    b = ts.add_parser(
        "bound",
        help="Theorem 6.1 bound vs Monte-Carlo P_H^δ for one instance",
        description=_BOUND_HELP,
        formatter_class=fmt,
    )
    _dataclass_options(b, BoundConfig)
    _common(b)
    b.set_defaults(handler=_bound, config_cls=BoundConfig)

    c = ts.add_parser(
        "check",
        help="Theorem 6.1 over random instances",
        description=_CHECK_HELP,
        formatter_class=fmt,
    )
    _dataclass_options(c, CheckConfig)
    _common(c)
    c.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    c.set_defaults(handler=_check, config_cls=CheckConfig)

    f = ts.add_parser(
        "figures",
        help="regenerate Figures 2 and 8 (PNG + SVG)",
        description="Write figures/figure_2 and figures/figure_8 (.png, .svg) into --out-dir.",
    )
    f.add_argument(
        "--out-dir",
        default="runs/theory-figures",
        help="run directory (default runs/theory-figures)",
    )
    f.add_argument("--json", action="store_true", help="print machine-readable JSON")
    _resume_option(f)
    f.set_defaults(handler=_figures)
    p.set_defaults(handler=lambda args: (p.print_help(), 2)[1])


def _dataclass_options(
    p: argparse.ArgumentParser,
    cls: type,
    *,
    flags: set[str] = frozenset(),  # type: ignore[assignment]
) -> None:
    """One option per config field; required fields say so; boolean ``flags`` take no value."""
    add_dataclass_arguments(p, cls, exclude=tuple(flags))
    required = {f.name for f in dataclasses.fields(cls) if f.metadata.get("required")}
    for action in p._actions:
        if action.help and action.dest in required:
            action.help = action.help.replace("(default: None)", "(required)")
        elif action.help:  # an unset option: its help says what the default is
            action.help = action.help.replace(" (default: None)", "")
    for f in dataclasses.fields(cls):
        if f.name in flags:
            p.add_argument(
                "--" + f.name.replace("_", "-"),
                dest=f.name,
                action="store_const",
                const=True,
                default=_UNSET,
                help=f"{f.metadata.get('help', '')} (default: off)",
            )


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        default=None,
        help="TOML or JSON file with option values (the command line wins)",
    )
    p.add_argument(
        "--json", action="store_true", help="print machine-readable (strict) JSON instead of tables"
    )
    p.add_argument(
        "--out-dir", default=None, help="also write manifest and results into this run directory"
    )
    _resume_option(p)


def _resume_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--resume-from-checkpoint",
        choices=["latest"],
        default=None,
        help="'latest': redo the run in --out-dir (same settings required); unset: refuse a "
        "folder that holds one",
    )


def _config(args: argparse.Namespace) -> Any:
    """The validated config of this sub-command; a missing required option is one line, exit 2."""
    cls = args.config_cls
    if args.config is None:
        missing = [
            f.name
            for f in dataclasses.fields(cls)
            if f.metadata.get("required") and getattr(args, f.name, _UNSET) is _UNSET
        ]
        if missing:
            raise ValueError(
                "the following options are required: "
                + ", ".join("--" + m.replace("_", "-") for m in missing)
            )
    try:
        return config_from_args(cls, args, config_file=args.config)
    except TypeError as exc:  # a required field missing from the config file as well
        if "required" in str(exc) and "argument" in str(exc):
            names = [f.name for f in dataclasses.fields(cls) if f.metadata.get("required")]
            raise ValueError(
                f"options {', '.join('--' + n.replace('_', '-') for n in names)} are required "
                f"(on the command line or in {args.config})"
            ) from None
        raise


def _table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    def cell(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.6g}"
        if isinstance(v, (list, tuple)):
            inner = ", ".join(f"{x:.4g}" if isinstance(x, float) else str(x) for x in v[:4])
            return "[" + inner + (", ...]" if len(v) > 4 else "]")
        return str(v)

    body = [[cell(r.get(c, "")) for c in cols] for r in rows]
    widths = [
        max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(cols)
    ]
    lines = ["  ".join(c.ljust(wd) for c, wd in zip(cols, widths, strict=True))]
    lines.append("  ".join("-" * wd for wd in widths))
    lines += ["  ".join(x.ljust(wd) for x, wd in zip(b, widths, strict=True)) for b in body]
    return "\n".join(lines)


def _dumps(payload: Any) -> str:
    """Strict JSON: non-finite numbers become null and ``null_reasons`` says where and what they were."""
    from deltahall.io import dumps_json

    return dumps_json(payload, indent=None).rstrip("\n")


T = TypeVar("T")


@dataclass(frozen=True)
class FiguresConfig:
    """``theory figures`` has no settings: Figures 2 and 8 are fixed."""


def _computed(
    args: argparse.Namespace,
    cfg: Any,
    name: str,
    compute: Callable[[], T],
    files: Callable[[T], tuple[Any, list[dict[str, Any]] | None]],
) -> T:
    """``compute()``; with ``--out-dir``, as a run of the shared runner that writes ``files(value)``:
    ``<name>.json`` (the payload, atomically, last) and ``<name>.csv`` (the rows, if any)."""
    if not args.out_dir:
        return compute()
    from deltahall.experiments._run import Experiment, Job, OpenRun, Outcome, RunOptions, execute

    def body(job: Job, opened: OpenRun) -> Outcome:
        payload, rows = files(opened.prepared)
        if rows is not None:
            opened.rd.write_csv(f"{name}.csv", rows)
        return Outcome(result=payload, value=opened.prepared)

    experiment = Experiment(
        name=f"theory-{name}",
        body=body,
        prepare=lambda job, pending: compute(),
        result_name=f"{name}.json",
    )
    run = RunOptions(
        out_dir=Path(args.out_dir),
        resume_from_checkpoint=args.resume_from_checkpoint,
        progress=False,
    )
    value: T = execute(experiment, Job(settings=cfg, run=run))
    return value


def _witness(args: argparse.Namespace) -> int:
    from deltahall.experiments.theory_checks import run_witness, witness_payload

    cfg = _config(args)
    th = cfg.theorem

    def files(results: Any) -> tuple[dict[str, Any], None]:
        dicts = [witness_payload(r) for r in results]
        payload: dict[str, Any] = (
            dicts[0]
            if len(dicts) == 1
            else {
                "theorem": th,
                "hallucinates": all(r.hallucinates for r in results),
                "inputs": dicts,
            }
        )
        return payload, None

    results = _computed(args, cfg, "witness", lambda: run_witness(cfg), files)
    dicts = [witness_payload(r) for r in results]
    payload = files(results)[0]
    if args.json:
        print(_dumps(payload))
    else:
        for j, (r, dct) in enumerate(zip(results, dicts, strict=True)):
            head = f"Theorem {th}{' (as written)' if r.as_written else ''}"
            if len(results) > 1:
                head += f", input {j + 1}/{len(results)}"
            print(
                f"{head}: δ = {r.delta:g}, N = {r.mixture.n_states}, d = {r.mixture.dim}, ε = {r.eps:g}"
            )
            print(
                f"optimal estimate A*(X) = {_table([{'x': r.estimate.tolist()}], ['x']).splitlines()[-1].strip()}"
            )
            what = "max density over the ε-ball" if r.eps > 0 else "density at the estimate"
            rows = [
                {
                    "state": s["index"] + 1,
                    "weight": s["weight"],
                    "mean": s["mean"],
                    "density": s["density"],
                    "log_density": s["log_density"]
                    if s["log_density"] is not None
                    else "< -1.8e308",
                    "<= δ": not s["exceeds_delta"],
                }
                for s in dct["states"]
            ]
            print(f"({what})")
            print(_table(rows, ["state", "weight", "mean", "density", "log_density", "<= δ"]))
            for note in r.notes:
                print(f"note: {note}")
            verdict = "δ-hallucinates" if r.hallucinates else "does NOT δ-hallucinate"
            print(
                f"verdict: the estimate {verdict} (log δ - max log density = {r.log_margin:.6g})\n"
            )
    return 0 if all(r.hallucinates for r in results) or cfg.as_written else 1


def _bound(args: argparse.Namespace) -> int:
    from deltahall.experiments.theory_checks import bound_payload, run_bound

    cfg = _config(args)

    def files(rep: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        payload = bound_payload(rep)
        return payload, payload["states"]

    rep = _computed(args, cfg, "bound", lambda: run_bound(cfg), files)
    payload = bound_payload(rep)
    if args.json:
        print(_dumps(payload))
        return 0
    b, est = rep.bound, rep.estimate
    print(
        f"Theorem 6.1: N = {cfg.states}, d = {cfg.dim}, δ = {cfg.delta:g}, r = max_i r_i = {rep.radius:.6g}, "
        f"d = (Σ p_j² σ_j)^½ = {b.optimum_spread:.6g}"
    )
    print(
        _table(
            payload["states"],
            ["state", "p_i", "sigma_i", "K_i", "alpha_i", "theta_i", "P_i", "P_i*K_i"],
        )
    )
    if b.stated_bound is not None:
        print(f"stated bound  Π P_i K_i = {b.stated_bound:.6g}")
        print(f"union bound (justified by the lemmas) = {b.union_bound:.6g}")
    else:
        print(f"the theorem does not apply: {b.reason}")
    print(
        f"Monte-Carlo P_H^δ = {est.p_hat:.6g}  ({est.confidence:.0%} CI [{est.ci_low:.6g}, {est.ci_high:.6g}], {est.n_samples} draws)"
    )
    if rep.holds is not None:
        print("verdict: the bound " + ("holds" if rep.holds else "FAILS") + " on this instance")
    return 0


def _check(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from deltahall.experiments.theory_checks import check_payload, run_check

    cfg = _config(args)
    bar = tqdm(
        total=cfg.instances,
        desc="theory check",
        unit="instance",
        file=sys.stderr,
        disable=True if args.no_progress else None,
    )

    def progress(done: int, tried: int) -> None:
        bar.update(done - bar.n)
        bar.set_postfix_str(f"{tried} drawn")

    def compute() -> Any:
        try:
            return run_check(cfg, progress=progress)
        finally:
            bar.close()

    def files(res: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        payload = check_payload(res)
        return payload, [{k: v for k, v in r.items() if k != "weights"} for r in payload["rows"]]

    res = _computed(args, cfg, "check", compute, files)
    payload = check_payload(res)
    if args.json:
        print(_dumps(payload))
        return 0
    cols = [
        "N",
        "dim",
        "delta",
        "laws",
        "r",
        "bound",
        "union_bound",
        "p_hat",
        "ci_low",
        "ci_high",
        "holds",
    ]
    ratio = "n/a (no applicable instance)" if res.min_ratio is None else f"{res.min_ratio:.6g}"
    print(
        f"Theorem 6.1 check: {res.n_tried} random instances drawn, {res.n_applicable} where the theorem applies"
    )
    print(
        f"bound held (p_hat >= bound) on {res.n_held}/{res.n_applicable}; counterexamples (CI below bound): {len(res.counterexamples)}"
    )
    print(f"smallest p_hat / bound: {ratio}; union-bound violations: {res.union_violations}")
    if res.counterexamples:
        print("counterexamples:")
        print(_table(payload["counterexamples"], cols))
    worst = sorted(
        payload["rows"], key=lambda r: r["p_hat"] / r["bound"] if r["bound"] > 0 else math.inf
    )[:5]
    print("tightest instances:")
    print(_table(worst, cols))
    return 0


def _figures(args: argparse.Namespace) -> int:
    from deltahall.experiments._run import Experiment, Job, OpenRun, RunOptions, execute
    from deltahall.plotting.theory import save_theory_figures

    def body(job: Job, opened: OpenRun) -> dict[str, Any]:
        return save_theory_figures(opened.root)

    run = RunOptions(
        out_dir=Path(args.out_dir),
        resume_from_checkpoint=args.resume_from_checkpoint,
        progress=False,
    )
    info = execute(
        Experiment(name="theory-figures", body=body, outputs=("figures",)),
        Job(settings=FiguresConfig(), run=run),
    )
    if args.json:
        print(_dumps(info))
    else:
        for name, v in info.items():
            print(f"{name}: " + ", ".join(v["paths"]))
    return 0
