"""The text-to-image section of the HTML report (``deltahall report``).

:func:`main_job_section` runs the ``digits`` preset at reduced size (about a minute
on 2 CPU cores); :func:`build_section` describes any finished (or partial) run
directory, tiny or paper scale.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from deltahall.io import Section

logger = logging.getLogger(__name__)

#: The reduced digits run of the main job (everything else: the digits preset).
MAIN_JOB_OVERRIDES: dict[str, Any] = dict(
    train_steps=300,
    checkpoint_every=100,
    num_samples=64,
    sample_batch_size=64,
    inference_steps=10,
)
#: Run options of the main job's digits run (``RunOptions`` fields; the out dir is the step's).
MAIN_JOB_RUN: dict[str, Any] = dict(device="cpu", progress=False)

TOY_NOTE = (
    "This is the offline digits preset at reduced size: a tiny UNet (about 1 M parameters) trained "
    "from scratch for a few hundred steps on scikit-learn's 8x8 digits 0 and 1, judged by a small CNN's "
    "features. Its numbers show that the pipeline — training, checkpoints, seeded batched sampling, "
    "embedding, the instrument's rates with intervals and floor, the mean-embedding test — runs end to end and behaves sensibly; they are "
    "not evidence about Stable Diffusion. The paper-scale command is in docs/t2i.md."
)


def _fmt_prompt(p: str) -> str:
    return repr(p) if p else "'' (unconditional)"


def _ci(lo: float, hi: float) -> str:
    return f"[{lo:.3f}, {hi:.3f}]"


def _rule_label(rule: str) -> str:
    return {"conformal": "conformal", "percentile": "paper's percentile rule"}.get(rule, rule)


def build_section(run_dir: str | Path, *, title: str | None = None) -> Section:
    """A report section from a ``t2i run`` directory (figures must exist: see :func:`.results.save_figures`).

    Raises
    ------
    FileNotFoundError
        If ``run_dir`` has no ``metrics.csv``.
    """
    from deltahall.experiments.t2i.results import (
        read_instrument,
        read_losses,
        read_manifest,
        read_measure,
        read_metrics,
        read_result,
    )

    root = Path(run_dir)
    metrics, losses = read_metrics(root), read_losses(root)
    manifest = read_manifest(root)
    cfg = manifest.get("config", {})
    inst = read_instrument(root) if (root / "instrument.json").is_file() else {}
    summary = read_result(root)
    preset = cfg.get("preset", "?")
    sec = Section(title or f"Text-to-image (Section 7.3, Figures 5-7) — preset {preset}")
    if preset == "digits":
        sec.note(TOY_NOTE)
    steps = sorted({r["step"] for r in metrics})
    main, other = (inst.get("rules") or [cfg.get("calibration", "conformal"), "percentile"])[:2]
    alpha = float(inst.get("alpha", float(cfg.get("percentile", 10)) / 100))
    sec.text(
        f"Model {cfg.get('model')} trained on {cfg.get('data')} classes {cfg.get('classes')} with captions "
        f"{cfg.get('captions')} ({cfg.get('caption_dropout')} empty-caption dropout), {cfg.get('train_steps')} steps "
        f"of batch {cfg.get('train_batch_size')}, evaluated at steps {steps}. At each evaluation, K = "
        f"{cfg.get('num_samples')} images per prompt ({cfg.get('inference_steps')} {cfg.get('sampler')} steps, "
        f"guidance {cfg.get('guidance_scale')}, the same initial noise at every checkpoint) are embedded with "
        f"{inst.get('embedder', cfg.get('embedder'))} and measured with the one instrument (deltahall.measure), "
        "fitted once per run on the real embeddings with the classes as latent states: per class a density "
        f"({cfg.get('n_components')} {cfg.get('covariance_type')} components after L2-normalisation and PCA to "
        f"{cfg.get('pca_dim')}) on a fit part, calibrated on a calibration part at level α = {alpha:g} "
        f"(= percentile {cfg.get('percentile')} / 100), and a held-out test part whose flagged share is the floor. "
        "A sample is a δ-hallucination when it is inside no class's region. Two rules on the same fit, each labelled: "
        "conformal (flagged when its split-conformal p-value is at most α, so a fresh real image is flagged with "
        "probability at most α) and the paper's percentile rule (a log-density threshold at the 100α-th percentile "
        f"of each class's calibration scores, no finite-sample statement). Headline rule: {_rule_label(main)}."
    )
    if inst:
        info = inst.get("embedder_info") or {}
        acc = (
            f" The digit CNN's accuracy on its held-out digits: {info['heldout_accuracy']:.3f}."
            if "heldout_accuracy" in info
            else ""
        )
        sp = inst["split"]
        floors = "; ".join(
            f"{_rule_label(r)} {v['floor']['rate']:.3f} {_ci(*v['floor']['ci'])} ({v['floor']['k']}/{v['floor']['n']})"
            for r, v in inst["per_rule"].items()
        )
        sec.text(
            f"Reference: {inst.get('n_real')} real images ({inst.get('per_class')} per class), embedding dimension "
            f"{inst.get('dim')}; per class fit / calibration / test = {sp['fit']} / {sp['calibration']} / {sp['test']}.{acc}"
        )
        sec.text(
            f"Read the rates against the floor, the flagged share of the held-out real test images (Wilson 95%): "
            f"{floors}. A generator that reproduced the real images exactly would show a rate near the floor, not zero "
            "(the dotted line and grey band in Figures 5-6). The mean-embedding test has no such floor: the mean of "
            "real images of one class lies deep inside its region."
        )
    rows = [
        {
            "step": r["step"],
            "prompt": _fmt_prompt(r["prompt"]),
            "loss": r["loss"],
            f"rate [95% CI] ({_rule_label(main)})": _row_rate(r, ""),
            f"excess p ({_rule_label(main)})": r.get("excess_p_value", math.nan),
            f"rate [95% CI] ({_rule_label(other)})": _row_rate(r, f"_{other}"),
            "mean emb. in HCDR": r["mean_embedding_inside"],
            "mean image in HCDR": r["mean_image_inside"],
            "K": r["K"],
        }
        for r in sorted(metrics, key=lambda r: (r["step"], r["prompt_index"]))
    ]
    sec.table(
        rows,
        caption="Per checkpoint and prompt, the same K samples under both rules: rate = fraction outside "
        "the HCDR with its Wilson 95% interval; excess p = exact one-sided test of rate > floor, "
        "stratified by nearest class; 'mean emb.' = the estimate A*(X) (mean of the K embeddings) "
        f"inside the HCDR ({main})?",
    )
    floor = inst["per_rule"][main]["floor"]["rate"] if inst else None
    sec.text(_verdict(metrics, losses, floor))
    measured = read_measure(root)
    if measured:
        _final_section(sec, measured)
    figs = root / "figures"
    for name, cap in (
        (
            "fig5_rate_and_loss",
            "Figure 5: hallucination rate (mean over prompts; band: Wilson 95% interval "
            "of the pooled count; dashed: the other rule) and training loss; dotted: "
            "the floor, its interval shaded.",
        ),
        (
            "fig6_rate_per_prompt",
            "Figure 6: rate per prompt with Wilson 95% intervals, the other rule "
            "dashed, the floor dotted; red crosses: mean embedding outside the HCDR.",
        ),
        ("fig7_calibration", "Figure 7: calibration log-densities per state and the thresholds."),
        (
            "rate_vs_percentile",
            "The final checkpoint's rate, and the floor, as the level α varies.",
        ),
    ):
        if (figs / f"{name}.png").is_file():
            sec.figure(figs / f"{name}.png", cap)
    if steps:
        for p, prompt in sorted({(r["prompt_index"], r["prompt"]) for r in metrics}):
            g = root / "grids" / f"step-{steps[-1]:06d}_p{p}.png"
            if g.is_file():
                sec.figure(
                    g,
                    f"Samples flagged as hallucinations ({main}) at step {steps[-1]}, prompt "
                    f"{_fmt_prompt(prompt)} (most implausible first).",
                )
    if summary.get("seconds"):
        sec.text(
            "Wall time (s): " + ", ".join(f"{k} {v:.1f}" for k, v in summary["seconds"].items())
        )
    return sec


def _row_rate(r: dict[str, Any], suffix: str) -> str:
    key = f"rate{suffix}"
    if key not in r:
        return ""
    return f"{r[key]:.3f} {_ci(r[f'rate{suffix}_ci_low'], r[f'rate{suffix}_ci_high'])}"


def _final_section(sec: Section, final: dict[str, Any]) -> None:
    """The final checkpoint pooled over prompts (``measure.json``): both rules, selection, baselines."""
    from deltahall.measure.report import baselines_rows, selection_rows, selection_text

    rows = []
    for rule, s in final["per_rule"].items():
        rows.append(
            {
                "rule": _rule_label(rule),
                "flagged": f"{s['n_flagged']}/{s['n_generated']}",
                "rate [95% CI]": f"{s['rate']:.3f} {_ci(*s['rate_ci'])}",
                "floor [95% CI]": f"{s['floor']:.3f} {_ci(*s['floor_ci'])}",
                "excess p (stratified)": s["excess_p_value"],
                "excess p (pooled Fisher)": s["excess_p_value_pooled"],
                "states not reached": ", ".join(s["states_not_reached"]) or "none",
            }
        )
    sec.table(
        rows,
        caption=f"Final checkpoint (step {final['step']}), every prompt's samples together, α = "
        f"{final['alpha']:g}: one set of samples, one rate per rule (per-prompt rates: the table above).",
    )
    sel = final["selection"]
    sec.text(
        selection_text(sel) + " (Selection keeps the samples whose conformal p-value exceeds α.)"
    )
    sec.table(
        selection_rows(sel), caption="State shares (nearest state) before and after selection."
    )
    sec.table(
        baselines_rows(final["baselines"]),
        caption="The same split and the same samples, every method thresholded on the calibration part at the "
        "same α (HCDR = the instrument's densities under each rule).",
    )


def known_truth_rows(seed: int = 0, *, digits_cnn: bool = True) -> dict[str, list[dict[str, Any]]]:
    """Precision / recall of "outside" per method on the known-truth data sets.

    Synthetic Gaussian states, digits in pixel space and, when ``digits_cnn`` and the
    ``@digits-cnn`` embedder loads (torch installed; trained once into the cache, ~10 s),
    digits in that embedding.
    """
    from deltahall._validation import RunFailure
    from deltahall.measure.compare import compare_methods, digits_known_truth, synthetic_known_truth

    sets = [synthetic_known_truth(seed), digits_known_truth(seed)]
    if digits_cnn:
        try:
            from deltahall.models import load_embedder

            sets.append(digits_known_truth(seed, embedder=load_embedder("@digits-cnn")))
        except (ImportError, OSError, ValueError, RunFailure) as exc:
            logger.warning("known truth in the @digits-cnn embedding skipped: %s", exc)
    return {d.name: compare_methods(d) for d in sets}


def _verdict(
    metrics: list[dict[str, Any]], losses: list[dict[str, Any]], floor: float | None = None
) -> str:
    """Plain statement of the Figure 5 claim on this run: does the loss fall, does the rate stay above 0
    (and above the real-image floor), and how often is the mean embedding outside the HCDR."""
    trained = sorted({r["step"] for r in metrics if r["step"] > 0})
    if len(trained) < 2:
        return "Too few checkpoints to judge the Figure 5 claim."
    first = [r for r in metrics if r["step"] == trained[0]]
    last = [r for r in metrics if r["step"] == trained[-1]]
    lf, ll = first[0]["loss"], last[0]["loss"]
    falls = not (math.isnan(lf) or math.isnan(ll)) and ll < lf
    min_rate = min(r["rate"] for r in last)
    rates = "; ".join(
        f"{_fmt_prompt(r['prompt'])} {r['rate']:.3f}"
        + (f" {_ci(r['rate_ci_low'], r['rate_ci_high'])}" if "rate_ci_low" in r else "")
        for r in last
    )
    above = (
        ""
        if floor is None
        else (
            f"; {sum(r.get('excess_p_value', 1.0) < 0.05 for r in last)}/{len(last)} prompts significantly above the "
            f"real-image floor {floor:.3f} (stratified excess p < 0.05)"
        )
    )
    outside = "; ".join(
        f"{_fmt_prompt(p)} {sum(not r['mean_embedding_inside'] for r in metrics if r['prompt'] == p and r['step'] > 0)}"
        f"/{len(trained)}"
        for p in dict.fromkeys(
            r["prompt"] for r in sorted(metrics, key=lambda r: r["prompt_index"])
        )
    )
    return (
        f"Figure 5 claim on this run: interval loss {lf:.4f} at step {trained[0]} -> {ll:.4f} at step {trained[-1]} "
        f"({'falls' if falls else 'does NOT fall'}). Final rates: {rates} (lowest {min_rate:.3f}: "
        f"{'above zero' if min_rate > 0 else 'zero for some prompt'}{above}). Trained checkpoints where the mean "
        f"embedding A*(X) is outside the HCDR: {outside}."
    )


def main_job_config(run_dir: Path, seed: int) -> Any:
    """The main job's reduced digits config (a ``T2IConfig``) writing into ``run_dir``."""
    from deltahall.experiments.t2i import T2IConfig

    # A rerun of the main job continues (or just re-reports) the run it finds in ``run_dir``.
    resume = "latest" if (Path(run_dir) / "manifest.json").is_file() else None
    return T2IConfig.from_preset(
        "digits",
        seed=seed,
        out_dir=Path(run_dir),
        resume_from_checkpoint=resume,
        **MAIN_JOB_RUN,
        **MAIN_JOB_OVERRIDES,
    )


