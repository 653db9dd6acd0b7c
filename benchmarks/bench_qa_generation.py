"""Generation and LoRA-training speed of the QA experiment (issue 9, item 5).

Generation: left-padded batches, KV cache, the paper's sampling (temperature 0.7, exact
top-p 0.9 through :class:`deltahall.experiments.qa.generate.NucleusFromTopK`), a fixed
number of new tokens per row (``min_new_tokens = max_new_tokens``, so every batch size
generates the same work); tokens per second = rows x new tokens / wall time.

LoRA training: the arms' step (:func:`deltahall.experiments.qa.finetune.answer_loss`, rank 8 on
the attention projections, AdamW) on batches of ``--train-batch`` "Question/Answer"
examples from the packaged dataset; tokens per second counts non-padding tokens.

Real model on CPU (what docs/qa.md reports)::

    OMP_NUM_THREADS=2 python benchmarks/bench_qa_generation.py --model @gemma3-270m \
        --truthfulqa TruthfulQA.csv --batch-sizes 1 16 --threads 2

The chat model, with its chat template (issue 15)::

    OMP_NUM_THREADS=1 python benchmarks/bench_qa_generation.py --model @smollm2-135m-instruct \
        --prompt-format chat --truthfulqa TruthfulQA.csv --batch-sizes 1 16 64 --threads 1

Offline plumbing (default, tiny random Qwen2)::

    python benchmarks/bench_qa_generation.py

Timings are the best of ``--repeat`` runs; on a shared machine they are noisy.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from _timing import best_of  # noqa: E402  (benchmarks/ is on sys.path when run as a script)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--model",
        default="@tiny",
        help="'@gemma3-270m', a local folder, or '@tiny' (offline tiny model)",
    )
    ap.add_argument(
        "--truthfulqa", default="@standin", help="TruthfulQA CSV or '@standin' (prompts)"
    )
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument(
        "--prompt-format",
        choices=("qa", "chat"),
        default="qa",
        help="'qa' (Question/Answer lines, base models) or 'chat' (the tokenizer's chat template)",
    )
    ap.add_argument("--train-batch", type=int, default=8)
    ap.add_argument("--train-steps", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()

    import torch
    from transformers import LogitsProcessorList

    from deltahall.experiments.qa.dataset import load_dataset
    from deltahall.experiments.qa.finetune import answer_loss, collate, encode_pair
    from deltahall.experiments.qa.generate import NucleusFromTopK, build_prompt
    from deltahall.experiments.qa.truthfulqa import load_truthfulqa
    from deltahall.models import load_causal_lm

    if args.threads:
        torch.set_num_threads(args.threads)
    items = load_truthfulqa(args.truthfulqa)
    rows = load_dataset()
    spec = args.model
    if spec == "@tiny":
        from deltahall.experiments.qa.tiny import build_tiny_model

        texts = [t for it in items for t in (it.question, *it.correct_answers)] + [
            t for r in rows for t in (r.question, *r.answers)
        ]
        spec = str(build_tiny_model(Path(tempfile.mkdtemp()) / "tiny", texts, seed=0))
    t0 = time.perf_counter()
    model, tok = load_causal_lm(spec, device=args.device, dtype="float32")
    load_s = time.perf_counter() - t0
    tok.padding_side = "left"
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    n = args.max_new_tokens
    result: dict[str, Any] = {
        "model": args.model,
        "prompt_format": args.prompt_format,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "max_new_tokens": n,
        "load_s": round(load_s, 1),
        "generation": {},
    }

    def generate(bs: int) -> None:
        prompts = [
            build_prompt(tok, items[i % len(items)].question, args.prompt_format) for i in range(bs)
        ]
        # the chat template writes its own special tokens
        enc = tok(
            prompts,
            return_tensors="pt",
            padding=True,
            add_special_tokens=args.prompt_format == "qa",
        ).to(args.device)
        with torch.no_grad():
            model.generate(
                **enc,
                do_sample=True,
                temperature=0.7,
                top_p=1.0,
                top_k=0,
                max_new_tokens=n,
                min_new_tokens=n,
                pad_token_id=pad,
                logits_processor=LogitsProcessorList([NucleusFromTopK(0.9)]),
            )
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    model.eval()
    generate(2)  # warm-up
    for bs in args.batch_sizes:
        s = best_of(lambda bs=bs: generate(bs), args.repeat)
        result["generation"][str(bs)] = {
            "seconds": round(s, 2),
            "tokens_per_s": round(bs * n / s, 2),
        }
    gen = result["generation"]
    if len(args.batch_sizes) > 1:
        lo, hi = str(min(args.batch_sizes)), str(max(args.batch_sizes))
        result["speedup_tokens_per_s"] = round(gen[hi]["tokens_per_s"] / gen[lo]["tokens_per_s"], 2)

    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=8,
        lora_alpha=16,
        lora_dropout=0.0,
        task_type="CAUSAL_LM",
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
    )
    pm = get_peft_model(model, lora)
    opt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=5e-4)
    ex = [
        encode_pair(tok, r.question, a, 128, prompt_format=args.prompt_format)
        for r in rows
        for a in r.answers
    ]
    pm.train()
    times, tokens = [], []
    for k in range(args.train_steps + 1):  # the first step is a warm-up
        batch = collate(ex[k * args.train_batch : (k + 1) * args.train_batch], pad)
        batch = {key: v.to(args.device) for key, v in batch.items()}
        t0 = time.perf_counter()
        loss = answer_loss(pm, batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        if k:
            times.append(time.perf_counter() - t0)
            tokens.append(int(batch["attention_mask"].sum()))
    result["lora_training"] = {
        "batch": args.train_batch,
        "steps": len(times),
        "seconds_per_step": round(sum(times) / len(times), 2),
        "tokens_per_s": round(sum(tokens) / sum(times), 1),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
