"""Throughput of ``deltahall measure`` against a minimal numpy/scikit-learn script, and of ``embed``.

Part 1, per size (generated rows x dimension x states): the ``deltahall measure`` command
(``--report false``; its ``measure.json`` ``seconds`` are those of
``deltahall.experiments.measure_run.run``, so import time = wall - ``seconds.total``) and
``benchmarks/minimal_measure.py`` (the same statistics in plain numpy/scikit-learn, same
seeds), each a fresh subprocess, run back to back ``--repeat`` times; medians of wall time
and of peak RSS (``os.wait4``'s ``ru_maxrss``), the ratio CLI / script, and the share of the
CLI's wall time spent writing ``samples.csv`` (and, once, ``samples.parquet``). The rates,
the floors and both excess p-values (the mixture-matched test and the pooled Fisher test) of
the two must agree. Part 2 (``--embed-texts``): ``Embedder.embed`` of ``@minilm`` (64 texts a
batch, texts sorted by length over the whole input) against one direct
``SentenceTransformer.encode`` call on the same texts, and against the unsorted batching it
replaced. Part 3 (``--texts``): JSONL texts through the command with ``@minilm``: the share
of wall time outside the embedder.

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/bench_measure.py --ref-per-state 1000 --repeat 4 \\
        --sizes 10000x384x3,100000x384x3,100000x32x3,100000x384x10,1000000x384x3 --embed-texts 5000

Peak RSS is each child's own: the inputs are made in a spawned process, because a child's
``ru_maxrss`` starts from its parent's peak. Run it where ``deltahall`` is the checkout you
mean to time (``PYTHONPATH=src`` if another editable install shadows it) and with compiled
bytecode (``python -m compileall src``; with ``PYTHONDONTWRITEBYTECODE`` set, every run
compiles the package again, about 0.2 s, which the one-file script does not pay).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent


def input_paths(work: Path) -> dict[str, Path]:
    return {k: work / f"{k}.npy" for k in ("ref", "labels", "gen", "prompts")}


def make_inputs(
    n: int, dim: int, n_states: int, n_ref_per_state: int, work: Path
) -> dict[str, Path]:
    """Reference rows around ``n_states`` random means, ``n`` generated rows like them, 10 prompts.

    Runs in a spawned process (see :func:`bench_size`), so this process's memory stays small.
    """
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    means = rng.normal(size=(n_states, dim)).astype(np.float32)
    y = np.repeat(np.arange(n_states), n_ref_per_state)
    paths = input_paths(work)
    np.save(paths["ref"], means[y] + rng.normal(size=(y.size, dim)).astype(np.float32))
    np.save(paths["labels"], y)
    G = np.lib.format.open_memmap(paths["gen"], mode="w+", dtype=np.float32, shape=(n, dim))
    for s in range(0, n, 100_000):
        k = min(100_000, n - s)
        G[s : s + k] = means[rng.integers(0, n_states, k)] + rng.normal(size=(k, dim)).astype(
            np.float32
        )
    G.flush()
    del G
    np.save(paths["prompts"], np.array([f"p{i % 10}" for i in range(n)]))
    return paths


def timed(cmd: list[str]) -> dict[str, float]:
    """Wall seconds and peak RSS (MiB) of one subprocess; a failure raises with its stderr."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} ... failed ({proc.returncode}): {err[-2000:]}")
    return {"wall_s": wall, "rss_mib": usage.ru_maxrss / 1024}


_STATS = ("rate", "floor", "excess_p_value", "excess_p_value_pooled")


def _stats(js: dict[str, Any]) -> dict[str, float]:
    return {f: js[f] for f in _STATS}


