"""``deltahall theory``: check the paper's theorems numerically.

Sub-commands: ``witness`` (Theorems 5.1, 5.2, 5.3, Corollary 5.2.1, C.1),
``bound`` (Theorem 6.1 for one instance), ``check`` (Theorem 6.1 over random
instances) and ``figures`` (Figures 2 and 8).
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

import numpy as np

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

example:
  deltahall theory bound --delta 0.5 --states 2 --within-scale 0.05 --mean-law cube --mean-scale 1
"""

_CHECK_HELP = """\
Compare Theorem 6.1's bound with Monte-Carlo P_H^δ over random instances (N in 2..4,
d in 1..3, five laws of the means, random weights and δ). Reports how often the bound
holds and lists every counterexample (confidence interval entirely below the bound).

example:
  deltahall theory check --instances 100 --mc-samples 20000 --seed 0
"""


def register(sub: argparse._SubParsersAction, name: str, summary: str) -> None:
    p = sub.add_parser(name, help=summary, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ts = p.add_subparsers(dest="theory_command", metavar="SUBCOMMAND")
    fmt = argparse.RawDescriptionHelpFormatter

    w = ts.add_parser("witness", help="build and verify a δ-hallucination witness", description=_WITNESS_HELP, formatter_class=fmt)
    w.add_argument("--theorem", required=True, choices=["5.1", "5.2", "5.3", "5.2.1", "C.1"])
    w.add_argument("--delta", type=float, required=True, help="density tolerance δ in (0, 1]")
    w.add_argument("--states", type=int, required=True, help="number of latent states N >= 2")
    w.add_argument("--dim", type=int, default=None, help="output dimension d >= 1 (for C.1: number of classes C >= 2, default N)")
    w.add_argument("--weights", type=float, nargs="+", default=None, help="p_1..p_N, positive, summing to 1 (default uniform)")
    w.add_argument("--eps", type=float, default=None, help="5.2: radius ε >= 0 of the ball of near-optimal estimates")
    w.add_argument("--lipschitz", type=float, default=None, help="5.3: Lipschitz constant L >= 0 (default 1)")
    w.add_argument("--hint-bound", type=float, default=None, help="5.3: hint norm bound B >= 0 (default 1)")
    w.add_argument("--scale", type=float, default=None, help="length scale s > 0: covariances s²·C (default 1)")
    w.add_argument("--cov", type=float, nargs="+", default=None, help="d*d entries (row-major) of the shape matrix C, positive definite")
    w.add_argument("--inputs", type=int, default=None, help="5.2.1: number of inputs S >= 1 (default 3)")
    w.add_argument("--as-written", action="store_true", help="use the paper's construction literally (5.1, 5.2, C.1)")
    _common(w)
    w.set_defaults(handler=_witness)

    b = ts.add_parser("bound", help="Theorem 6.1 bound vs Monte-Carlo P_H^δ for one instance", description=_BOUND_HELP, formatter_class=fmt)
    b.add_argument("--delta", type=float, required=True, help="density tolerance δ in (0, 1]")
    b.add_argument("--states", type=int, default=2, help="number of latent states N >= 2")
    b.add_argument("--weights", type=float, nargs="+", default=None, help="p_1..p_N (default uniform)")
    b.add_argument("--dim", type=int, default=1, help="output dimension d")
    b.add_argument("--within-scale", type=float, nargs="+", default=[0.1], help="s_i of N(μ_i, s_i² I): one value or N")
    b.add_argument("--mean-law", default="gaussian", choices=["gaussian", "sphere", "cube", "student_t", "spike"], help="law of μ_i - μ_0")
    b.add_argument("--mean-scale", type=float, nargs="+", default=[1.0], help="τ_i of the mean law: one value or N")
    b.add_argument("--law-param", type=float, default=0.0, help="ν > 4 for student_t, q in (0,1] for spike")
    b.add_argument("--mc-samples", type=int, default=200_000, help="Monte-Carlo draws of the means")
    b.add_argument("--confidence", type=float, default=0.95, help="confidence level of the interval")
    b.add_argument("--seed", type=int, default=0)
    _common(b)
    b.set_defaults(handler=_bound)

    c = ts.add_parser("check", help="Theorem 6.1 over random instances", description=_CHECK_HELP, formatter_class=fmt)
    c.add_argument("--instances", type=int, default=100, help="applicable instances to test")
    c.add_argument("--mc-samples", type=int, default=20_000, help="Monte-Carlo draws per instance")
    c.add_argument("--confidence", type=float, default=0.99)
    c.add_argument("--seed", type=int, default=0)
    _common(c)
    c.set_defaults(handler=_check)

    f = ts.add_parser("figures", help="regenerate Figures 2 and 8 (PNG + SVG)", description="Write figures/figure_2 and figures/figure_8 (.png, .svg) into --out-dir.")
    f.add_argument("--out-dir", default="runs/theory-figures", help="run directory (default runs/theory-figures)")
    f.add_argument("--json", action="store_true", help="print machine-readable JSON")
    f.set_defaults(handler=_figures)
    p.set_defaults(handler=lambda args: (p.print_help(), 2)[1])


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of tables")
    p.add_argument("--out-dir", default=None, help="also write manifest and results into this run directory")


def _table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.6g}"
        if isinstance(v, (list, tuple)):
            inner = ", ".join(f"{x:.4g}" if isinstance(x, float) else str(x) for x in v[:4])
            return "[" + inner + (", ...]" if len(v) > 4 else "]")
        return str(v)

    body = [[cell(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(wd) for c, wd in zip(cols, widths, strict=True))]
    lines.append("  ".join("-" * wd for wd in widths))
    lines += ["  ".join(x.ljust(wd) for x, wd in zip(b, widths, strict=True)) for b in body]
    return "\n".join(lines)


def _finite(name: str, v: Any) -> None:
    vals = v if isinstance(v, list) else [v]
    for x in vals:
        if x is not None and not math.isfinite(x):
            raise ValueError(f"`{name}` must be finite; got {x}.")


def _save(args: argparse.Namespace, name: str, payload: Any, rows: list[dict[str, Any]] | None = None) -> None:
    if not args.out_dir:
        return
    from deltahall.io import RunDir

    rd = RunDir(args.out_dir)
    cfg = {k: v for k, v in vars(args).items() if k != "handler"}
    rd.write_manifest(cfg, seed=cfg.get("seed"))
    rd.write_json(f"{name}.json", payload)
    if rows is not None:
        rd.write_csv(f"{name}.csv", rows)


def _witness(args: argparse.Namespace) -> int:
    from deltahall.theory import witnesses as W

    th = args.theorem
    for nm in ("delta", "weights", "eps", "lipschitz", "hint_bound", "scale", "cov"):
        _finite(nm, getattr(args, nm))
    allowed = {"5.1": {"scale", "cov"}, "5.2": {"eps", "scale", "cov"}, "5.3": {"lipschitz", "hint_bound", "scale", "cov"},
               "5.2.1": {"scale", "inputs"}, "C.1": {"scale"}}[th]
    if args.as_written:
        allowed = {"5.1": {"scale"}, "5.2": {"eps"}, "C.1": set()}.get(th)  # type: ignore[assignment]
        if allowed is None:
            raise ValueError(f"`--as-written` exists for theorems 5.1, 5.2 and C.1; got {th} (5.3 applies 5.2's construction).")
    for opt in ("eps", "lipschitz", "hint_bound", "scale", "cov", "inputs"):
        if getattr(args, opt) is not None and opt not in allowed:
            raise ValueError(f"`--{opt.replace('_', '-')}` does not apply to Theorem {th}{' as written' if args.as_written else ''}.")
    dim = 1 if args.dim is None and th != "C.1" else args.dim
    cov = None
    if args.cov is not None:
        k = int(round(math.sqrt(len(args.cov))))
        if k * k != len(args.cov) or k != dim:
            raise ValueError(f"`cov` must have dim*dim = {dim * dim} entries; got {len(args.cov)}.")
        cov = np.asarray(args.cov).reshape(k, k)
    scale = 1.0 if args.scale is None else args.scale
    if args.as_written:
        if th == "5.1":
            res = W.theorem_5_1_as_written(args.delta, args.states, dim, args.weights, scale)
        elif th == "5.2":
            res = W.theorem_5_2_as_written(args.delta, args.states, dim, args.weights, 0.0 if args.eps is None else args.eps)
        else:
            if args.weights is not None:
                raise ValueError("`--weights` does not apply to Theorem C.1 as written (p_i = 1/N).")
            if args.dim is not None:
                raise ValueError("`--dim` does not apply to Theorem C.1 as written (C = N classes).")
            res = W.theorem_c_1_as_written(args.delta, args.states)
        results = [res]
    elif th == "5.1":
        results = [W.theorem_5_1(args.delta, args.states, dim, args.weights, scale, cov)]
    elif th == "5.2":
        results = [W.theorem_5_2(args.delta, args.states, dim, args.weights, 0.0 if args.eps is None else args.eps, scale, cov)]
    elif th == "5.3":
        lip = 1.0 if args.lipschitz is None else args.lipschitz
        hb = 1.0 if args.hint_bound is None else args.hint_bound
        results = [W.theorem_5_3(args.delta, args.states, dim, args.weights, lip, hb, scale, cov)]
    elif th == "5.2.1":
        results = list(W.corollary_5_2_1(args.delta, 3 if args.inputs is None else args.inputs, args.states, dim, args.weights, scale).witnesses)
    else:
        results = [W.theorem_c_1(args.delta, args.states, args.dim, args.weights, scale)]
    dicts = [r.to_dict() for r in results]
    payload: dict[str, Any] = dicts[0] if len(dicts) == 1 else {"theorem": th, "hallucinates": all(r.hallucinates for r in results), "inputs": dicts}
    _save(args, "witness", payload)
    if args.json:
        print(json.dumps(payload, allow_nan=True))
    else:
        for j, (r, dct) in enumerate(zip(results, dicts, strict=True)):
            head = f"Theorem {th}{' (as written)' if r.as_written else ''}"
            if len(results) > 1:
                head += f", input {j + 1}/{len(results)}"
            print(f"{head}: δ = {r.delta:g}, N = {r.mixture.n_states}, d = {r.mixture.dim}, ε = {r.eps:g}")
            print(f"optimal estimate A*(X) = {_table([{'x': r.estimate.tolist()}], ['x']).splitlines()[-1].strip()}")
            what = "max density over the ε-ball" if r.eps > 0 else "density at the estimate"
            rows = [{"state": s["index"] + 1, "weight": s["weight"], "mean": s["mean"], "density": s["density"],
                     "log_density": s["log_density"], "<= δ": not s["exceeds_delta"]} for s in dct["states"]]
            print(f"({what})")
            print(_table(rows, ["state", "weight", "mean", "density", "log_density", "<= δ"]))
            for note in r.notes:
                print(f"note: {note}")
            verdict = "δ-hallucinates" if r.hallucinates else "does NOT δ-hallucinate"
            print(f"verdict: the estimate {verdict} (log δ - max log density = {r.log_margin:.6g})\n")
    return 0 if all(r.hallucinates for r in results) or args.as_written else 1


def _per_state(name: str, vals: list[float], n: int) -> list[float]:
    _finite(name, vals)
    if len(vals) == 1:
        return vals * n
    if len(vals) != n:
        raise ValueError(f"`{name}` must have 1 or N = {n} values; got {len(vals)}.")
    return vals


def _bound(args: argparse.Namespace) -> int:
    from deltahall._validation import check_int
    from deltahall.theory.bound import (
        IndependentMeans,
        StateMeanLaw,
        estimate_hallucination_probability,
        theorem_6_1_bound,
    )
    from deltahall.theory.mixtures import GaussianState
    from deltahall.theory.regions import covering_radius

    _finite("delta", args.delta)
    n = check_int(args.states, "states", low=2)
    w = np.full(n, 1.0 / n) if args.weights is None else np.asarray(args.weights)
    _finite("weights", list(w))
    if w.size != n:
        raise ValueError(f"`weights` must have N = {n} entries; got {w.size}.")
    ws = _per_state("within_scale", args.within_scale, n)
    ms = _per_state("mean_scale", args.mean_scale, n)
    d = check_int(args.dim, "dim", low=1)
    within = [GaussianState.isotropic(np.zeros(d), s) for s in ws]
    laws = tuple(StateMeanLaw(args.mean_law, m, d, args.law_param) for m in ms)
    means = IndependentMeans(tuple([0.0] * d), laws)
    r = max(covering_radius(g, args.delta).radius for g in within)
    b = theorem_6_1_bound(w, means.sigmas, means.kurtosis, r)
    est = estimate_hallucination_probability(w, within, args.delta, means, args.mc_samples, args.seed, confidence=args.confidence)
    payload = {"d": b.d, "r": r, "applicable": b.applicable, "reason": b.reason, "bound": b.product, "union_bound": b.union_bound,
               "states": b.rows(), "p_hat": est.p_hat, "ci": [est.ci_low, est.ci_high], "confidence": est.confidence,
               "mc_samples": est.n_samples, "holds": bool(b.applicable and est.p_hat >= b.product)}
    _save(args, "bound", payload, b.rows())
    if args.json:
        print(json.dumps(payload, allow_nan=True))
        return 0
    print(f"Theorem 6.1: N = {n}, d = {d}, δ = {args.delta:g}, r = max_i r_i = {r:.6g}, d = (Σ p_j² σ_j)^½ = {b.d:.6g}")
    print(_table(b.rows(), ["state", "p_i", "sigma_i", "K_i", "alpha_i", "theta_i", "P_i", "P_i*K_i"]))
    if b.applicable:
        print(f"stated bound  Π P_i K_i = {b.product:.6g}")
        print(f"union bound (justified by the lemmas) = {b.union_bound:.6g}")
    else:
        print(f"the theorem does not apply: {b.reason}")
    print(f"Monte-Carlo P_H^δ = {est.p_hat:.6g}  ({est.confidence:.0%} CI [{est.ci_low:.6g}, {est.ci_high:.6g}], {est.n_samples} draws)")
    if b.applicable:
        print("verdict: the bound " + ("holds" if est.p_hat >= b.product else "FAILS") + " on this instance")
    return 0


def _check(args: argparse.Namespace) -> int:
    from deltahall.theory.bound import check_theorem_6_1

    res = check_theorem_6_1(args.instances, args.mc_samples, args.seed, confidence=args.confidence)
    payload = {"n_tried": res.n_tried, "n_applicable": res.n_applicable, "n_held": res.n_held,
               "n_counterexamples": len(res.counterexamples), "min_ratio_p_hat_over_bound": res.min_ratio,
               "union_violations": res.union_violations, "counterexamples": list(res.counterexamples), "rows": list(res.rows)}
    _save(args, "check", payload, [{k: v for k, v in r.items() if k != "weights"} for r in res.rows])
    if args.json:
        print(json.dumps(payload, allow_nan=True))
        return 0
    cols = ["N", "dim", "delta", "laws", "r", "bound", "union_bound", "p_hat", "ci_low", "ci_high", "holds"]
    print(f"Theorem 6.1 check: {res.n_tried} random instances drawn, {res.n_applicable} where the theorem applies")
    print(f"bound held (p_hat >= bound) on {res.n_held}/{res.n_applicable}; counterexamples (CI below bound): {len(res.counterexamples)}")
    print(f"smallest p_hat / bound: {res.min_ratio:.6g}; union-bound violations: {res.union_violations}")
    if res.counterexamples:
        print("counterexamples:")
        print(_table(list(res.counterexamples), cols))
    worst = sorted(res.rows, key=lambda r: r["p_hat"] / r["bound"] if r["bound"] > 0 else math.inf)[:5]
    print("tightest instances:")
    print(_table(worst, cols))
    return 0


def _figures(args: argparse.Namespace) -> int:
    from deltahall.plotting.theory import save_theory_figures

    info = save_theory_figures(args.out_dir)
    if args.json:
        print(json.dumps(info))
    else:
        for name, v in info.items():
            print(f"{name}: " + ", ".join(v["paths"]))
    return 0
