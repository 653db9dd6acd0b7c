"""Per-prompt text states on TruthfulQA: level, off-topic answers and blends, through ``deltahall measure``.

Usage::

    deltahall convert truthfulqa --csv ../shared/data/TruthfulQA.csv --out runs/tqa_ref.jsonl
    python benchmarks/eval_measure_text.py --reference runs/tqa_ref.jsonl --out runs/eval_text.json

Each question is a prompt with two latent states (its correct and its incorrect answers). With a
seeded split, one answer of every state with at least three answers is held out of the reference
and measured as a generated sample of its own question; the rest is the reference. Then:

- **held-out references** (in-state answers never seen): flagged share, which should be at most α
  plus the finite-sample slack;
- **answers to other questions**: each held-out answer measured under a *different* question
  (seeded derangement): flagged share, which should be high;
- **blends**: a held-out correct and a held-out incorrect answer of the same question joined into
  one answer ("A. B"): flagged share; the embedding can only separate what it separates.

Every kind is measured with the conformal rule and the blend-aware margin rule, MiniLM embeddings.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("runs/eval_text.json"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--alphas", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    args = ap.parse_args(argv)

    from deltahall import stats
    from deltahall.io.jsonl import read_jsonl
    from deltahall.measure.calibration import DetectorSettings, measure_references
    from deltahall.models import load_embedder

    rows = read_jsonl(args.reference)
    rng = np.random.default_rng(args.seed)
    by: dict[tuple[str, str], list[int]] = {}
    for i, r in enumerate(rows):
        by.setdefault((r["prompt"], r["state"]), []).append(i)
    held: dict[tuple[str, str], int] = {}
    for key, idx in by.items():
        if len(idx) >= 3:
            held[key] = int(rng.choice(idx))
    ref_idx = [i for i in range(len(rows)) if i not in set(held.values())]
    t0 = time.perf_counter()
    emb = load_embedder("@minilm")
    texts = [r["text"] for r in rows]
    E = emb.embed(texts)
    questions = sorted({p for p, _ in held})
    # held-out in-state answers, answered to their own question
    h_keys = sorted(held)
    h_idx = [held[k] for k in h_keys]
    h_prompts = [k[0] for k in h_keys]
    # the same answers under another question (a seeded derangement of the questions)
    perm = rng.permutation(len(questions))
    while np.any(perm == np.arange(len(questions))):
        perm = rng.permutation(len(questions))
    other = {q: questions[j] for q, j in zip(questions, perm, strict=True)}
    o_prompts = [other[p] for p in h_prompts]
    # blends: correct + incorrect of one question, both held out
    blends, b_prompts = [], []
    for q in questions:
        if (q, "correct") in held and (q, "incorrect") in held:
            a, b = rows[held[(q, "correct")]]["text"], rows[held[(q, "incorrect")]]["text"]
            blends.append(f"{a.rstrip('.')}. {b}")
            b_prompts.append(q)
    EB = emb.embed(blends)
    t_embed = time.perf_counter() - t0
    R = E[ref_idx]
    r_states = [rows[i]["state"] for i in ref_idx]
    r_prompts = [rows[i]["prompt"] for i in ref_idx]
    G = np.vstack([E[h_idx], E[h_idx], EB])
    kinds = (
        ["held_out_reference"] * len(h_idx)
        + ["other_question"] * len(h_idx)
        + ["blend"] * len(blends)
    )
    prompts = h_prompts + o_prompts + b_prompts
    out = {
        "reference": str(args.reference),
        "n_reference": len(ref_idx),
        "n_questions": len(questions),
        "embed_seconds": t_embed,
        "results": [],
    }
    for rule in ("conformal", "margin"):
        for a in args.alphas:
            t1 = time.perf_counter()
            m = measure_references(
                R,
                r_states,
                r_prompts,
                G,
                prompts,
                settings=DetectorSettings(alpha=a, calibration=rule),
            )
            rec = {
                "rule": rule,
                "alpha": a,
                "seconds": time.perf_counter() - t1,
                "floor": m.floor.rate,
                "n_calibration": int(m.calibrator.n_calibration_[0]),
            }
            for kind in ("held_out_reference", "other_question", "blend"):
                f = m.gen_flagged[np.array(kinds) == kind]
                p = stats.proportion(int(f.sum()), int(f.size))
                rec[kind] = {"rate": p.rate, "ci": list(p.ci), "n": p.n}
            out["results"].append(rec)
            print(json.dumps(rec))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
