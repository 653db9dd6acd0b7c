"""Per checkpoint and prompt: sample K images, embed them, measure them with the instrument.

For prompt :math:`x`, let :math:`a_1, \\dots, a_K` be the embeddings of K generated
images. They are measured with :mod:`deltahall.measure` (fitted once per run on the real
embeddings, the classes as latent states; :mod:`.instrument`) and the row written to
``metrics.csv`` holds, under the configured rule (``calibration``, default conformal):

- ``rate`` (``n_outside`` of ``K``) with its Wilson 95 % interval ``rate_ci_low``,
  ``rate_ci_high``: the δ-hallucination rate of individual samples (Figures 5-6);
- ``floor``, ``floor_ci_low``, ``floor_ci_high``: the flagged share of held-out real images
  (the same for every row of a run) and ``excess_p_value``, the exact one-sided test of
  rate > floor stratified by nearest class;
- ``mean_embedding_inside``: whether :math:`\\bar a = \\frac1K\\sum_k a_k` — the
  Monte-Carlo estimate of the expectation :math:`A^*(X) = \\mathbb E[A(X)]` of Lemma B.1,
  the loss-minimising estimate of Definition 3.1 — lies in the HCDR (Definition 4.2 /
  Remark 6.1 applied to :math:`A^*`), with ``mean_embedding_score`` (``>= 0`` inside) and
  ``mean_embedding_p_value``;
- ``mean_image_inside``: the same test for the embedding of the pixel-average image
  (the expectation taken in image space instead of embedding space);
- ``frac_in_<class>``: the fraction of samples inside each class's region;

and beside them the other rule's ``rate_<rule>``, its interval, ``floor_<rule>``, its
interval, ``excess_p_value_<rule>`` and ``mean_embedding_inside_<rule>`` (``<rule>`` is
``percentile`` — the paper's rule — when the headline is conformal). One set of samples,
one rate per rule.

Per-sample scores go to ``samples/step-XXXXXX.csv`` (+ embeddings, per-class log-densities
and the rate-vs-α curve in ``.npz``), and the flagged samples, most implausible first, to
``grids/step-XXXXXX_pN.png``.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deltahall.experiments.t2i.config import T2IConfig
from deltahall.experiments.t2i.grids import save_grid
from deltahall.experiments.t2i.modeling import Components
from deltahall.experiments.t2i.sampling import sample_images
from deltahall.io import atomic_write_bytes
from deltahall.io.rundir import rows_to_csv

logger = logging.getLogger(__name__)

METRIC_COLUMNS = (
    "step",
    "prompt_index",
    "prompt",
    "loss",
    "rate",
    "n_outside",
    "K",
    "mean_embedding_inside",
    "mean_embedding_score",
    "mean_image_inside",
    "mean_image_score",
    "rate_ci_low",
    "rate_ci_high",
    "floor",
    "floor_ci_low",
    "floor_ci_high",
    "excess_p_value",
    "mean_embedding_p_value",
    "calibration",
    "alpha",
)
#: Columns of the rule written beside the headline one, each suffixed ``_<rule>``.
BESIDE_COLUMNS = (
    "rate",
    "rate_ci_low",
    "rate_ci_high",
    "n_outside",
    "floor",
    "floor_ci_low",
    "floor_ci_high",
    "excess_p_value",
    "mean_embedding_inside",
)


def metric_columns(rules: tuple[str, str], classes: tuple[str, ...]) -> list[str]:
    """The columns of ``metrics.csv``: the headline rule's, the other rule's, the per-class fractions."""
    other = [_suffixed(c, rules[1]) for c in BESIDE_COLUMNS]
    return [*METRIC_COLUMNS, *other, *(f"frac_in_{c}" for c in classes)]


def _suffixed(column: str, rule: str) -> str:
    """``rate_ci_low`` -> ``rate_percentile_ci_low``; ``floor`` -> ``floor_percentile``."""
    for stem in ("rate", "floor"):
        if column.startswith(stem + "_ci_"):
            return f"{stem}_{rule}{column[len(stem) :]}"
    return f"{column}_{rule}"


@dataclass
class EvalContext:
    """What one evaluation needs (built once per run by the training loop)."""

    config: T2IConfig
    run_dir: Path
    components: Components
    sampler: Any
    prompt_states: Any  # (P, L, D) text-encoder states of the prompts
    uncond_state: Any  # (1, L, D) of ""
    embedder: Any
    detector: Any  # the instrument (:class:`.instrument.Instrument`), fitted once per run
    device: Any


def prompt_generator(seed: int, prompt_index: int) -> Any:
    """The CPU generator of one prompt's initial noise; identical at every checkpoint."""
    import torch

    s = int(np.random.default_rng([seed, 41, prompt_index]).integers(2**62))
    return torch.Generator().manual_seed(s)