def bench_size(
    n: int, dim: int, n_states: int, n_ref_per_state: int, repeat: int, work: Path
) -> dict[str, Any]:
    # A child's ru_maxrss starts from its parent's peak RSS (Linux copies the high-water mark
    # across fork and exec), so the inputs are made in a spawned process: made here, the
    # 100,000 x 384 inputs alone lifted every later child's "peak" to 641 MiB.
    proc = multiprocessing.get_context("spawn").Process(
        target=make_inputs, args=(n, dim, n_states, n_ref_per_state, work)
    )
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"making the {n} x {dim} x {n_states} inputs failed ({proc.exitcode}).")
    paths = input_paths(work)
    cli = [
        sys.executable,
        "-m",
        "deltahall.cli.main",
        "measure",
        "--reference",
        str(paths["ref"]),
        "--reference-labels",
        str(paths["labels"]),
        "--generated",
        str(paths["gen"]),
        "--generated-prompts",
        str(paths["prompts"]),
        "--report",
        "false",
    ]
    script = [
        sys.executable,
        str(HERE / "minimal_measure.py"),
        *(str(paths[k]) for k in ("ref", "labels", "gen", "prompts")),
    ]
    runs: dict[str, list[dict[str, Any]]] = {"cli": [], "script": []}
    for r in range(repeat):  # back to back, so both see the same load
        out = work / f"cli{r}"
        load = os.getloadavg()[0]
        row: dict[str, Any] = timed([*cli, "--out-dir", str(out)])
        js = json.loads((out / "measure.json").read_text())
        row.update({f"{k}_s": v for k, v in js["seconds"].items()}, **_stats(js), load=load)
        runs["cli"].append(row)
        out = work / f"script{r}"
        row = timed([*script, str(out)])
        js = json.loads((out / "measure.json").read_text())
        row.update({f"{k}_s": v for k, v in js["seconds"].items()}, **_stats(js))
        runs["script"].append(row)
    out = work / "parquet"
    pq = timed([*cli, "--out-dir", str(out), "--samples-format", "parquet"])
    pq.update(json.loads((out / "measure.json").read_text())["seconds"])
    med = {
        k: {
            f: statistics.median(r[f] for r in v)
            for f in v[0]
            if f.endswith("_s") or f == "rss_mib"
        }
        for k, v in runs.items()
    }
    c, s = med["cli"], med["script"]
    return {
        "n": n,
        "dim": dim,
        "states": n_states,
        "repeat": repeat,
        "cli": c,
        "script": s,
        "ratio_wall": c["wall_s"] / s["wall_s"],
        "pair_ratios": [
            a["wall_s"] / b["wall_s"] for a, b in zip(runs["cli"], runs["script"], strict=True)
        ],
        "pair_loads": [a["load"] for a in runs["cli"]],
        "ratio_rss": c["rss_mib"] / s["rss_mib"],
        "import_s": c["wall_s"] - c["total_s"],
        "write_share": c["write_samples_s"] / c["wall_s"],
        "parquet_write_s": pq["write_samples"],
        "parquet_wall_s": pq["wall_s"],
        "rates_agree": all(
            a["rate"] == b["rate"] and a["floor"] == b["floor"]
            for a, b in zip(runs["cli"], runs["script"], strict=True)
        ),
        "excess_agree": all(
            math.isclose(a[f], b[f], rel_tol=1e-9, abs_tol=1e-12)
            for a, b in zip(runs["cli"], runs["script"], strict=True)
            for f in ("excess_p_value", "excess_p_value_pooled")
        ),
        **{f: runs["cli"][0][f] for f in _STATS},
        "runs": runs,
    }


def bench_embed(n_texts: int, repeat: int) -> dict[str, Any]:
    """``@minilm``'s ``Embedder.embed`` vs one ``SentenceTransformer.encode`` on the same texts."""
    import deltahall.models

    emb = deltahall.models.load_embedder("@minilm", batch_size=64)
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(2000)] + ["the", "a", "model", "state", "answer", "because"]
    texts = [" ".join(rng.choice(vocab, size=int(rng.integers(3, 120)))) for _ in range(n_texts)]
    enc = emb.model.encode  # type: ignore[attr-defined]  # the SentenceTransformer it wraps
    sorted_order = type(emb)._batch_order

    def unsorted() -> Any:
        emb._batch_order = lambda items: None  # type: ignore[method-assign]
        try:
            return emb.embed(texts)
        finally:
            del emb._batch_order

    fns = {
        "embed": lambda: emb.embed(texts),
        "encode": lambda: enc(texts, batch_size=64, convert_to_numpy=True, show_progress_bar=False),
        "embed_unsorted": unsorted,
    }
    times: dict[str, list[float]] = {k: [] for k in fns}
    outs: dict[str, Any] = {}
    for _ in range(repeat):
        for k, f in fns.items():
            t0 = time.perf_counter()
            outs[k] = f()
            times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "texts": n_texts,
        "median_s": med,
        "times_s": times,
        "ratio_embed_vs_encode": med["embed"] / med["encode"],
        "ratio_unsorted_vs_encode": med["embed_unsorted"] / med["encode"],
        "max_abs_diff_vs_encode": float(np.abs(outs["embed"] - outs["encode"]).max()),
        "sorted_by": sorted_order.__qualname__,
    }


