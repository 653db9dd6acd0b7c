"""Throughput of ``deltahall measure``: 1,000,000 precomputed 384-d embeddings, and @minilm's overhead.

Part 1 runs the whole command path (``deltahall.measure.pipeline.run``: read the ``.npy``
files, split, fit, calibrate, score every generated row, per-prompt rates, samples.csv,
measure.json; no HTML report) on ``--n`` generated rows and reports wall time and rows/s,
with the time of each stage. Part 2 measures JSONL texts with ``@minilm`` (embedding cache
off) and reports the share of wall time spent outside the embedder (goal: <= 5%).

    OMP_NUM_THREADS=2 python benchmarks/bench_measure.py --n 1000000 --texts 4000
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def bench_precomputed(n: int, dim: int, n_ref_per_state: int, work: Path) -> dict[str, float]:
    from deltahall.measure.pipeline import MeasureConfig, run

    rng = np.random.default_rng(0)
    means = rng.normal(size=(3, dim)).astype(np.float32)
    y = np.repeat(np.arange(3), n_ref_per_state)
    np.save(work / "ref.npy", means[y] + rng.normal(size=(y.size, dim)).astype(np.float32))
    np.save(work / "labels.npy", y)
    G = np.lib.format.open_memmap(work / "gen.npy", mode="w+", dtype=np.float32, shape=(n, dim))
    for s in range(0, n, 100_000):
        k = min(100_000, n - s)
        G[s : s + k] = means[rng.integers(0, 3, k)] + rng.normal(size=(k, dim)).astype(np.float32)
    G.flush()
    del G
    np.save(work / "prompts.npy", np.array([f"p{i % 10}" for i in range(n)]))
    cfg = MeasureConfig(reference=work / "ref.npy", reference_labels=work / "labels.npy", generated=work / "gen.npy",
                        generated_prompts=work / "prompts.npy", out_dir=work / "out", report=False)
    t0 = time.perf_counter()
    res = run(cfg)
    wall = time.perf_counter() - t0
    return {"n": n, "dim": dim, "wall_s": wall, "rows_per_s": n / wall,
            **{f"{k}_s": v for k, v in res.seconds.items()}, "rate": res.summary["rate"]}


def bench_minilm(n_texts: int, work: Path) -> dict[str, float]:
    import deltahall.models
    from deltahall.measure.pipeline import MeasureConfig, run

    emb = deltahall.models.load_embedder("@minilm")
    spent = [0.0]
    real_embed = emb.embed

    def timed(items, **kw):
        t = time.perf_counter()
        try:
            return real_embed(items, **kw)
        finally:
            spent[0] += time.perf_counter() - t

    emb.embed = timed  # type: ignore[method-assign]
    deltahall.models.load_embedder = lambda spec, **kw: emb  # type: ignore[assignment]
    topics = {"animals": "The {} rested quietly near the old barn.", "code": "The {} compiler rejected this function.",
              "weather": "A {} storm is expected over the coast tonight."}
    words = [f"w{i}" for i in range(n_texts)]
    ref = [{"text": t.format(w), "state": s} for s, t in topics.items() for w in words[: n_texts // 4]]
    gen = [{"text": list(topics.values())[i % 3].format(w), "prompt": f"p{i % 5}"} for i, w in enumerate(words)]
    for name, rows in (("ref.jsonl", ref), ("gen.jsonl", gen)):
        (work / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    cfg = MeasureConfig(reference=work / "ref.jsonl", generated=work / "gen.jsonl", embedder="@minilm",
                        out_dir=work / "out_minilm", cache_dir=work / "cache", report=False)
    t0 = time.perf_counter()
    run(cfg)
    wall = time.perf_counter() - t0
    return {"texts_embedded": len(ref) + len(gen), "wall_s": wall, "embedder_s": spent[0],
            "outside_embedder_share": (wall - spent[0]) / wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="generated rows (part 1)")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--ref-per-state", type=int, default=3000)
    ap.add_argument("--texts", type=int, default=4000, help="generated texts for @minilm (0 skips part 2)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_measure_") as d:
        work = Path(d)
        out: dict[str, Any] = {"precomputed": bench_precomputed(a.n, a.dim, a.ref_per_state, work),
               "cpus": len(os.sched_getaffinity(0)), "load_avg": os.getloadavg()}
        if a.texts:
            out["minilm"] = bench_minilm(a.texts, work)
    if a.json:
        print(json.dumps(out, indent=2))
        return
    p = out["precomputed"]
    print(f"precomputed: {p['n']:,} x {p['dim']} generated rows in {p['wall_s']:.1f} s = {p['rows_per_s']:,.0f} rows/s "
          f"(load {p['load_and_embed_s']:.1f} s, measure {p['measure_s']:.1f} s, samples.csv {p['write_csv_s']:.1f} s)")
    if "minilm" in out:
        m = out["minilm"]
        print(f"@minilm: {m['texts_embedded']} texts, wall {m['wall_s']:.1f} s, embedder {m['embedder_s']:.1f} s, "
              f"outside the embedder {100 * m['outside_embedder_share']:.1f}%")
    print(f"machine: {out['cpus']} CPUs, load average {out['load_avg']}")


if __name__ == "__main__":
    main()
