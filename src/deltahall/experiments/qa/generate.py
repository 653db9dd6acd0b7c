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
template; ``"raw"`` feeds the bare question, as the authors did; ``"qa"`` is a
format for *base* (not instruction-tuned) models::

    Question: <question>
    Answer:

and generation stops at the first newline (or eos); the answer is the text before
it. Rows that finish early stop costing compute once every row of the batch is done
(the KV cache is always on).
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
from deltahall.io.jsonl import iter_jsonl

logger = logging.getLogger(__name__)

PromptFormat = Literal["chat", "raw", "qa"]

#: The base-model QA template of ``prompt_format="qa"``.
QA_TEMPLATE = "Question: {question}\nAnswer:"
#: Where a ``"qa"`` answer ends.
QA_STOP = "\n"


@dataclass(frozen=True)
class SamplingParams:
    """The sampling of Section 7.2 (``top_k=0`` and ``repetition_penalty=1`` switch those off)."""

    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 0
    repetition_penalty: float = 1.0
    max_new_tokens: int = 80


class NucleusFromTopK:
    """Exact nucleus (top-p) filtering that sorts only the ``k`` most likely tokens.

    ``transformers``' top-p warper sorts the whole vocabulary at every step; with
    Gemma's 262 144 tokens that sort costs more than the model's forward pass on a
    CPU. The nucleus is the smallest set of most likely tokens whose mass reaches
    ``top_p``; when the ``k`` most likely tokens already hold that mass, the nucleus
    lies inside them and filtering them gives the same set. Rows where they do not
    (a very flat distribution) fall back to the full sort, so the result is exact.
    Runs after the temperature (as ``transformers``' own warper does).
    """

    def __init__(self, top_p: float, k: int = 256) -> None:
        self.top_p = float(top_p)
        self.k = int(k)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        probs = scores.float().softmax(dim=-1)
        k = min(self.k, scores.shape[-1])
        vals, idx = torch.topk(probs, k, dim=-1)
        cum = vals.cumsum(dim=-1)
        keep_sorted = (cum - vals) < self.top_p
        keep_sorted[:, 0] = True
        keep = torch.zeros_like(scores, dtype=torch.bool).scatter(1, idx, keep_sorted)
        flat = cum[:, -1] < self.top_p
        if bool(flat.any()):
            rows = flat.nonzero().flatten()
            sp, si = torch.sort(probs[rows], dim=-1, descending=True)
            sc = sp.cumsum(dim=-1)
            ks = (sc - sp) < self.top_p
            ks[:, 0] = True
            keep[rows] = torch.zeros_like(ks).scatter(1, si, ks)
        return scores.masked_fill(~keep, float("-inf"))


def build_prompt(
    tokenizer: Any,
    question: str,
    prompt_format: PromptFormat = "chat",
    system_prompt: str | None = None,
) -> str:
    """The prompt text for one question (chat template with generation prompt, or the bare question).

    Raises
    ------
    ValueError
        If ``prompt_format="chat"`` and the tokenizer has no chat template.
    """
    if prompt_format == "raw":
        return question
    if prompt_format == "qa":
        return QA_TEMPLATE.format(question=question.strip())
    if prompt_format != "chat":
        raise ValueError(
            f"`prompt_format` must be 'chat' or 'raw' (or 'qa' for base models); got {prompt_format!r}."
        )
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
    return int(
        np.random.SeedSequence([int(seed), int(batch_index)]).generate_state(1, dtype=np.uint64)[0]
        >> 1
    )


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
    pad_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    if pad_id is None:
        raise ValueError("the tokenizer has neither a pad nor an eos token; cannot pad a batch.")
    if prompt_format not in ("chat", "raw", "qa"):
        raise ValueError(
            f"`prompt_format` must be 'chat' or 'raw' (or 'qa' for base models); got {prompt_format!r}."
        )
    stop = {"stop_strings": [QA_STOP]} if prompt_format == "qa" else {}
    from transformers import LogitsProcessorList

    nucleus = (
        LogitsProcessorList([NucleusFromTopK(sampling.top_p)]) if sampling.top_p < 1.0 else None
    )
    gen_cfg = GenerationConfig(
        **stop,
        do_sample=True,
        temperature=sampling.temperature,
        top_p=1.0,
        top_k=sampling.top_k,
        repetition_penalty=sampling.repetition_penalty,
        max_new_tokens=sampling.max_new_tokens,
        pad_token_id=pad_id,
    )
    prompts = [build_prompt(tokenizer, q, prompt_format, system_prompt) for q in questions]
    # The chat template writes its own special tokens; a bare question gets the tokenizer's usual ones.
    add_special = prompt_format in ("raw", "qa")
    gen_kwargs: dict[str, Any] = {"tokenizer": tokenizer} if stop else {}
    if nucleus is not None:
        gen_kwargs["logits_processor"] = nucleus
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
            chunk = prompts[start : start + batch_size]
            enc = tokenizer(
                chunk, return_tensors="pt", padding=True, add_special_tokens=add_special
            )
            enc = {k: v.to(device) for k, v in enc.items()}
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                torch.manual_seed(batch_seed(seed, b))
                seqs = model.generate(**enc, generation_config=gen_cfg, **gen_kwargs)
            n_in = enc["input_ids"].shape[1]
            for i, prompt in enumerate(chunk):
                answer = tokenizer.decode(seqs[i, n_in:], skip_special_tokens=True)
                if stop:
                    answer = answer.split(QA_STOP, 1)[0]
                answer = answer.strip()
                out.append(
                    {
                        "prompt": prompt,
                        "answer": answer,
                        "full_text": f"{prompt} {answer}"
                        if stop
                        else tokenizer.decode(seqs[i], skip_special_tokens=True).strip(),
                    }
                )
    finally:
        tokenizer.padding_side = old_side
        model.train(was_training)
    return out


def answer_rows(
    items: Sequence[Any], generations: Sequence[Mapping[str, str]], meta: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Join TruthfulQA items, generations and run metadata into self-contained answer rows."""
    if len(items) != len(generations):
        raise ValueError(
            f"`generations` must match `items` in length; got {len(generations)} vs {len(items)}."
        )
    rows = []
    for i, (it, g) in enumerate(zip(items, generations, strict=True)):
        rows.append(
            {
                **meta,
                "index": i,
                "question": it.question,
                "prompt": g["prompt"],
                "answer": g["answer"],
                "full_text": g["full_text"],
                "incorrect_answers": list(it.incorrect_answers),
                "correct_answers": list(it.correct_answers),
                "best_answer": it.best_answer,
            }
        )
    return rows


def save_answers(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write answer rows as JSON Lines (atomic); scores can be recomputed from this file alone."""
    text = "".join(json.dumps(dict(r), ensure_ascii=False, allow_nan=False) + "\n" for r in rows)
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
    for lineno, r in iter_jsonl(p):  # "\n"-only lines; bad UTF-8 / JSON name the file and line
        if not isinstance(r, dict):
            raise ValueError(
                f"`answers` file {p}, line {lineno}: must be a JSON object; got {type(r).__name__}."
            )
        missing = [k for k in REQUIRED_ANSWER_KEYS if k not in r]
        if missing:
            raise ValueError(f"`answers` file {p}, line {lineno}: missing key(s) {missing}.")
        rows.append(r)
    if not rows:
        raise ValueError(f"`answers` file {p} holds no rows.")
    return rows