def reproduce_command(seed: int, out_dir: str = "DIR") -> str:
    """The ``deltahall t2i run`` command line of :func:`main_job_config` (without its progress bars off)."""
    return (
        f"deltahall t2i run --preset digits --out-dir {out_dir} "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in MAIN_JOB_OVERRIDES.items())
        + f" --device {MAIN_JOB_RUN['device']} --seed {seed}"
    )


def main_job_section(run_dir: Path, seed: int) -> Section:
    """Run the digits preset at reduced size into ``run_dir`` and describe it, with the known-truth
    comparison of the instrument and the baselines."""
    from deltahall.experiments.t2i import run

    res = run(main_job_config(run_dir, seed))
    sec = build_section(
        res.run_dir, title="Text-to-image (Section 7.3, Figures 5-7) — digits preset, reduced"
    )
    alpha = float(MAIN_JOB_OVERRIDES.get("percentile", 10.0)) / 100
    for name, rows in known_truth_rows(seed).items():
        sec.table(
            rows,
            ["method", "false_flag_rate", "flagged", "precision", "recall"],
            caption=f"Known truth, {name}: precision / recall of 'outside', every method calibrated at "
            f"α = {alpha:g} on the same calibration part; false_flag_rate = flagged share of the held-out "
            "real test part (not this run's samples: data sets whose outside points are known).",
        )
    sec.code(
        f"reproduce: {reproduce_command(seed)}\n"
        "full preset: deltahall t2i run --preset digits --out-dir runs/t2i_digits"
    )
    return sec
