"""Batched vs one-question-per-call generation for the QA experiment (Section 7.2).

The authors' script called ``generate`` once per TruthfulQA question; ``deltahall``
generates in left-padded batches. This script times both with the same sampling
(temperature 0.7, top-p 0.9, ``--max-new-tokens``) and prints the speed-up.

Offline (default): builds the tiny Qwen2 model on CPU::

    python benchmarks/bench_qa_generation.py --n-questions 64 --batch-size 16

Unchanged on a GPU with a real model (needs hub access or a local folder)::

    python benchmarks/bench_qa_generation.py --model Qwen/Qwen1.5-1.8B-Chat --device cuda \
        --truthfulqa TruthfulQA.csv --n-questions 128 --batch-size 32 --max-new-tokens 80

Timings are the best of ``--repeat`` runs; on a shared machine they are noisy.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from _timing import best_of  # noqa: E402  (benchmarks/ is on sys.path when run as a script)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="@tiny", help="hub id or local folder; '@tiny' builds the offline tiny model")
    ap.add_argument("--truthfulqa", default="@standin", help="TruthfulQA CSV, 'hub' or '@standin'")
    ap.add_argument("--n-questions", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()

    import torch

    from deltahall.experiments.qa.generate import SamplingParams, generate_answers
    from deltahall.experiments.qa.modeling import load_model_and_tokenizer
    from deltahall.experiments.qa.truthfulqa import load_truthfulqa

    if args.threads:
        torch.set_num_threads(args.threads)
    items = load_truthfulqa(args.truthfulqa)
    questions = [items[i % len(items)].question for i in range(args.n_questions)]
    path = args.model
    if path == "@tiny":
        from deltahall.experiments.qa.tiny import build_tiny_model

        texts = [t for it in items for t in (it.question, *it.correct_answers, *it.incorrect_answers)]
        path = str(build_tiny_model(Path(tempfile.mkdtemp()) / "tiny", texts, seed=0))
    model, tok = load_model_and_tokenizer(path, device=args.device, dtype=args.dtype)
    sampling = SamplingParams(max_new_tokens=args.max_new_tokens)

    def gen(bs: int):  # noqa: ANN202
        out = generate_answers(model, tok, questions, seed=0, sampling=sampling, batch_size=bs)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return out

    gen(args.batch_size)  # warm-up
    batched = best_of(lambda: gen(args.batch_size), args.repeat)
    single = best_of(lambda: gen(1), args.repeat)
    print(json.dumps({
        "model": args.model, "device": args.device, "threads": torch.get_num_threads(),
        "n_questions": args.n_questions, "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens,
        "batched_s": round(batched, 3), "one_at_a_time_s": round(single, 3),
        "questions_per_s_batched": round(args.n_questions / batched, 2),
        "questions_per_s_one_at_a_time": round(args.n_questions / single, 2),
        "speedup": round(single / batched, 2),
    }, indent=2))


if __name__ == "__main__":
    main()
