"""Batched, seeded answer generation for TruthfulQA questions (Section 7.2).

Questions are answered in batches (left padding, one ``generate`` call per batch,
never one question per call) with the paper's sampling: temperature 0.7, top-p 0.9,
at most 80 new tokens. Batch ``b`` of a run with seed ``s`` samples under a torch
RNG seeded from ``numpy.random.SeedSequence([s, b])`` inside
``torch.random.fork_rng``, so results are reproducible for a given seed, batch
size and device, and the caller's global RNG state is left untouched.

Each generation keeps two texts:

``answer``     the new tokens only (what we score by default);
``full_text``  the whole decoded output ``outputs[i]`` including the prompt, what
               the authors' script scored (``score_includes_prompt=True``).

``prompt_format="chat"`` (default) wraps the question in the tokenizer's chat
template; ``"raw"`` feeds the bare question, as the authors did.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from deltahall.io.atomic import atomic_write_text

logger = logging.getLogger(__name__)

PromptFormat = Literal["chat", "raw"]


@dataclass(frozen=True)
class SamplingParams:
    """The sampling of Section 7.2 (``top_k=0`` and ``repetition_penalty=1`` switch those off)."""

    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 0
    repetition_penalty: float = 1.0
    max_new_tokens: int = 80


def build_prompt(tokenizer: Any, question: str, prompt_format: PromptFormat = "chat",
                 system_prompt: str | None = None) -> str:
    """The prompt text for one question (chat template with generation prompt, or the bare question).

    Raises
    ------
    ValueError
        If ``prompt_format="chat"`` and the tokenizer has no chat template.
    """
    if prompt_format == "raw":
        return question
    if prompt_format != "chat":
        raise ValueError(f"`prompt_format` must be 'chat' or 'raw'; got {prompt_format!r}.")
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            "`prompt_format='chat'` needs a tokenizer with a chat template; this one has none "
            "(use a chat model or prompt_format='raw')."
        )
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": question})
    return str(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))


def batch_seed(seed: int, batch_index: int) -> int:
    """The torch seed of one batch, derived without Python's salted ``hash``."""
    return int(np.random.SeedSequence([int(seed), int(batch_index)]).generate_state(1, dtype=np.uint64)[0] >> 1)


def generate_answers(
    model: Any,
    tokenizer: Any,
    questions: Sequence[str],
    *,
    seed: int,
    sampling: SamplingParams = SamplingParams(),
    batch_size: int = 32,
    prompt_format: PromptFormat = "chat",
    system_prompt: str | None = None,
    progress: bool = False,
) -> list[dict[str, str]]:
    """Answer ``questions`` in batches; returns ``[{"prompt", "answer", "full_text"}, ...]`` in order."""
    import torch
    from transformers import GenerationConfig

    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1; got {batch_size}.")
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id is None:
        raise ValueError("the tokenizer has neither a pad nor an eos token; cannot pad a batch.")
    gen_cfg = GenerationConfig(
        do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k,
        repetition_penalty=sampling.repetition_penalty, max_new_tokens=sampling.max_new_tokens,
        pad_token_id=pad_id,
    )
    prompts = [build_prompt(tokenizer, q, prompt_format, system_prompt) for q in questions]
    # The chat template writes its own special tokens; a bare question gets the tokenizer's usual ones.
    add_special = prompt_format == "raw"
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    out: list[dict[str, str]] = []
    starts = range(0, len(prompts), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="generate", unit="batch")
    devices = [device.index or 0] if device.type == "cuda" else []
    was_training = model.training
    model.eval()
    try:
        for b, start in enumerate(starts):
            chunk = prompts[start:start + batch_size]
            enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=add_special)
            enc = {k: v.to(device) for k, v in enc.items()}
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                torch.manual_seed(batch_seed(seed, b))
                seqs = model.generate(**enc, generation_config=gen_cfg)
            n_in = enc["input_ids"].shape[1]
            for i, prompt in enumerate(chunk):
                out.append({
                    "prompt": prompt,
                    "answer": tokenizer.decode(seqs[i, n_in:], skip_special_tokens=True).strip(),
                    "full_text": tokenizer.decode(seqs[i], skip_special_tokens=True).strip(),
                })
    finally:
        tokenizer.padding_side = old_side
        model.train(was_training)
    return out


def answer_rows(items: Sequence[Any], generations: Sequence[Mapping[str, str]],
                meta: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Join TruthfulQA items, generations and run metadata into self-contained answer rows."""
    if len(items) != len(generations):
        raise ValueError(f"`generations` must match `items` in length; got {len(generations)} vs {len(items)}.")
    rows = []
    for i, (it, g) in enumerate(zip(items, generations, strict=True)):
        rows.append({
            **meta, "index": i, "question": it.question, "prompt": g["prompt"], "answer": g["answer"],
            "full_text": g["full_text"], "incorrect_answers": list(it.incorrect_answers),
            "correct_answers": list(it.correct_answers), "best_answer": it.best_answer,
        })
    return rows


def save_answers(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write answer rows as JSON Lines (atomic); scores can be recomputed from this file alone."""
    text = "".join(json.dumps(dict(r), ensure_ascii=False) + "\n" for r in rows)
    return atomic_write_text(Path(path), text)


REQUIRED_ANSWER_KEYS = ("question", "answer", "full_text", "incorrect_answers", "correct_answers")


def load_answers(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read an answers JSONL file written by :func:`save_answers`.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If a line is not JSON or lacks a required key (the message names the line).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"`answers` file not found: {p}")
    rows = []
    for lineno, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"`answers` file {p}, line {lineno}: not valid JSON ({exc.msg}).") from exc
        missing = [k for k in REQUIRED_ANSWER_KEYS if k not in r]
        if missing:
            raise ValueError(f"`answers` file {p}, line {lineno}: missing key(s) {missing}.")
        rows.append(r)
    if not rows:
        raise ValueError(f"`answers` file {p} holds no rows.")
    return rows
