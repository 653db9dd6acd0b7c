"""The text-to-image section of the HTML report (``deltahall report``).

:func:`main_job_section` runs the ``digits`` preset at reduced size (about a minute
on 2 CPU cores); :func:`build_section` describes any finished (or partial) run
directory, tiny or paper scale.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from deltahall.io import Section

logger = logging.getLogger(__name__)

#: The reduced digits run of the main job (everything else: the digits preset).
MAIN_JOB_OVERRIDES: dict[str, Any] = dict(
    train_steps=300, checkpoint_every=100, num_samples=64, sample_batch_size=64, inference_steps=10,
)
#: Run options of the main job's digits run (``RunOptions`` fields; the out dir is the step's).
MAIN_JOB_RUN: dict[str, Any] = dict(device="cpu", progress=False)

TOY_NOTE = (
    "This is the offline digits preset at reduced size: a tiny UNet (about 1 M parameters) trained "
    "from scratch for a few hundred steps on scikit-learn's 8x8 digits 0 and 1, judged by a small CNN's "
    "features. Its numbers show that the pipeline — training, checkpoints, seeded batched sampling, "
    "embedding, the HCDR detector, the mean-embedding test — runs end to end and behaves sensibly; they are "
    "not evidence about Stable Diffusion. The paper-scale command is in docs/t2i.md."
)


def _fmt_prompt(p: str) -> str:
    return repr(p) if p else "'' (unconditional)"


def build_section(run_dir: str | Path, *, title: str | None = None) -> Section:
    """A report section from a ``t2i run`` directory (figures must exist: see :func:`.results.save_figures`).

    Raises
    ------
    FileNotFoundError
        If ``run_dir`` has no ``metrics.csv``.
    """
    from deltahall.experiments.t2i.results import read_losses, read_metrics

    root = Path(run_dir)
    metrics, losses = read_metrics(root), read_losses(root)
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    cfg = manifest.get("config", {})
    det = json.loads((root / "detector.json").read_text(encoding="utf-8")) if (root / "detector.json").is_file() else {}
    summary = json.loads((root / "result.json").read_text(encoding="utf-8")) if (root / "result.json").is_file() else {}
    preset = cfg.get("preset", "?")
    sec = Section(title or f"Text-to-image (Section 7.3, Figures 5-7) — preset {preset}")
    if preset == "digits":
        sec.note(TOY_NOTE)
    steps = sorted({r["step"] for r in metrics})
    sec.text(
        f"Model {cfg.get('model')} trained on {cfg.get('data')} classes {cfg.get('classes')} with captions "
        f"{cfg.get('captions')} ({cfg.get('caption_dropout')} empty-caption dropout), {cfg.get('train_steps')} steps "
        f"of batch {cfg.get('train_batch_size')}, evaluated at steps {steps}. At each evaluation, K = "
        f"{cfg.get('num_samples')} images per prompt ({cfg.get('inference_steps')} {cfg.get('sampler')} steps, "
        f"guidance {cfg.get('guidance_scale')}, the same initial noise at every checkpoint) are embedded with "
        f"{det.get('embedder', cfg.get('embedder'))} and tested against the HCDR: a Gaussian mixture per class "
        f"({cfg.get('n_components')} {cfg.get('covariance_type')} components after L2-normalisation, PCA to "
        f"{cfg.get('pca_dim')} and z-scoring) with a threshold at the {cfg.get('percentile')}th percentile of "
        "held-out real log-densities; a sample is a δ-hallucination when it clears no class's threshold."
    )
    if det:
        info = det.get("embedder_info") or {}
        acc = f" The digit CNN's accuracy on its held-out digits: {info['heldout_accuracy']:.3f}." if "heldout_accuracy" in info else ""
        sec.text(
            f"Detector: {det.get('n_real')} real images ({det.get('per_class')} per class), embedding dimension "
            f"{det.get('dim')}; thresholds {[round(float(t), 2) for t in det.get('thresholds', [])]}, held-out coverage "
            f"{[round(float(c), 3) for c in det.get('holdout_coverage', [])]} (nominal {1 - float(cfg.get('percentile', 10)) / 100:.2f}).{acc}"
        )
        cov = [float(c) for c in det.get("holdout_coverage", [])] or [1.0 - float(cfg.get("percentile", 10)) / 100]
        floor = 1.0 - sum(cov) / len(cov)
        sec.text(
            f"Read the rates against a floor: by construction about {cfg.get('percentile')} % of real held-out images "
            f"fall outside their own class's region (here {floor:.3f} on average; the dotted line in Figures 5-6), so "
            "a generator that reproduced the real images exactly would show a rate near that floor, not zero. "
            "The mean-embedding test has no such floor: the mean of real images of one class lies deep inside its region."
        )
    rows = [
        {"step": r["step"], "prompt": _fmt_prompt(r["prompt"]), "loss": r["loss"], "rate": r["rate"],
         "mean emb. in HCDR": r["mean_embedding_inside"], "mean image in HCDR": r["mean_image_inside"], "K": r["K"]}
        for r in sorted(metrics, key=lambda r: (r["step"], r["prompt_index"]))
    ]
    sec.table(rows, caption="Per checkpoint and prompt: rate = fraction of the K samples outside the HCDR; "
                            "'mean emb.' = the estimate A*(X) (mean of the K embeddings) inside the HCDR?")
    coverage = det.get("holdout_coverage")
    sec.text(_verdict(metrics, losses, 1.0 - sum(map(float, coverage)) / len(coverage) if coverage else None))
    figs = root / "figures"
    for name, cap in (("fig5_rate_and_loss", "Figure 5: hallucination rate (mean over prompts) and training loss."),
                      ("fig6_rate_per_prompt", "Figure 6: rate per prompt; red crosses: mean embedding outside the HCDR."),
                      ("fig7_calibration", "Figure 7: held-out log-densities per state and thresholds."),
                      ("rate_vs_percentile", "The final checkpoint's rate as the threshold percentile varies.")):
        if (figs / f"{name}.png").is_file():
            sec.figure(figs / f"{name}.png", cap)
    if steps:
        for p, prompt in sorted({(r["prompt_index"], r["prompt"]) for r in metrics}):
            g = root / "grids" / f"step-{steps[-1]:06d}_p{p}.png"
            if g.is_file():
                sec.figure(g, f"Samples flagged as hallucinations at step {steps[-1]}, prompt {_fmt_prompt(prompt)} "
                              "(most implausible first).")
    if summary.get("seconds"):
        sec.text("Wall time (s): " + ", ".join(f"{k} {v:.1f}" for k, v in summary["seconds"].items()))
    return sec


def _verdict(metrics: list[dict[str, Any]], losses: list[dict[str, Any]], floor: float | None = None) -> str:
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
    rates = "; ".join(f"{_fmt_prompt(r['prompt'])} {r['rate']:.3f}" for r in last)
    above = "" if floor is None else (
        f", {'all' if min_rate > floor else 'not all'} above the real-image floor {floor:.3f}"
    )
    outside = "; ".join(
        f"{_fmt_prompt(p)} {sum(not r['mean_embedding_inside'] for r in metrics if r['prompt'] == p and r['step'] > 0)}"
        f"/{len(trained)}"
        for p in dict.fromkeys(r["prompt"] for r in sorted(metrics, key=lambda r: r["prompt_index"]))
    )
    return (
        f"Figure 5 claim on this run: interval loss {lf:.4f} at step {trained[0]} -> {ll:.4f} at step {trained[-1]} "
        f"({'falls' if falls else 'does NOT fall'}). Final rates: {rates} (lowest {min_rate:.3f}: "
        f"{'above zero' if min_rate > 0 else 'zero for some prompt'}{above}). Trained checkpoints where the mean "
        f"embedding A*(X) is outside the HCDR: {outside}."
    )


def main_job_config(run_dir: Path, seed: int) -> Any:
    """The main job's reduced digits config (a ``T2IConfig``) writing into ``run_dir``."""
    from deltahall.experiments._run import RunOptions
    from deltahall.experiments.t2i import T2IConfig

    # A rerun of the main job continues (or just re-reports) the run it finds in ``run_dir``.
    resume = "latest" if (Path(run_dir) / "manifest.json").is_file() else None
    return T2IConfig(preset="digits", seed=seed, run=RunOptions(out_dir=Path(run_dir), resume_from_checkpoint=resume,
                                                                **MAIN_JOB_RUN), **MAIN_JOB_OVERRIDES)


def reproduce_command(seed: int, out_dir: str = "DIR") -> str:
    """The ``deltahall t2i run`` command line of :func:`main_job_config` (without its progress bars off)."""
    return (
        f"deltahall t2i run --preset digits --out-dir {out_dir} "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in MAIN_JOB_OVERRIDES.items())
        + f" --device {MAIN_JOB_RUN['device']} --seed {seed}"
    )


def main_job_section(run_dir: Path, seed: int) -> Section:
    """Run the digits preset at reduced size into ``run_dir`` and describe it."""
    from deltahall.experiments.t2i import run

    res = run(main_job_config(run_dir, seed))
    sec = build_section(res.run_dir, title="Text-to-image (Section 7.3, Figures 5-7) — digits preset, reduced")
    sec.code(f"reproduce: {reproduce_command(seed)}\n"
             "full preset: deltahall t2i run --preset digits --out-dir runs/t2i_digits")
    return sec
