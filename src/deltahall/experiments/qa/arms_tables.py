"""Scores, tables and tests of the four-arm QA run (:mod:`.arms`), recomputable from its files.

Per TruthfulQA answer (answer text only, never the prompt):

- ``difflib_incorrect`` / ``difflib_correct``: max difflib ratio to TruthfulQA's incorrect /
  correct answers (the paper's resemblance; :func:`.scoring.resemblance`), ``difflib_gap`` their
  difference;
- ``cos_incorrect`` / ``cos_correct`` / ``cos_gap``: the same with the sentence embedder's
  cosine similarity (MiniLM by default).

:func:`summarise` turns ``items_truthfulqa.jsonl`` and ``delta_samples.jsonl`` into Table 1
(means with 95 % percentile-bootstrap intervals over questions, seeds averaged per
question first), paired sign-flip permutation tests (Two-answer vs Original / Single-answer /
Exposure, per epoch), and the text δ-measure per arm and epoch (rates with Wilson intervals,
τ calibrated on the control's held-out questions, floor, split near a1 / a2 / neither / both).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from deltahall.experiments.qa.scoring import resemblance
from deltahall.stats import bootstrap_mean_ci, paired_permutation_test
from deltahall.experiments.qa.textdelta import (
    Rate,
    calibrate,
    calibration_split,
    margins,
    split_counts,
)

METRICS = ("difflib_incorrect", "difflib_correct", "difflib_gap", "cos_incorrect", "cos_correct", "cos_gap")
COMPARISONS = (("two_answer", "original"), ("two_answer", "single_answer"), ("two_answer", "exposure"),
               ("single_answer", "original"))


def jsonl(rows: Iterable[Mapping[str, Any]]) -> str:
    """Rows as JSON Lines (strict JSON)."""
    return "".join(json.dumps(dict(r), ensure_ascii=False, allow_nan=False) + "\n" for r in rows)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSON Lines file of a run (none if the run has not written it yet)."""
    from deltahall.io.jsonl import iter_jsonl

    if not path.is_file():
        return []
    return [row for _, row in iter_jsonl(path)]


def _unit(x: Any) -> npt.NDArray[np.float64]:
    a = np.asarray(x, dtype=np.float64)
    n = np.linalg.norm(a, axis=1, keepdims=True)
    return a / np.where(n == 0, 1.0, n)


class ItemScorer:
    """Scores answers to a fixed list of TruthfulQA items; reference embeddings computed once."""

    def __init__(self, embedder: Any, items: Sequence[Any]) -> None:
        self.embedder = embedder
        self.items = list(items)
        self._cache: dict[str, npt.NDArray[np.float64]] = {}
        self.inc = [list(it.incorrect_answers) for it in self.items]
        self.cor = [list(it.correct_answers) or [it.best_answer] for it in self.items]
        self._embed([t for refs in self.inc + self.cor for t in refs])

    def _embed(self, texts: Sequence[str]) -> list[npt.NDArray[np.float64]]:
        new = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if new:
            emb = _unit(self.embedder.embed(new))
            self._cache.update(zip(new, emb, strict=True))
        return [self._cache[t] for t in texts]

    def score(self, answers: Sequence[str]) -> list[dict[str, float]]:
        """The six per-answer scores of ``answers`` (one per item, in order)."""
        if len(answers) != len(self.items):
            raise ValueError(f"`answers` must hold one answer per item ({len(self.items)}); got {len(answers)}.")
        a_emb = _unit(self.embedder.embed(list(answers)))
        out = []
        for j, a in enumerate(answers):
            inc_e = np.stack(self._embed(self.inc[j]))
            cor_e = np.stack(self._embed(self.cor[j]))
            d_inc, d_cor = resemblance(a, self.inc[j]), resemblance(a, self.cor[j])
            c_inc, c_cor = float((inc_e @ a_emb[j]).max()), float((cor_e @ a_emb[j]).max())
            out.append({"difflib_incorrect": d_inc, "difflib_correct": d_cor, "difflib_gap": d_inc - d_cor,
                        "cos_incorrect": c_inc, "cos_correct": c_cor, "cos_gap": c_inc - c_cor})
        return out

    def state_sims(self, answers: Sequence[str], pairs: Sequence[tuple[str, str, str]]) -> npt.NDArray[np.float64]:
        """``s_i = cos(e(y), e(a_i))`` for each answer and its question's ``(question, a1, a2)``; (n, 2)."""
        y = _unit(self.embedder.embed(list(answers)))
        a1 = np.stack(self._embed([p[1] for p in pairs]))
        a2 = np.stack(self._embed([p[2] for p in pairs]))
        return np.stack([np.sum(y * a1, axis=1), np.sum(y * a2, axis=1)], axis=1)


