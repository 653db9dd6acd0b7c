"""Main-job section: the text δ-measure with real pretrained weights (MiniLM) on the packaged dataset.

No language model is involved: the instrument (:mod:`deltahall.measure`, through
:mod:`.delta_measure`: each question's two reference answers are its latent states) is run
on texts whose status is known — the 300 questions' reference answers (inside), word-dropout
copies of one answer (in-state draws: half the questions' calibrate, the other half's give
the floor), joined and word-interleaved blends of the two answers, and off-topic answers —
with the real all-MiniLM-L6-v2 sentence embedder. It checks that the instrument can tell
these apart before it is pointed at a fine-tuned model (``deltahall qa arms``; results in
docs/qa.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deltahall._validation import check_int, check_real
from deltahall.io import RunDir, Section

logger = logging.getLogger(__name__)

EMBEDDER = "@minilm"
#: The level of both rules (the paper's 10 % HDR threshold of Section 7.3).
ALPHA = 0.1
DROPOUT = 0.25

KNOWN_KINDS = (
    "reference a1",
    "reference a2",
    "held-out in-state draw",
    "joined blend",
    "interleaved blend",
    "off-topic answer",
)

EXPECTED = {
    "reference a1": "inside",
    "reference a2": "inside",
    "held-out in-state draw": "inside (the floor, ≈ α)",
    "joined blend": "δ-hallucination",
    "interleaved blend": "δ-hallucination",
    "off-topic answer": "δ-hallucination",
}


# ----- texts whose truth is known (validation of the measure; no language model needed) -----


def joined_blend(a1: str, a2: str) -> str:
    """Both answers one after the other (``"a1 a2"``): an answer that mixes the two states."""
    return f"{a1.rstrip()} {a2.lstrip()}"


def interleaved_blend(a1: str, a2: str) -> str:
    """The words of ``a1`` and ``a2`` alternated (``w1 v1 w2 v2 ...``; the longer one's tail kept)."""
    w1, w2 = a1.split(), a2.split()
    out: list[str] = []
    for i in range(max(len(w1), len(w2))):
        if i < len(w1):
            out.append(w1[i])
        if i < len(w2):
            out.append(w2[i])
    return " ".join(out)


def word_dropout(text: str, *, rate: float, rng: Any) -> str:
    """``text`` with each word dropped with probability ``rate`` (at least one word kept).

    A model-free stand-in for a model's draws around one answer: it stays on the
    answer's topic and wording, as samples of a model fine-tuned on that answer do.
    """
    check_real(rate, "rate", low=0.0, high=1.0, high_open=True)
    g = np.random.default_rng(rng)
    words = text.split()
    if not words:
        return text
    keep = g.random(len(words)) >= rate
    if not keep.any():
        keep[int(g.integers(len(words)))] = True
    return " ".join(w for w, k in zip(words, keep, strict=True) if k)


@dataclass(frozen=True)
class KnownTruthResult:
    """The instrument on texts whose status is known: per kind of text, both rules' measurement."""

    results: dict[str, Any]  # kind -> delta_measure.TextDelta
    n_questions: int
    n_calibration: int
    alpha: float


def known_truth_check(
    embed: Any,
    pairs: Sequence[tuple[str, str]],
    *,
    rng: Any,
    alpha: float = ALPHA,
    dropout: float = DROPOUT,
) -> KnownTruthResult:
    r"""Run the text δ-measure on texts whose truth is known.

    Calibration (no model): the in-state draws are word-dropout copies of one answer per
    question (:func:`word_dropout`, ``dropout``); half of the questions' draws calibrate
    (:func:`.delta_measure.calibration_split`), the other half's give the floor. Then every
    question's reference answers, their joined and word-interleaved blends and an off-topic
    answer (a reference answer of another question) are measured under both rules.

    Parameters
    ----------
    embed : callable
        ``embed(list[str]) -> ndarray (n, dim)``; e.g. ``load_embedder('@minilm').embed``.
    pairs : sequence of (a1, a2)
        The two reference answers of each question (at least 4 questions; with
        ``alpha = 0.1`` at least 38, so that 19 calibrate the margin rule).
    rng : int or numpy Generator
    """
    from deltahall.experiments.qa.delta_measure import (
        Scored,
        calibration_split,
        measure_text,
        pair_scores,
    )

    n = len(pairs)
    check_int(n, "len(pairs)", low=4)
    g = np.random.default_rng(rng)
    a1 = [p[0] for p in pairs]
    a2 = [p[1] for p in pairs]
    own = g.integers(0, 2, size=n)  # which answer the in-state draws come from
    draws = [word_dropout(pairs[j][int(own[j])], rate=dropout, rng=g) for j in range(n)]
    shift = g.integers(1, n, size=n)
    off = [pairs[(j + int(shift[j])) % n][int(g.integers(0, 2))] for j in range(n)]
    texts = {
        "reference a1": a1,
        "reference a2": a2,
        "held-out in-state draw": draws,
        "joined blend": [joined_blend(x, y) for x, y in pairs],
        "interleaved blend": [interleaved_blend(x, y) for x, y in pairs],
        "off-topic answer": off,
    }
    e = np.asarray(embed([t for k in KNOWN_KINDS for t in texts[k]]), dtype=np.float64)
    emb = {k: e[i * n : (i + 1) * n] for i, k in enumerate(KNOWN_KINDS)}
    sims = {k: pair_scores(emb[k], emb["reference a1"], emb["reference a2"]) for k in KNOWN_KINDS}
    calib = calibration_split(n, fraction=0.5, rng=g)
    q = np.arange(n)
    d = sims["held-out in-state draw"]
    cal = Scored.of(d[calib], q[calib], own[calib])
    floor = Scored.of(d[~calib], q[~calib], own[~calib])
    results = {}
    for k in KNOWN_KINDS:
        keep = ~calib if k == "held-out in-state draw" else np.ones(n, dtype=bool)
        results[k] = measure_text(
            Scored.of(sims[k][keep], q[keep]), calibration=cal, floor=floor, alpha=alpha
        )
    return KnownTruthResult(results, n, int(calib.sum()), float(alpha))


def _ci(p: Any) -> str:
    return f"{p.rate:.3f} [{p.ci[0]:.3f}, {p.ci[1]:.3f}]"


def known_truth_rows(result: KnownTruthResult) -> list[dict[str, Any]]:
    """One table row per kind of text: expected status, both rules' rates with Wilson intervals,
    the excess test against the floor, the split."""
    rows = []
    for k in KNOWN_KINDS:
        td = result.results[k]
        m, p = td.margin, td.plain
        rows.append(
            {
                "text": k,
                "expected": EXPECTED[k],
                "n": m.rate.n,
                "flagged (blend-aware)": _ci(m.rate),
                "flagged (plain max-cos)": _ci(p.rate),
                "excess p (blend-aware)": m.excess_p_value,
                "mean max cos": td.mean_max_sim,
                **td.splits,
            }
        )
    return rows


def main_job_section(run_dir: Path, seed: int, *, limit: int | None = None) -> Section:
    """Run the known-truth check with MiniLM on the packaged 300 x 2 dataset; write CSV/JSON; return the section.

    ``limit`` keeps only the first questions (tests); the main job uses all 300.
    """
    from deltahall.experiments.qa.dataset import load_dataset
    from deltahall.models import load_embedder

    t0 = time.perf_counter()
    rd = RunDir(run_dir)
    embedder = load_embedder(EMBEDDER)
    rows = load_dataset()[:limit]
    res = known_truth_check(embedder.embed, [r.answers for r in rows], rng=int(seed))
    table = known_truth_rows(res)
    ref = res.results["reference a1"]
    floors = {
        rule: (m.floor.rate, list(m.floor.ci), m.floor.k, m.floor.n)
        for rule, m in (("blend-aware", ref.margin), ("plain", ref.plain))
    }
    rd.write_csv("known_truth.csv", table)
    rd.write_json(
        "known_truth.json",
        {
            "embedder": getattr(embedder, "fingerprint", {"spec": EMBEDDER}),
            "seed": int(seed),
            "n_questions": res.n_questions,
            "alpha": res.alpha,
            "n_calibration": res.n_calibration,
            "thresholds": {"tau": ref.tau, "tau_margin": ref.tau_margin, "mu": ref.mu},
            "floor": {
                k: {"rate": v[0], "ci": v[1], "k": v[2], "n": v[3]} for k, v in floors.items()
            },
            "per_kind": {
                k: {
                    "blend-aware": td.margin.summary() | {"per_prompt": []},
                    "plain": td.plain.summary() | {"per_prompt": []},
                }
                for k, td in res.results.items()
            },
            "table": table,
        },
    )
    sec = Section("δ-hallucination measured in text — real pretrained weights (MiniLM)")
    fp = getattr(embedder, "fingerprint", {})
    sec.note(
        "Computed with real pretrained weights: all-MiniLM-L6-v2 sentence embeddings "
        f"(SHA-256 {str(fp.get('sha256', '?'))[:12]}…), loaded offline. No language model is involved here; "
        "the fine-tuned Gemma 3 270M experiment (`deltahall qa arms --preset cpu-real`) is too slow for this "
        "report and its results are in docs/qa.md."
    )
    fb, fpl = floors["blend-aware"], floors["plain"]
    sec.text(
        f"Definition 4.2 with the two reference answers of each of the {res.n_questions} packaged questions as the "
        "latent states, measured with the one instrument (deltahall.measure): the per-question scorer gives "
        "s_i = cos(e(y), e(a_i)). Calibration on in-state draws (word-dropout copies, "
        f"{DROPOUT:.0%} of words dropped, of one answer per question; {res.n_calibration} questions' draws calibrate, the "
        f"other {res.n_questions - res.n_calibration} questions' draws give the floor), α = {res.alpha:g}. Plain rule "
        f"(conformal max-cosine): flagged when max_i s_i < τ = {ref.tau:.3f}. Blend-aware rule (our headline, "
        f"calibration 'margin'): flagged unless some state has s_i ≥ τ' = {ref.tau_margin:.3f} and margin "
        f"s_i − s_other ≥ μ = {ref.mu:.3f} (each at α/2). Floor (held-out in-state draws flagged): blend-aware "
        f"{fb[0]:.3f} [{fb[1][0]:.3f}, {fb[1][1]:.3f}], plain {fpl[0]:.3f} [{fpl[1][0]:.3f}, {fpl[1][1]:.3f}]. Rates with "
        "95 % Wilson intervals; excess p = the instrument's exact one-sided test of rate > floor, stratified by nearest "
        "state; the split counts use the blend-aware rule (near both = close to both, distinctly neither)."
    )
    sec.table(table, list(table[0]), float_format="{:.3f}")
    sec.text(f"Wall time: {time.perf_counter() - t0:.1f} s.")
    return sec
