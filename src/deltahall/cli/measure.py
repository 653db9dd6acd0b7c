"""``deltahall measure``: a calibrated δ-hallucination rate of your own model.

Every option is a field of :class:`deltahall.measure.pipeline.MeasureConfig` (defaults in
one place). Examples::

    deltahall measure --reference real.npy --reference-labels states.npy \\
        --generated gen.npy --generated-prompts prompts.npy --out-dir runs/m1
    deltahall measure --reference real_texts.jsonl --generated gen.jsonl --embedder @minilm \\
        --select hcdr --out-dir runs/m2
"""

from __future__ import annotations

import argparse
import sys

from deltahall.cli.config_args import add_dataclass_arguments, config_from_args


def register(sub: argparse._SubParsersAction, name: str, summary: str) -> None:
    from deltahall.measure.pipeline import MeasureConfig

    p = sub.add_parser(
        name,
        help=summary,
        description=(
            "Measure the δ-hallucination rate of generated samples against real samples with latent states: "
            "per-state Gaussian mixtures on a fit part of the reference, split-conformal p-values on a "
            "calibration part (a fresh real sample is flagged with probability <= alpha), the rate with a "
            "Wilson 95% interval against the floor of a held-out real part, per prompt. Writes measure.json, "
            "samples.csv and report.html to --out-dir."
        ),
    )
    p.add_argument("--config", help="TOML or JSON file with option values")
    add_dataclass_arguments(p, MeasureConfig)
    p.add_argument("--json", action="store_true", help="print measure.json to stdout")
    p.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    from deltahall.experiments.measure_run import run
    from deltahall.io.rundir import dumps_json
    from deltahall.measure.pipeline import MeasureConfig
    from deltahall.measure.report import headline, selection_text

    cfg = config_from_args(MeasureConfig, args, config_file=args.config)
    res = run(cfg)
    s = res.summary
    if args.json:
        sys.stdout.write(dumps_json(s))
        return 0
    if res.discovery is not None:
        ds = s["discovered_states"]
        print(
            f"--states auto: {ds['n_states']} states (BIC), sizes {ds['sizes']}. "
            "WARNING: these are an estimate of the latent variable; the rate is relative to them."
        )
        for k, reps in enumerate(ds["representatives"]):
            print(f"  state-{k}: " + " | ".join(str(r) for r in reps[:3]))
    print(headline(s))
    for r in s["per_prompt"]:
        lo, hi = r["rate_ci"]
        inside = "inside" if r["mean_embedding_inside"] else "OUTSIDE"
        print(
            f"  {r['prompt']!r:>30}: n={r['n']:<6d} rate {r['rate']:.3f} [{lo:.3f}, {hi:.3f}]  mean embedding {inside}"
        )
    if "selection" in s:
        print(selection_text(s["selection"]))
    if "baselines" in s:
        for b in s["baselines"]:
            print(f"  {b['method']:>20}: rate {b['rate']:.3f}  floor {b['floor']:.3f}")
    print(
        f"outputs: {res.out_dir} (measure.json, samples.csv{', report.html' if cfg.report else ''})"
    )
    return 0
