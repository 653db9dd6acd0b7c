"""Per checkpoint and prompt: sample K images, embed them, test them against the HCDR.

For prompt :math:`x`, let :math:`a_1, \\dots, a_K` be the embeddings of K generated
images. The row written to ``metrics.csv`` holds

- ``rate``: the fraction of :math:`a_k` outside the HCDR (the δ-hallucination rate of
  individual samples, Figures 5-6);
- ``mean_embedding_inside``: whether :math:`\\bar a = \\frac1K\\sum_k a_k` — the
  Monte-Carlo estimate of the expectation :math:`A^*(X) = \\mathbb E[A(X)]` of Lemma B.1,
  the loss-minimising estimate of Definition 3.1 — lies in the HCDR (Definition 4.2 /
  Remark 6.1 applied to :math:`A^*`);
- ``mean_image_inside``: the same test for the embedding of the pixel-average image
  (the expectation taken in image space instead of embedding space);
- ``frac_in_<class>``: the fraction of samples inside each class's region.

Per-sample scores go to ``samples/step-XXXXXX.csv`` (+ embeddings in ``.npz``), and the
flagged samples, most implausible first, to ``grids/step-XXXXXX_pN.png``.
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

METRIC_COLUMNS = ("step", "prompt_index", "prompt", "loss", "rate", "n_outside", "K",
                  "mean_embedding_inside", "mean_embedding_score", "mean_image_inside", "mean_image_score")


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
    detector: Any
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
    det = ctx.detector
    classes = cfg.classes or ()
    prompts = cfg.prompts or ()
    K = int(cfg.num_samples or 1)
    rows, sample_rows, arrays = [], [], {}
    was_training = ctx.components.unet.training
    ctx.components.unet.eval()
    bar = tqdm(total=K * len(prompts), desc=f"sample step {step}", disable=not cfg.progress, leave=False)
    try:
        for p, prompt in enumerate(prompts):
            images = sample_images(
                ctx.components, ctx.sampler, ctx.prompt_states[p: p + 1], ctx.uncond_state,
                n=K, batch_size=int(cfg.sample_batch_size or K), resolution=int(cfg.resolution or 8),
                steps=int(cfg.inference_steps or 20), guidance_scale=float(cfg.guidance_scale or 1.0),
                generator=prompt_generator(cfg.seed, p), device=ctx.device, use_guidance=prompt != "",
                progress=bar,
            )
            E = ctx.embedder.embed(images)
            S = det.score_samples(E)
            dec = (S - det.thresholds_).max(axis=1)
            inside = dec >= 0.0
            mean_dec = float(det.decision_function(E.mean(axis=0, keepdims=True))[0])
            img_dec = float(det.decision_function(ctx.embedder.embed(images.mean(dim=0, keepdim=True)))[0])
            row: dict[str, Any] = {
                "step": step, "prompt_index": p, "prompt": prompt, "loss": loss,
                "rate": float(1.0 - inside.mean()), "n_outside": int((~inside).sum()), "K": K,
                "mean_embedding_inside": bool(mean_dec >= 0.0), "mean_embedding_score": mean_dec,
                "mean_image_inside": bool(img_dec >= 0.0), "mean_image_score": img_dec,
            }
            member = S >= det.thresholds_
            for j, c in enumerate(classes):
                row[f"frac_in_{c}"] = float(member[:, j].mean())
            rows.append(row)
            best = S.argmax(axis=1)
            sample_rows += [
                {"step": step, "prompt_index": p, "sample": k, "score": float(dec[k]), "inside": bool(inside[k]),
                 "best_state": str(classes[best[k]])}
                for k in range(K)
            ]
            arrays[f"embeddings_p{p}"] = E.astype(np.float32)
            arrays[f"log_densities_p{p}"] = S.astype(np.float32)
            flagged = np.flatnonzero(~inside)
            if flagged.size:
                order = flagged[np.argsort(dec[flagged])][: cfg.grid_max]
                save_grid(images[order], ctx.run_dir / "grids" / f"step-{step:06d}_p{p}.png")
            logger.info("step %d prompt %r: rate %.3f, mean embedding %s", step, prompt,
                        row["rate"], "inside" if row["mean_embedding_inside"] else "OUTSIDE")
    finally:
        bar.close()
        ctx.components.unet.train(was_training)
    _write_samples(ctx.run_dir, step, sample_rows, arrays)
    return rows


def _write_samples(run_dir: Path, step: int, rows: list[dict[str, Any]], arrays: dict[str, Any]) -> None:
    d = run_dir / "samples"
    d.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(d / f"step-{step:06d}.csv", rows_to_csv(rows).encode("utf-8"))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(d / f"step-{step:06d}.npz", buf.getvalue())