def bench_minilm(n_texts: int, work: Path) -> dict[str, float]:
    import deltahall.models
    from deltahall.experiments.measure_run import run
    from deltahall.measure.pipeline import MeasureConfig

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
    topics = {
        "animals": "The {} rested quietly near the old barn.",
        "code": "The {} compiler rejected this function.",
        "weather": "A {} storm is expected over the coast tonight.",
    }
    words = [f"w{i}" for i in range(n_texts)]
    ref = [
        {"text": t.format(w), "state": s} for s, t in topics.items() for w in words[: n_texts // 4]
    ]
    gen = [
        {"text": list(topics.values())[i % 3].format(w), "prompt": f"p{i % 5}"}
        for i, w in enumerate(words)
    ]
    for name, rows in (("ref.jsonl", ref), ("gen.jsonl", gen)):
        (work / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    cfg = MeasureConfig(
        reference=work / "ref.jsonl",
        generated=work / "gen.jsonl",
        embedder="@minilm",
        out_dir=work / "out_minilm",
        cache_dir=work / "cache",
        report=False,
    )
    t0 = time.perf_counter()
    run(cfg)
    wall = time.perf_counter() - t0
    return {
        "texts_embedded": len(ref) + len(gen),
        "wall_s": wall,
        "embedder_s": spent[0],
        "outside_embedder_share": (wall - spent[0]) / wall,
    }


def _size(spec: str) -> tuple[int, int, int]:
    n, d, k = (int(v) for v in spec.lower().split("x"))
    return n, d, k


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--sizes",
        action="append",
        default=None,
        help="comma-separated NxDxSTATES (generated rows x dimension x states); repeatable "
        "(default: 10000x384x3,100000x384x3,1000000x384x3,100000x32x3,100000x384x10)",
    )
    ap.add_argument("--ref-per-state", type=int, default=3000)
    ap.add_argument(
        "--repeat", type=int, default=3, help="back-to-back runs per size (medians reported)"
    )
    ap.add_argument(
        "--embed-texts", type=int, default=5000, help="texts for embed vs encode (0 skips it)"
    )
    ap.add_argument(
        "--texts",
        type=int,
        default=0,
        help="generated texts through the command with @minilm (0 skips)",
    )
    ap.add_argument("--json", type=Path, help="also write the results here")
    a = ap.parse_args()
    specs = [
        s
        for group in (
            a.sizes or ["10000x384x3,100000x384x3,1000000x384x3,100000x32x3,100000x384x10"]
        )
        for s in group.split(",")
        if s
    ]
    out: dict[str, Any] = {
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cpus": len(os.sched_getaffinity(0)),
        "load_avg_start": os.getloadavg(),
        "sizes": [],
    }
    with tempfile.TemporaryDirectory(prefix="bench_measure_") as d:
        work = Path(d)
        for spec in specs:
            n, dim, k = _size(spec)
            r = bench_size(n, dim, k, a.ref_per_state, a.repeat, work / spec)
            r["load_avg"] = os.getloadavg()
            out["sizes"].append(r)
            c, s = r["cli"], r["script"]
            print(
                f"{n:>9,} x {dim:<3} {k:>2} states: CLI {c['wall_s']:7.1f} s {c['rss_mib']:6.0f} MiB | script "
                f"{s['wall_s']:7.1f} s {s['rss_mib']:6.0f} MiB | ratio {r['ratio_wall']:.2f}x wall, "
                f"{r['ratio_rss']:.2f}x RSS | CLI import {r['import_s']:.1f} s, measure {c['measure_s']:.1f} s, "
                f"samples.csv {c['write_samples_s']:.2f} s ({100 * r['write_share']:.1f}%), parquet "
                f"{r['parquet_write_s']:.2f} s | rates agree: {r['rates_agree']}, excess p {r['excess_p_value']:.3g} "
                f"agrees: {r['excess_agree']} | pairs "
                + ", ".join(
                    f"{q:.2f}x (load {ld:.1f})"
                    for q, ld in zip(r["pair_ratios"], r["pair_loads"], strict=True)
                ),
                flush=True,
            )
            shutil.rmtree(work / spec, ignore_errors=True)
        if a.embed_texts:
            e = bench_embed(a.embed_texts, a.repeat)
            out["embed"] = e
            m = e["median_s"]
            print(
                f"embed {e['texts']} texts (@minilm, 64 a batch): Embedder.embed {m['embed']:.1f} s, direct encode "
                f"{m['encode']:.1f} s: {e['ratio_embed_vs_encode']:.3f}x (unsorted batches "
                f"{e['ratio_unsorted_vs_encode']:.3f}x); max |diff| {e['max_abs_diff_vs_encode']:.1e}",
                flush=True,
            )
        if a.texts:
            out["minilm"] = bench_minilm(a.texts, work)
            mm = out["minilm"]
            print(
                f"@minilm: {mm['texts_embedded']} texts, wall {mm['wall_s']:.1f} s, embedder {mm['embedder_s']:.1f} s, "
                f"outside the embedder {100 * mm['outside_embedder_share']:.1f}%"
            )
    out["load_avg_end"] = os.getloadavg()
    print(
        f"machine: {out['cpus']} CPUs, load average {out['load_avg_start']} at start, {out['load_avg_end']} at end"
    )
    if a.json:
        a.json.write_text(json.dumps(out, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