def calibration_mask(config: Any) -> npt.NDArray[np.bool_]:
    """Training questions whose control samples calibrate τ (True); the rest measure rates and the floor."""
    return calibration_split(config.n_train_questions, fraction=config.calibration_fraction,
                             rng=np.random.default_rng([config.data_seed, 7]))


def _per_question(rows: Sequence[Mapping[str, Any]], metric: str) -> dict[int, float]:
    acc: dict[int, list[float]] = defaultdict(list)
    for r in rows:
        acc[int(r["question_index"])].append(float(r[metric]))
    return {q: float(np.mean(v)) for q, v in acc.items()}


def _groups(rows: Sequence[Mapping[str, Any]]) -> dict[tuple[str, int], list[Mapping[str, Any]]]:
    g: dict[tuple[str, int], list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        g[(str(r["arm"]), int(r["epoch"]))].append(r)
    return g


def table1(rows: Sequence[Mapping[str, Any]], *, n_boot: int, rng: Any) -> list[dict[str, Any]]:
    """Mean of each metric per (arm, epoch) with its 95 % bootstrap interval over questions."""
    out = []
    order = {"original": 0, "two_answer": 1, "single_answer": 2, "exposure": 3}
    for (arm, epoch), grp in sorted(_groups(rows).items(), key=lambda kv: (kv[0][1], order.get(kv[0][0], 9))):
        rec: dict[str, Any] = {"arm": arm, "epoch": epoch, "seeds": len({r["seed"] for r in grp})}
        for m in METRICS:
            ci = bootstrap_mean_ci(list(_per_question(grp, m).values()), rng=rng, n_resamples=n_boot)
            rec.update({"n": ci.n, m: ci.mean, f"{m}_low": ci.low, f"{m}_high": ci.high})
        out.append(rec)
    return out


def paired_tests(rows: Sequence[Mapping[str, Any]], *, n_boot: int, n_perm: int, rng: Any) -> list[dict[str, Any]]:
    """Paired sign-flip permutation tests of the comparisons in :data:`COMPARISONS`, per epoch and metric.

    Only questions answered by both arms with the same seeds are paired; ``original`` is its epoch 0.
    """
    groups = _groups(rows)
    out = []
    epochs = sorted({e for (_, e) in groups if e > 0})
    for epoch in epochs:
        for a, b in COMPARISONS:
            ga, gb = groups.get((a, epoch)), groups.get((b, 0 if b == "original" else epoch))
            if not ga or not gb:
                continue
            seeds = {r["seed"] for r in ga} & {r["seed"] for r in gb}
            for m in METRICS:
                xa = _per_question([r for r in ga if r["seed"] in seeds], m)
                xb = _per_question([r for r in gb if r["seed"] in seeds], m)
                qs = sorted(set(xa) & set(xb))
                if len(qs) < 2:
                    continue
                t = paired_permutation_test([xa[q] for q in qs], [xb[q] for q in qs], rng=rng, n_resamples=n_perm, n_boot=n_boot)
                out.append({"comparison": f"{a} - {b}", "epoch": epoch, "metric": m, "n": t.n,
                            "mean_diff": t.mean_diff, "low": t.low, "high": t.high, "p_value": t.p_value,
                            "test": t.test})
    return out


def delta_table(rows: Sequence[Mapping[str, Any]], calib: npt.NDArray[np.bool_], *, percentile: float,
                n_boot: int, n_perm: int, rng: Any) -> list[dict[str, Any]]:
    """The text δ-measure per (epoch, seed, arm), both rules of :mod:`.textdelta`.

    Thresholds come from the single-answer control's samples on the calibration questions
    (cosine to and margin for the answer it was trained on); rates, the floor (the control's
    own rate) and the split are measured on the other questions. ``minus_floor*``: paired
    sign-flip permutation test over those questions of the per-question flagged share,
    two-answer minus control (blend-aware rule).
    """
    by: dict[tuple[int, int], list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        by[(int(r["epoch"]), int(r["seed"]))].append(r)
    out: list[dict[str, Any]] = []
    pooled: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
    for (epoch, seed), grp in sorted(by.items()):
        cal_rows = [r for r in grp if r["arm"] == "single_answer" and calib[int(r["question_index"])]]
        if not cal_rows:
            continue
        sims_c = np.array([[r["s1"], r["s2"]] for r in cal_rows])
        own = np.array([int(r["control_answer"]) for r in cal_rows])
        idx = np.arange(len(cal_rows))
        cal = calibrate(sims_c[idx, own], margins(sims_c)[idx, own], percentile)
        per_arm: dict[str, dict[int, list[bool]]] = {}
        for arm in dict.fromkeys(r["arm"] for r in grp):
            ev = [r for r in grp if r["arm"] == arm and not calib[int(r["question_index"])]]
            if not ev:
                continue
            sims = np.array([[r["s1"], r["s2"]] for r in ev])
            plain, blend = Rate.of(cal.flags(sims, "plain")), Rate.of(cal.flags(sims, "margin"))
            per_q: dict[int, list[bool]] = defaultdict(list)
            for r, fl in zip(ev, cal.flags(sims, "margin"), strict=True):
                per_q[int(r["question_index"])].append(bool(fl))
            per_arm[arm] = per_q
            acc = pooled[epoch].setdefault(arm, {"margin": [], "plain": [], "per_q": defaultdict(list),
                                                 "seeds": [], "n_calibration": 0, "sims": [], "cals": []})
            acc["margin"] += cal.flags(sims, "margin").tolist()
            acc["plain"] += cal.flags(sims, "plain").tolist()
            for q, fl in per_q.items():
                acc["per_q"][q].append(float(np.mean(fl)))
            acc["seeds"].append(seed)
            acc["n_calibration"] += cal.n
            acc["splits"] = {k: acc.get("splits", {}).get(k, 0) + v for k, v in split_counts(sims, cal).items()}
            out.append({"epoch": epoch, "seed": seed, "arm": arm, "n_calibration": cal.n, "tau": cal.tau,
                        "tau_margin": cal.tau_margin, "mu": cal.mu, "n": blend.n,
                        "rate": blend.rate, "wilson_low": blend.low, "wilson_high": blend.high,
                        "rate_plain": plain.rate, "plain_low": plain.low, "plain_high": plain.high,
                        "mean_max_sim": float(sims.max(axis=1).mean()), **split_counts(sims, cal)})
        if "two_answer" in per_arm and "single_answer" in per_arm:
            fa, fb = per_arm["two_answer"], per_arm["single_answer"]
            qs = sorted(set(fa) & set(fb))
            if len(qs) >= 2:
                t = paired_permutation_test([np.mean(fa[q]) for q in qs], [np.mean(fb[q]) for q in qs], rng=rng,
                                n_resamples=n_perm, n_boot=n_boot)
                for rec in out:
                    if rec["epoch"] == epoch and rec["seed"] == seed and rec["arm"] == "two_answer":
                        rec.update({"minus_floor": t.mean_diff, "minus_floor_low": t.low,
                                    "minus_floor_high": t.high, "minus_floor_p": t.p_value})
    out += _pooled_rows(pooled, n_boot=n_boot, n_perm=n_perm, rng=rng)
    return out


def _pooled_rows(pooled: Mapping[int, Mapping[str, Mapping[str, Any]]], *, n_boot: int, n_perm: int,
                 rng: Any) -> list[dict[str, Any]]:
    """Rows with ``seed = "all"`` for epochs measured under several seeds (each seed with its own thresholds).

    Rates pool the seeds' samples; the test pairs per-question flagged shares averaged over seeds.
    """
    out: list[dict[str, Any]] = []
    for epoch, arms in sorted(pooled.items()):
        if any(len(a["seeds"]) < 2 for a in arms.values()):
            continue
        for arm, a in arms.items():
            blend, plain = Rate.of(a["margin"]), Rate.of(a["plain"])
            out.append({"epoch": epoch, "seed": "all", "arm": arm, "n_calibration": a["n_calibration"],
                        "tau": None, "tau_margin": None, "mu": None, "n": blend.n, "rate": blend.rate,
                        "wilson_low": blend.low, "wilson_high": blend.high, "rate_plain": plain.rate,
                        "plain_low": plain.low, "plain_high": plain.high, "mean_max_sim": None, **a["splits"]})
        if "two_answer" in arms and "single_answer" in arms:
            fa, fb = arms["two_answer"]["per_q"], arms["single_answer"]["per_q"]
            qs = sorted(set(fa) & set(fb))
            if len(qs) >= 2:
                t = paired_permutation_test([np.mean(fa[q]) for q in qs], [np.mean(fb[q]) for q in qs], rng=rng,
                                n_resamples=n_perm, n_boot=n_boot)
                for rec in out:
                    if rec["epoch"] == epoch and rec["arm"] == "two_answer":
                        rec.update({"minus_floor": t.mean_diff, "minus_floor_low": t.low,
                                    "minus_floor_high": t.high, "minus_floor_p": t.p_value})
    return out


MERGE_KEYS = ("train_questions", "truthfulqa_indices", "control_answer", "calibration_questions")


def merge_runs(run_dirs: Sequence[str | Path], out_dir: str | Path) -> dict[str, Any]:
    """Pool finished (or partial) runs of the same design and other seeds into ``out_dir``; return its summary.

    The runs must share the config (all but ``seeds``, ``out_dir``, ``progress``, ``torch_threads``),
    the chosen questions, the control's answers and the calibration split, and use distinct seeds.

    Raises
    ------
    ValueError
        If the runs differ in any of these, share a seed, or ``out_dir`` already holds a run.
    """
    from deltahall.io.rundir import RunDir, read_csv

    out = Path(out_dir)
    if (out / "manifest.json").exists():
        raise ValueError(f"`out_dir` {out} already holds a run; choose another.")
    if len(run_dirs) < 2:
        raise ValueError(f"`run_dirs` must name at least two runs; got {len(run_dirs)}.")
    manifests = []
    for d in run_dirs:
        mp = Path(d) / "manifest.json"
        if not mp.is_file():
            raise FileNotFoundError(f"`run_dirs`: {d} holds no manifest.json (not a `qa arms` run).")
        manifests.append(json.loads(mp.read_text(encoding="utf-8")))
    free = {"seeds", "out_dir", "progress", "torch_threads"}
    first = manifests[0]
    seeds: list[int] = []
    for d, m in zip(run_dirs, manifests, strict=True):
        diff = sorted(k for k in set(first["config"]) | set(m["config"])
                      if k not in free and first["config"].get(k) != m["config"].get(k))
        diff += [k for k in MERGE_KEYS if first.get(k) != m.get(k)]
        if diff:
            raise ValueError(f"`run_dirs`: {d} differs from {run_dirs[0]} in {diff}; only runs of one design pool.")
        seeds += list(m["config"]["seeds"])
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"`run_dirs` must use distinct seeds; got {seeds}.")
    merged = dict(first)
    merged["config"] = {**first["config"], "seeds": seeds, "out_dir": str(out)}
    merged["merged_from"] = [str(d) for d in run_dirs]
    rd = RunDir(out)
    for name in ("items_truthfulqa.jsonl", "delta_samples.jsonl"):
        rd.write_text(name, jsonl(r for d in run_dirs for r in read_jsonl(Path(d) / name)))
    loss = [r for d in run_dirs if (Path(d) / "loss.csv").is_file() for r in read_csv(Path(d) / "loss.csv")]
    rd.write_csv("loss.csv", loss, ["arm", "seed", "epoch", "loss", "steps", "examples"])
    rd.write_json("manifest.json", merged)
    return summarise(out)


def _fmt(x: Any, digits: int = 4) -> str:
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def markdown(summary: Mapping[str, Any]) -> str:
    """The summary's tables as Markdown (what docs/qa.md quotes)."""
    lines = ["Table 1 (mean over TruthfulQA questions [95% bootstrap CI]):", "",
             "| arm | epoch | n | " + " | ".join(METRICS) + " |", "|---|---|---|" + "---|" * len(METRICS)]
    for r in summary["table1"]:
        cells = [f"{r[m]:.4f} [{r[m + '_low']:.4f}, {r[m + '_high']:.4f}]" for m in METRICS]
        lines.append(f"| {r['arm']} | {r['epoch']} | {r['n']} | " + " | ".join(cells) + " |")
    lines += ["", "Paired sign-flip permutation tests (mean difference [95% bootstrap CI], two-sided p):", "",
              "| comparison | epoch | metric | n | diff [CI] | p |", "|---|---|---|---|---|---|"]
    for r in summary["paired"]:
        lines.append(f"| {r['comparison']} | {r['epoch']} | {r['metric']} | {r['n']} | "
                     f"{r['mean_diff']:+.4f} [{r['low']:+.4f}, {r['high']:+.4f}] | {r['p_value']:.4f} |")
    lines += ["", "Text δ-measure on held-out training questions (rate [95% Wilson CI]; blend-aware rule, "
              "and the plain max-cosine rule):", "",
              "| epoch | seed | arm | n | blend-aware rate | plain rate | near a1 | near a2 | near both | neither "
              "| two-answer minus floor [CI], p |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in summary["delta"]:
        extra = (f"{r['minus_floor']:+.3f} [{r['minus_floor_low']:+.3f}, {r['minus_floor_high']:+.3f}], "
                 f"p={r['minus_floor_p']:.4f}") if "minus_floor" in r else ""
        lines.append(f"| {r['epoch']} | {r['seed']} | {r['arm']} | {r['n']} | "
                     f"{r['rate']:.3f} [{r['wilson_low']:.3f}, {r['wilson_high']:.3f}] | "
                     f"{r['rate_plain']:.3f} [{r['plain_low']:.3f}, {r['plain_high']:.3f}] | {r['near_a1']} | "
                     f"{r['near_a2']} | {r['near_both']} | {r['neither']} | {extra} |")
    if summary["delta"]:
        r0 = summary["delta"][0]
        lines += ["", f"(thresholds of epoch {r0['epoch']}: tau={r0['tau']:.4f}; blend-aware tau'={r0['tau_margin']:.4f}, "
                  f"mu={r0['mu']:.4f}; from {r0['n_calibration']} control samples; all epochs in delta.csv)"]
    if summary.get("loss"):
        lines += ["", "Training loss (answer tokens) per epoch:", "", "| arm | seed | epoch | loss | steps |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r['arm']} | {r['seed']} | {r['epoch']} | {float(r['loss']):.4f} | {r['steps']} |"
                  for r in summary["loss"]]
    return "\n".join(lines) + "\n"


def summarise(run_dir: str | Path) -> dict[str, Any]:
    """Recompute every table of a (possibly unfinished) run from its files; write them; return the summary.

    Writes ``table1.csv``, ``paired.csv``, ``delta.csv``, ``summary.json`` and ``summary.md``.

    Raises
    ------
    FileNotFoundError
        If ``run_dir`` has no ``manifest.json``.
    """
    from deltahall.io.rundir import RunDir, read_csv

    root = Path(run_dir)
    if not (root / "manifest.json").is_file():
        raise FileNotFoundError(f"`run_dir` {root} holds no manifest.json (not a `qa arms` run).")
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    cfg = manifest["config"]
    calib = np.array(manifest["calibration_questions"], dtype=bool)
    rng = np.random.default_rng([int(cfg["data_seed"]), 11])
    tq = read_jsonl(root / "items_truthfulqa.jsonl")
    ds = read_jsonl(root / "delta_samples.jsonl")
    loss = read_csv(root / "loss.csv") if (root / "loss.csv").is_file() else []
    timings = read_csv(root / "timings.csv") if (root / "timings.csv").is_file() else []
    summary: dict[str, Any] = {
        "plumbing": bool(manifest.get("plumbing", False)),
        "table1": table1(tq, n_boot=int(cfg["n_boot"]), rng=rng) if tq else [],
        "paired": paired_tests(tq, n_boot=int(cfg["n_boot"]), n_perm=int(cfg["n_perm"]), rng=rng) if tq else [],
        "delta": delta_table(ds, calib, percentile=float(cfg["delta_percentile"]), n_boot=int(cfg["n_boot"]),
                             n_perm=int(cfg["n_perm"]), rng=rng) if ds else [],
        "loss": loss,
        "elapsed_s": float(timings[-1]["elapsed_s"]) if timings else None,
    }
    rd = RunDir(root)
    rd.write_csv("table1.csv", summary["table1"])
    rd.write_csv("paired.csv", summary["paired"])
    rd.write_csv("delta.csv", summary["delta"])
    rd.write_json("summary.json", summary)
    rd.write_text("summary.md", markdown(summary))
    return summary