def evaluate(ctx: EvalContext, step: int, loss: float) -> list[dict[str, Any]]:
    """Evaluate the current UNet at ``step``; returns one metrics row per prompt."""
    from tqdm.auto import tqdm

    cfg = ctx.config
    classes = cfg.classes
    prompts = cfg.prompts
    K = int(cfg.num_samples)
    rows, sample_rows, arrays = [], [], {}
    was_training = ctx.components.unet.training
    ctx.components.unet.eval()
    bar = tqdm(
        total=K * len(prompts), desc=f"sample step {step}", disable=not cfg.progress, leave=False
    )
    try:
        for p, prompt in enumerate(prompts):
            images = sample_images(
                ctx.components,
                ctx.sampler,
                ctx.prompt_states[p : p + 1],
                ctx.uncond_state,
                n=K,
                batch_size=int(cfg.sample_batch_size),
                resolution=int(cfg.resolution),
                steps=int(cfg.inference_steps),
                guidance_scale=float(cfg.guidance_scale),
                generator=prompt_generator(cfg.seed, p),
                device=ctx.device,
                use_guidance=prompt != "",
                progress=bar,
            )
            E = ctx.embedder.embed(images)
            E_img = ctx.embedder.embed(images.mean(dim=0, keepdim=True))
            row, inside, dec, S = measure_prompt(
                ctx.detector,
                E,
                E_img,
                step=step,
                prompt_index=p,
                prompt=prompt,
                loss=loss,
                classes=classes,
            )
            rows.append(row)
            best = S.argmax(axis=1)
            sample_rows += [
                {
                    "step": step,
                    "prompt_index": p,
                    "sample": k,
                    "score": float(dec[k]),
                    "inside": bool(inside[k]),
                    "best_state": str(classes[best[k]]),
                }
                for k in range(K)
            ]
            arrays[f"embeddings_p{p}"] = E.astype(np.float32)
            arrays[f"log_densities_p{p}"] = S.astype(np.float32)
            arrays[f"curve_rate_p{p}"] = np.asarray(row.pop("_curve_rate"), dtype=np.float64)
            arrays["curve_floor"] = np.asarray(row.pop("_curve_floor"), dtype=np.float64)
            flagged = np.flatnonzero(~inside)
            if flagged.size:
                order = flagged[np.argsort(dec[flagged], kind="stable")][: cfg.grid_max]
                save_grid(images[order], ctx.run_dir / "grids" / f"step-{step:06d}_p{p}.png")
            logger.info(
                "step %d prompt %r: rate %.3f [%.3f, %.3f] (%s; floor %.3f), mean embedding %s",
                step,
                prompt,
                row["rate"],
                row["rate_ci_low"],
                row["rate_ci_high"],
                row["calibration"],
                row["floor"],
                "inside" if row["mean_embedding_inside"] else "OUTSIDE",
            )
    finally:
        bar.close()
        ctx.components.unet.train(was_training)
    _write_samples(ctx.run_dir, step, sample_rows, arrays)
    return rows


def _write_samples(
    run_dir: Path, step: int, rows: list[dict[str, Any]], arrays: dict[str, Any]
) -> None:
    d = run_dir / "samples"
    d.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(d / f"step-{step:06d}.csv", rows_to_csv(rows).encode("utf-8"))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(d / f"step-{step:06d}.npz", buf.getvalue())


def measure_prompt(
    inst: Any,
    E: Any,
    E_img: Any,
    *,
    step: int,
    prompt_index: int,
    prompt: str,
    loss: float,
    classes: tuple[str, ...],
) -> tuple[dict[str, Any], Any, Any, Any]:
    """One ``metrics.csv`` row for the K embeddings ``E`` of one prompt (both rules of ``inst``).

    Returns the row (with the headline rule's rate-vs-α curve under ``_curve_rate``), the
    samples' inside flags, their decision values and per-class log-densities.
    """
    main, other = inst.rules
    K = int(E.shape[0])
    m = inst.measure(E, [prompt] * K, main)
    mean_dec = float(inst.decision(E.mean(axis=0, keepdims=True), main)[0])
    row: dict[str, Any] = {
        "step": step,
        "prompt_index": prompt_index,
        "prompt": prompt,
        "loss": loss,
    }
    row.update(_rule_columns(m))
    row.update(
        {
            "mean_embedding_score": mean_dec,
            "mean_embedding_p_value": float(m.per_prompt[0]["mean_embedding_p_value"]),
            "mean_image_inside": bool(inst.inside(E_img, main)[0]),
            "mean_image_score": float(inst.decision(E_img, main)[0]),
            "calibration": main,
            "alpha": inst.alpha,
        }
    )
    mo = inst.measure(E, [prompt] * K, other)
    row.update(
        {_suffixed(k, other): v for k, v in _rule_columns(mo).items() if k in BESIDE_COLUMNS}
    )
    S = inst.scores(E, main)
    member = S >= inst.thresholds(main)[None, :]
    for j, c in enumerate(classes):
        row[f"frac_in_{c}"] = float(member[:, j].mean())
    row["_curve_rate"], row["_curve_floor"] = m.curve["rate"], m.curve["floor"]
    return row, ~np.asarray(m.gen_flagged), inst.decision(E, main), S


def _rule_columns(m: Any) -> dict[str, Any]:
    return {
        "rate": m.rate.rate,
        "n_outside": m.rate.k,
        "K": m.rate.n,
        "rate_ci_low": m.rate.ci[0],
        "rate_ci_high": m.rate.ci[1],
        "floor": m.floor.rate,
        "floor_ci_low": m.floor.ci[0],
        "floor_ci_high": m.floor.ci[1],
        "excess_p_value": float(m.excess_p_value),
        "mean_embedding_inside": bool(m.per_prompt[0]["mean_embedding_inside"]),
    }
