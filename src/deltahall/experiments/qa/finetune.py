"""LoRA fine-tuning on the open-ended QA pairs (Section 7.2), resumable, ``accelerate``-ready.

- prompts are built with the tokenizer's chat template; the loss covers only the
  answer tokens (labels ``-100`` on the prompt and on padding);
- the adapter is saved as safetensors after every epoch in ``epoch-{k}/``;
- the loss per optimizer micro-step and per epoch goes to ``loss_steps.csv`` and
  ``loss_epochs.csv``;
- after every epoch a pickle-free checkpoint (adapter, AdamW state, scheduler,
  data-order generator, torch RNG) is written under ``checkpoints/``; with
  ``resume=True`` training continues from the last finished epoch, and a checkpoint
  made with different settings or training pairs (SHA-256 of the pairs) is refused;
- several GPUs: run the same command under ``accelerate launch``; each process
  takes its share of every global batch and gradients are averaged by DDP.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deltahall.experiments._checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from deltahall.experiments._run import changed_keys
from deltahall.experiments.qa.config import QAConfig
from deltahall.experiments.qa.generate import build_prompt
from deltahall.io.rundir import RunDir, read_csv, to_jsonable

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100


@dataclass(frozen=True)
class FinetuneResult:
    """Where the adapters and losses of one fine-tuning went."""

    train_dir: Path
    epoch_dirs: dict[int, Path]
    epoch_losses: dict[int, float]


def encode_pair(
    tokenizer: Any,
    question: str,
    answer: str,
    max_length: int,
    system_prompt: str | None = None,
    *,
    prompt_format: str = "chat",
) -> dict[str, list[int]]:
    """Token ids and labels of one (question, answer) pair; labels are ``-100`` on the prompt.

    ``prompt_format="chat"``: the completion is the chat-templated conversation minus
    the generation prompt, so it includes the template's end-of-turn tokens (the model
    learns to stop). ``prompt_format="qa"`` (base models): the prompt is
    ``"Question: ...\nAnswer:"`` with the tokenizer's usual special tokens, and the
    completion is ``" <answer>\n"``, so the model learns to stop at the newline where
    :func:`~deltahall.experiments.qa.generate.generate_answers` stops.

    Raises
    ------
    ValueError
        If the template's text with the answer does not start with its generation prompt,
        or ``prompt_format`` is neither ``"chat"`` nor ``"qa"``.
    """
    if prompt_format == "qa":
        from deltahall.experiments.qa.generate import QA_STOP

        p_ids = tokenizer(build_prompt(tokenizer, question, "qa"), add_special_tokens=True)[
            "input_ids"
        ]
        c_ids = tokenizer(" " + answer.strip() + QA_STOP, add_special_tokens=False)["input_ids"]
        ids = (p_ids + c_ids)[:max_length]
        labels = ([IGNORE_INDEX] * len(p_ids) + c_ids)[:max_length]
        return {"input_ids": ids, "labels": labels}
    if prompt_format != "chat":
        raise ValueError(
            f"`prompt_format` must be 'chat' or 'qa' for training; got {prompt_format!r}."
        )
    prompt = build_prompt(tokenizer, question, "chat", system_prompt)
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    full = str(tokenizer.apply_chat_template(messages, tokenize=False))
    if not full.startswith(prompt):
        raise ValueError(
            "the chat template renders the answered conversation with a different prefix than its "
            "generation prompt, so the answer tokens cannot be isolated for the loss."
        )
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    c_ids = tokenizer(full[len(prompt) :], add_special_tokens=False)["input_ids"]
    ids = (p_ids + c_ids)[:max_length]
    labels = ([IGNORE_INDEX] * len(p_ids) + c_ids)[:max_length]
    return {"input_ids": ids, "labels": labels}


def collate(examples: Sequence[dict[str, list[int]]], pad_id: int) -> dict[str, Any]:
    """Right-pad a batch; padding gets attention 0 and label ``-100``."""
    import torch

    n = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), n), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), n), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), n), dtype=torch.long)
    for i, e in enumerate(examples):
        k = len(e["input_ids"])
        ids[i, :k] = torch.tensor(e["input_ids"])
        labels[i, :k] = torch.tensor(e["labels"])
        mask[i, :k] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def shard(chunk: Sequence[int], rank: int, world: int) -> list[int]:
    """This process's examples of one global batch: every ``world``-th from ``rank``.

    The shards of the ranks are disjoint and together cover ``chunk``. Only when the last,
    short batch leaves a rank without an example does that rank reuse the batch's last
    example (DDP needs every process to step); its gradient then counts that example twice.
    """
    mine = list(chunk[rank::world])
    return mine or list(chunk[-1:])


def _lr_lambda(total: int, warmup: int) -> Any:
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return f


def model_loss(model: Any, batch: dict[str, Any]) -> Any:
    """``model(**batch).loss``: the causal-LM loss (shifted labels, ``-100`` ignored)."""
    return model(**batch).loss


def answer_loss(model: Any, batch: dict[str, Any]) -> Any:
    """Mean cross-entropy over answer tokens, applying the output layer only where labels are set.

    Equal to :func:`model_loss` of a causal LM (shifted labels, ``-100`` ignored), without
    computing logits at prompt and padding positions (a fraction of the cost with Gemma's
    262k-token vocabulary). It calls the inner model directly, so it is for a model that is not
    wrapped for several processes (DDP averages gradients in the wrapper's forward).
    """
    import torch.nn.functional as F

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = inner.model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
    ).last_hidden_state
    target = batch["labels"][:, 1:]
    keep = target != IGNORE_INDEX
    logits = inner.lm_head(hidden[:, :-1][keep]).float()
    cap = getattr(inner.config, "final_logit_softcapping", None)
    if cap:
        logits = (logits / cap).tanh() * cap
    return F.cross_entropy(logits, target[keep])


def train_epoch(
    model: Any,
    examples: Sequence[dict[str, list[int]]],
    order: Sequence[int],
    optimizer: Any,
    *,
    batch_size: int,
    pad_id: int,
    loss_fn: Callable[[Any, dict[str, Any]], Any] = model_loss,
    accelerator: Any = None,
    device: Any = None,
    grad_accum: int = 1,
    clip_norm: float | None = None,
    scheduler: Any = None,
    progress: str | None = None,
) -> list[tuple[float, float]]:
    """One epoch over ``examples`` in ``order``: the one training loop of ``qa run`` and ``qa arms``.

    Global batches of ``batch_size`` per process are cut from ``order``; each process takes its
    :func:`shard`. The loss of each micro-step is backpropagated scaled by ``1 / grad_accum``;
    every ``grad_accum`` micro-steps (and after the last) the gradients are clipped to
    ``clip_norm`` (if set), the optimiser and ``scheduler`` (if any) step and the gradients are
    zeroed.

    Parameters
    ----------
    model
        The model to train (wrapped by ``accelerator.prepare`` when an accelerator is given).
    examples, order
        Encoded examples (:func:`encode_pair`) and the order to visit them in (the caller's
        seeded permutation).
    optimizer, scheduler
        The optimiser and an optional learning-rate scheduler (stepped with it).
    loss_fn : callable ``(model, batch) -> loss``
        :func:`model_loss` (default), or :func:`answer_loss` for a model not wrapped for DDP.
    accelerator : accelerate.Accelerator, optional
        Backward, gradient clipping and the loss average across processes go through it; without
        one the loop runs in this process on ``device`` (default: the model's).
    progress : str, optional
        Description of a progress bar over the micro-steps (no bar when ``None``).

    Returns
    -------
    list of (loss, lr)
        Per micro-step: the loss (averaged over processes) and the learning rate after the step.
    """
    import torch

    world = accelerator.num_processes if accelerator is not None else 1
    rank = accelerator.process_index if accelerator is not None else 0
    if accelerator is not None:
        device = accelerator.device
    elif device is None:
        device = next(model.parameters()).device
    global_bs = batch_size * world
    n_micro = math.ceil(len(order) / global_bs)
    params = [p for p in model.parameters() if p.requires_grad]
    micro: Any = range(n_micro)
    if progress is not None:
        from tqdm.auto import tqdm

        micro = tqdm(micro, desc=progress, unit="step")
    out: list[tuple[float, float]] = []
    model.train()
    for k in micro:
        mine = shard(order[k * global_bs : (k + 1) * global_bs], rank, world)
        batch = collate([examples[int(i)] for i in mine], pad_id)
        batch = {n: t.to(device) for n, t in batch.items()}
        loss = loss_fn(model, batch)
        scaled = loss / grad_accum if grad_accum != 1 else loss
        if accelerator is not None:
            accelerator.backward(scaled)
        else:
            scaled.backward()
        if (k + 1) % grad_accum == 0 or k + 1 == n_micro:
            if clip_norm is not None:
                if accelerator is not None:
                    accelerator.clip_grad_norm_(params, clip_norm)
                else:
                    torch.nn.utils.clip_grad_norm_(params, clip_norm)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        value = loss.detach()
        if accelerator is not None:
            value = accelerator.reduce(value, reduction="mean")
        lr = (
            scheduler.get_last_lr()[0] if scheduler is not None else optimizer.param_groups[0]["lr"]
        )
        out.append((float(value), float(lr)))
    return out


def finetune(
    config: QAConfig,
    model: Any,
    tokenizer: Any,
    pairs: Sequence[tuple[str, str]],
    train_dir: str | Path,
    *,
    seed: int,
    model_id: str,
    accelerator: Any,
) -> tuple[Any, FinetuneResult]:
    """LoRA-fine-tune ``model`` on ``pairs`` for ``config.max_epoch`` epochs.

    Parameters
    ----------
    config : QAConfig
        LoRA, optimiser and length settings.
    model, tokenizer
        The base model (already on ``accelerator.device``) and its tokenizer.
    pairs : sequence of (question, answer)
        The training pairs (600 for the paper's dataset).
    train_dir : path
        Output folder: ``epoch-{k}/`` adapters, loss CSVs, ``checkpoints/``.
    seed : int
        Seeds the global torch RNG (LoRA initialisation, dropout) and the
        data-order generator; this function is a training entry point.

    Returns
    -------
    (peft_model, FinetuneResult)
        The unwrapped PEFT model holding the last epoch's adapter, and the files.

    Raises
    ------
    ValueError
        If ``train_dir`` already holds checkpoints and ``config.resume`` is false, or
        the checkpoint to resume was made with other settings.
    """
    import torch
    from peft import (
        LoraConfig,
        get_peft_model,
        get_peft_model_state_dict,
        set_peft_model_state_dict,
    )
    from safetensors.torch import load_file

    rd = RunDir(train_dir)
    ckpt_root = rd.root / "checkpoints"
    fingerprint = to_jsonable(config.training_fingerprint(model_id, seed))
    fingerprint["pairs_sha256"] = hashlib.sha256(
        json.dumps(list(pairs)).encode("utf-8")
    ).hexdigest()
    existing = list_checkpoints(ckpt_root)
    if existing and not config.resume:
        raise ValueError(
            f"`out_dir` already holds fine-tuning checkpoints in {ckpt_root}; pass "
            "--resume-from-checkpoint latest to continue them, or choose another --out-dir."
        )

    examples = [
        encode_pair(tokenizer, q, a, config.max_length, config.system_prompt) for q, a in pairs
    ]
    kept = [e for e in examples if any(x != IGNORE_INDEX for x in e["labels"])]
    if len(kept) < len(examples):
        logger.warning(
            "%d pairs have no answer token within max_length=%d and are skipped",
            len(examples) - len(kept),
            config.max_length,
        )
    if not kept:
        raise ValueError(
            f"`max_length` {config.max_length} leaves no answer token in any training pair."
        )

    torch.manual_seed(seed)
    targets: Any = (
        "all-linear" if config.target_modules == ("all-linear",) else list(config.target_modules)
    )
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )
    with (
        warnings.catch_warnings()
    ):  # peft asks transformers a deprecated question; not the user's concern
        warnings.filterwarnings(
            "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
        )
        peft_model = get_peft_model(model, lora)
    order_gen = torch.Generator().manual_seed(seed)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    global_bs = config.batch_size * accelerator.num_processes
    micro_per_epoch = math.ceil(len(kept) / global_bs)
    opt_steps_per_epoch = math.ceil(micro_per_epoch / config.grad_accum)
    total = opt_steps_per_epoch * config.max_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_lambda(total, int(config.warmup_ratio * total))
    )

    start_epoch = 0
    step_rows: list[dict[str, Any]] = []
    epoch_rows: list[dict[str, Any]] = []
    if existing:
        ckpt = existing[-1]
        state = load_checkpoint(ckpt, optimizer=optimizer, generator=order_gen)
        extra = state["extra"]
        if extra.get("fingerprint") != fingerprint:
            diff = changed_keys(extra.get("fingerprint") or {}, fingerprint)
            raise ValueError(
                f"cannot resume from {ckpt}: it was made with other settings: "
                + "; ".join(diff)
                + "."
            )
        set_peft_model_state_dict(peft_model, load_file(str(ckpt / "model.safetensors")))
        scheduler.load_state_dict(extra["scheduler"])
        torch.set_rng_state(torch.tensor(extra["torch_rng"], dtype=torch.uint8))
        start_epoch = int(extra["epoch"])
        step_rows = [
            r for r in read_csv(rd.path("loss_steps.csv")) if int(r["epoch"]) <= start_epoch
        ]
        epoch_rows = [
            r for r in read_csv(rd.path("loss_epochs.csv")) if int(r["epoch"]) <= start_epoch
        ]
        logger.info("resuming %s seed %d from epoch %d (%s)", model_id, seed, start_epoch, ckpt)

    wrapped, optimizer = accelerator.prepare(peft_model, optimizer)
    pad_id = tokenizer.pad_token_id
    epoch_dirs = {int(r["epoch"]): rd.root / f"epoch-{r['epoch']}" for r in epoch_rows}
    micro = len(step_rows)
    for epoch in range(start_epoch + 1, config.max_epoch + 1):
        perm = torch.randperm(len(kept), generator=order_gen).tolist()
        desc = f"{model_id} seed {seed} epoch {epoch}"
        steps = train_epoch(
            wrapped,
            kept,
            perm,
            optimizer,
            batch_size=config.batch_size,
            pad_id=pad_id,
            accelerator=accelerator,
            grad_accum=config.grad_accum,
            clip_norm=1.0,
            scheduler=scheduler,
            progress=desc if config.progress and accelerator.is_main_process else None,
        )
        losses = [loss for loss, _ in steps]
        for loss, lr in steps:
            micro += 1
            step_rows.append({"epoch": epoch, "step": micro, "loss": loss, "lr": lr})
        epoch_loss = sum(losses) / len(losses)
        epoch_rows.append({"epoch": epoch, "loss": epoch_loss, "steps": len(losses)})
        logger.info("%s seed %d epoch %d: loss %.4f", model_id, seed, epoch, epoch_loss)
        if accelerator.is_main_process:
            unwrapped = accelerator.unwrap_model(wrapped)
            unwrapped.save_pretrained(str(rd.path(f"epoch-{epoch}")), safe_serialization=True)
            rd.write_csv("loss_steps.csv", step_rows, ["epoch", "step", "loss", "lr"])
            rd.write_csv("loss_epochs.csv", epoch_rows, ["epoch", "loss", "steps"])
            save_checkpoint(
                ckpt_root,
                epoch,
                model_state=get_peft_model_state_dict(unwrapped),
                optimizer=optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer,
                generator=order_gen,
                extra={
                    "epoch": epoch,
                    "fingerprint": fingerprint,
                    "scheduler": scheduler.state_dict(),
                    "torch_rng": torch.get_rng_state().tolist(),
                },
                total_limit=1,
            )
        epoch_dirs[epoch] = rd.root / f"epoch-{epoch}"
        accelerator.wait_for_everyone()
    losses_by_epoch = {int(r["epoch"]): float(r["loss"]) for r in epoch_rows}
    return accelerator.unwrap_model(wrapped), FinetuneResult(rd.root, epoch_dirs, losses_by_epoch)
