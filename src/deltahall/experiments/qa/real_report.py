"""Main-job section: the text δ-measure with real pretrained weights (MiniLM) on the packaged dataset.

No language model is involved: the measure (:mod:`.textdelta`) is run on texts whose
status is known — the 300 questions' reference answers (inside), word-dropout copies of
one answer (held-out in-state draws: the floor), joined and word-interleaved blends of
the two answers, and off-topic answers — with the real all-MiniLM-L6-v2 sentence
embedder. It checks that the instrument can tell these apart before it is pointed at a
fine-tuned model (``deltahall qa arms``; results in docs/qa.md).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from deltahall.io import RunDir, Section

logger = logging.getLogger(__name__)

EMBEDDER = "@minilm"

EXPECTED = {
    "reference a1": "inside", "reference a2": "inside", "held-out in-state draw": "inside (floor ≈ p)",
    "joined blend": "δ-hallucination", "interleaved blend": "δ-hallucination", "off-topic answer": "δ-hallucination",
}


def known_truth_rows(result: Any) -> list[dict[str, Any]]:
    """One table row per kind of text: expected status, both rules' rates with Wilson intervals, split."""
    from deltahall.experiments.qa.textdelta import KNOWN_KINDS

    rows = []
    for k in KNOWN_KINDS:
        m, p = result.rates_margin[k], result.rates[k]
        rows.append({
            "text": k, "expected": EXPECTED[k], "n": m.n,
            "flagged (blend-aware)": f"{m.rate:.3f} [{m.low:.3f}, {m.high:.3f}]",
            "flagged (plain max-cos)": f"{p.rate:.3f} [{p.low:.3f}, {p.high:.3f}]",
            "mean max cos": result.mean_max_sim[k], **result.splits[k],
        })
    return rows


def main_job_section(run_dir: Path, seed: int, *, limit: int | None = None) -> Section:
    """Run the known-truth check with MiniLM on the packaged 300 x 2 dataset; write CSV/JSON; return the section.

    ``limit`` keeps only the first questions (tests); the main job uses all 300.
    """
    from deltahall.experiments.qa.dataset import load_dataset
    from deltahall.experiments.qa.textdelta import known_truth_check
    from deltahall.models import load_embedder

    t0 = time.perf_counter()
    rd = RunDir(run_dir)
    embedder = load_embedder(EMBEDDER)
    rows = load_dataset(None)[:limit]
    res = known_truth_check(embedder.embed, [r.answers for r in rows], rng=int(seed))
    table = known_truth_rows(res)
    cal = res.calibration
    rd.write_csv("known_truth.csv", table)
    rd.write_json("known_truth.json", {
        "embedder": getattr(embedder, "fingerprint", {"spec": EMBEDDER}), "seed": int(seed),
        "n_questions": res.n_questions, "calibration": cal, "table": table,
    })
    sec = Section("δ-hallucination measured in text — real pretrained weights (MiniLM)")
    fp = getattr(embedder, "fingerprint", {})
    sec.note(
        "Computed with real pretrained weights: all-MiniLM-L6-v2 sentence embeddings "
        f"(SHA-256 {str(fp.get('sha256', '?'))[:12]}…), loaded offline. No language model is involved here; "
        "the fine-tuned Gemma 3 270M experiment (`deltahall qa arms --preset cpu-real`) is too slow for this "
        "report and its results are in docs/qa.md."
    )
    sec.text(
        f"Definition 4.2 with the two reference answers of each of the {res.n_questions} packaged questions as the "
        "latent states: s_i = cos(e(y), e(a_i)). Thresholds are calibrated on in-state draws (word-dropout copies, "
        f"25 % of words dropped, of one answer per question; half the questions calibrate, the other half give the "
        f"floor), p = {cal.percentile:g}. Plain rule: flagged when max_i s_i < τ = {cal.tau:.3f}. Blend-aware rule "
        f"(our headline): flagged unless some state has s_i ≥ τ' = {cal.tau_margin:.3f} and margin "
        f"s_i − s_other ≥ μ = {cal.mu:.3f} (τ', μ at p/2). Rates with 95 % Wilson intervals; the split counts use "
        "the blend-aware rule (near both = close to both, distinctly neither)."
    )
    sec.table(table, list(table[0]), float_format="{:.3f}")
    sec.text(f"Wall time: {time.perf_counter() - t0:.1f} s.")
    return sec
