"""Fine-tune (or train) the UNet with accelerate; checkpoint and evaluate every S steps.

The loop is the standard text-to-image diffusion objective (diffusers'
``train_text_to_image``): encode images to latents (frozen VAE, or identity), add noise
at a uniform timestep, predict it from the noisy latents and the frozen text encoder's
caption states, minimise the mean squared error. Captions are the class captions,
replaced by ``""`` with probability ``caption_dropout``.

Resumability: every random draw of optimizer step ``s`` (batch indices, flips, noise,
timesteps, caption dropout) is seeded by ``(seed, s, micro-batch, process)``, so a run
resumed from ``checkpoint-s/`` continues exactly as the uninterrupted one would (the
learning rate is a function of the step too). Checkpoints hold the UNet weights and the
AdamW state as safetensors (:mod:`deltahall.experiments._checkpoint`) and are written
atomically, so an interrupted run always leaves the latest one usable.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deltahall.experiments._checkpoint import load_checkpoint, save_checkpoint
from deltahall.experiments.t2i.config import T2IConfig
from deltahall.experiments.t2i.evaluate import EvalContext, evaluate, metric_columns
from deltahall.experiments.t2i.instrument import rules
from deltahall.experiments.t2i.modeling import (
    Components,
    encode_text,
    images_to_latents,
    make_sampler,
)
from deltahall.io.atomic import atomic_write_text
from deltahall.io.rundir import rows_to_csv

logger = logging.getLogger(__name__)


@dataclass
class History:
    """Metrics rows (``metrics.csv``) and per-step losses (``loss.csv``) of a run."""

    metrics: list[dict[str, Any]] = field(default_factory=list)
    losses: list[dict[str, Any]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=lambda: {"train": 0.0, "evaluate": 0.0})

    def truncate(self, step: int) -> None:
        """Forget everything after ``step`` (it will be recomputed after a resume)."""
        self.metrics = [r for r in self.metrics if int(r["step"]) <= step]
        self.losses = [r for r in self.losses if int(r["step"]) <= step]

    def evaluated(self, step: int) -> bool:
        return any(int(r["step"]) == step for r in self.metrics)

    def interval_loss(self, lo: int, hi: int) -> float:
        """Mean step loss over steps ``lo < s <= hi`` (NaN if none)."""
        v = [float(r["loss"]) for r in self.losses if lo < int(r["step"]) <= hi]
        return float(np.mean(v)) if v else math.nan

    def write(self, run_dir: Path, config: T2IConfig) -> None:
        cols = metric_columns(rules(config), config.classes)
        rows = sorted(self.metrics, key=lambda r: (int(r["step"]), int(r["prompt_index"])))
        atomic_write_text(run_dir / "metrics.csv", rows_to_csv(rows, cols))
        atomic_write_text(run_dir / "loss.csv", rows_to_csv(self.losses, ["step", "loss"]))


class StepBatches:
    """Batch sampler: the micro-batches of steps ``start..total-1``, seeded per step.

    Yields lists of ``(index, flip)`` for this process's slice of the global batch.
    """

    def __init__(
        self, n: int, config: T2IConfig, start: int, total: int, world: int, rank: int
    ) -> None:
        self.n, self.cfg, self.start, self.total, self.world, self.rank = (
            n,
            config,
            start,
            total,
            world,
            rank,
        )

    def __len__(self) -> int:
        return (self.total - self.start) * self.cfg.gradient_accumulation_steps

    def __iter__(self):  # type: ignore[no-untyped-def]
        b = self.cfg.train_batch_size
        g = b * self.world
        for step in range(self.start, self.total):
            for micro in range(self.cfg.gradient_accumulation_steps):
                rng = np.random.default_rng([self.cfg.seed, 1, step, micro])
                idx = rng.choice(self.n, size=g, replace=self.n < g)
                flips = rng.random(g) < 0.5 if self.cfg.random_flip else np.zeros(g, dtype=bool)
                sl = slice(self.rank * b, (self.rank + 1) * b)
                yield [(int(i), bool(f)) for i, f in zip(idx[sl], flips[sl], strict=True)]


def _generator(seed: int, step: int, micro: int, rank: int) -> Any:
    import torch

    s = int(np.random.default_rng([seed, 2, step, micro, rank]).integers(2**62))
    return torch.Generator().manual_seed(s)


def learning_rate(config: T2IConfig, step: int) -> float:
    """Constant learning rate after a linear warm-up over ``lr_warmup_steps``."""
    lr, w = config.learning_rate, config.lr_warmup_steps
    return lr * min(1.0, (step + 1) / w) if w else lr


def train(
    config: T2IConfig,
    run_dir: Path,
    accelerator: Any,
    components: Components,
    data: Any,
    embedder: Any,
    detector: Any,
    resume: Path | None,
    history: History,
) -> History:
    """Train to ``config.train_steps``, checkpointing and evaluating every ``checkpoint_every``.

    ``embedder`` and ``detector`` are needed on the main process only (the others pass
    ``None``). Returns ``history`` updated in place.
    """
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    cfg = config
    device = accelerator.device
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(
        str(cfg.mixed_precision), torch.float32
    )
    unet = components.unet.to(device)
    if unet.dtype != torch.float32:  # trainable weights stay float32 (upcast under fp16/bf16)
        unet.to(dtype=torch.float32)
    for frozen in (components.text_encoder, components.vae):
        if frozen is not None:
            frozen.to(device)
            if frozen.dtype != weight_dtype:
                frozen.to(dtype=weight_dtype)
    optimizer = torch.optim.AdamW(
        unet.parameters(), lr=learning_rate(cfg, 0), weight_decay=cfg.adam_weight_decay
    )
    unet, optimizer = accelerator.prepare(unet, optimizer)
    raw_opt = getattr(optimizer, "optimizer", optimizer)

    captions = [*cfg.captions, ""]
    caption_states = encode_text(components, captions, device)
    start, resume_loss = 0, math.nan
    if resume is not None:
        state = load_checkpoint(resume, model=accelerator.unwrap_model(unet), optimizer=raw_opt)
        start = int(state["step"])
        saved_loss = state.get("extra", {}).get("loss")  # null when the interval had no steps
        resume_loss = math.nan if saved_loss is None else float(saved_loss)
        logger.info("resumed from %s at step %d", resume, start)
    history.truncate(start)
    total, every = cfg.train_steps, cfg.checkpoint_every
    # 0 is the field's "no limit" (keep every checkpoint), which save_checkpoint spells None.
    keep = cfg.checkpoints_total_limit if cfg.checkpoints_total_limit > 0 else None

    ctx = None
    if accelerator.is_main_process:
        ctx = EvalContext(
            cfg,
            run_dir,
            components,
            make_sampler(components.noise_scheduler, cfg.sampler),
            encode_text(components, list(cfg.prompts), device),
            caption_states[-1:],
            embedder,
            detector,
            device,
        )

    def _evaluate(step: int, loss: float) -> None:
        if ctx is not None:
            t0 = time.perf_counter()
            with accelerator.autocast():
                rows = evaluate(ctx, step, loss)
            history.metrics = [r for r in history.metrics if int(r["step"]) != step] + rows
            history.write(run_dir, cfg)
            history.seconds["evaluate"] += time.perf_counter() - t0
        accelerator.wait_for_everyone()

    if start == 0 and cfg.eval_initial and not history.evaluated(0):
        _evaluate(0, math.nan)
    if start > 0 and not history.evaluated(start):  # interrupted between checkpoint and evaluation
        _evaluate(start, resume_loss)

    from torch.utils.data import DataLoader

    loader = DataLoader(
        data,
        batch_sampler=StepBatches(
            len(data), cfg, start, total, accelerator.num_processes, accelerator.process_index
        ),
        num_workers=cfg.num_workers,
    )
    batches = iter(loader)
    sched = components.noise_scheduler
    n_cls = len(captions) - 1
    bar = tqdm(
        total=total,
        initial=start,
        desc="train",
        disable=not (cfg.progress and accelerator.is_main_process),
    )
    try:
        for step in range(start, total):
            t0 = time.perf_counter()
            for g in optimizer.param_groups:
                g["lr"] = learning_rate(cfg, step)
            step_loss = 0.0
            for micro in range(cfg.gradient_accumulation_steps):
                images, labels = next(batches)
                gen = _generator(cfg.seed, step, micro, accelerator.process_index)
                with accelerator.accumulate(unet):
                    latents = images_to_latents(
                        components, images.to(device, weight_dtype), gen
                    ).float()
                    noise = torch.randn(latents.shape, generator=gen).to(device)
                    t = torch.randint(
                        0, sched.config.num_train_timesteps, (latents.shape[0],), generator=gen
                    ).to(device)
                    drop = torch.rand(latents.shape[0], generator=gen) < cfg.caption_dropout
                    enc = caption_states[torch.where(drop, n_cls, labels).to(device)]
                    noisy = sched.add_noise(latents, noise, t)
                    target = (
                        noise
                        if sched.config.prediction_type == "epsilon"
                        else sched.get_velocity(latents, noise, t)
                    )
                    loss = F.mse_loss(
                        unet(noisy, t, encoder_hidden_states=enc).sample.float(), target.float()
                    )
                    accelerator.backward(loss)
                    if accelerator.sync_gradients:
                        accelerator.clip_grad_norm_(unet.parameters(), cfg.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                step_loss += (
                    float(accelerator.gather(loss.detach()).mean())
                    / cfg.gradient_accumulation_steps
                )
            done = step + 1
            history.losses.append({"step": done, "loss": step_loss})
            history.seconds["train"] += time.perf_counter() - t0
            bar.update(1)
            bar.set_postfix(loss=f"{step_loss:.4f}")
            if done % every == 0 or done == total:
                interval = history.interval_loss(
                    done - every if done % every == 0 else every * (done // every), done
                )
                if accelerator.is_main_process:
                    save_checkpoint(
                        run_dir,
                        done,
                        model_state=accelerator.unwrap_model(unet).state_dict(),
                        optimizer=raw_opt,
                        extra={"loss": interval, "fingerprint": cfg.fingerprint()},
                        total_limit=keep,
                    )
                    history.write(run_dir, cfg)
                accelerator.wait_for_everyone()
                _evaluate(done, interval)
    finally:
        bar.close()
        if accelerator.is_main_process:
            history.write(run_dir, cfg)
    return history
