"""Scores, tables and tests of the four-arm QA run (:mod:`.arms`), recomputable from its files.

Per TruthfulQA answer (answer text only, never the prompt):

- ``difflib_incorrect`` / ``difflib_correct``: max difflib ratio to TruthfulQA's incorrect /
  correct answers (the paper's resemblance; :func:`.scoring.resemblance`), ``difflib_gap`` their
  difference;
- ``cos_incorrect`` / ``cos_correct`` / ``cos_gap``: the same with the sentence embedder's
  cosine similarity (MiniLM by default).

:func:`summarise` turns ``items_truthfulqa.jsonl`` and ``delta_samples.jsonl`` into the arms'
means (``arm_means.csv``: Table 1's metrics per arm and epoch, means with 95 % percentile-bootstrap intervals over questions, seeds averaged per
question first), paired sign-flip permutation tests (Two-answer vs Original / Single-answer /
Exposure, per epoch), and the text δ-measure per arm and epoch through the one instrument
(:mod:`.delta_measure`: rates with Wilson intervals under the blend-aware and the plain rule,
calibrated on the control's samples on the calibration questions, the floor = the control's
samples on the other questions, the stratified excess test, split near a1 / a2 / neither / both).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from deltahall._validation import BadInput
from deltahall.experiments._run import RESUME_FREE, Experiment, Outcome, RunOptions, execute
from deltahall.experiments.qa.delta_measure import SPLITS, Scored, calibration_split, measure_text
from deltahall.experiments.qa.scoring import resemblance
from deltahall.stats import (
    bootstrap_mean_ci,
    paired_permutation_test,
    proportion,
    stratified_excess_test,
)

METRICS = (
    "difflib_incorrect",
    "difflib_correct",
    "difflib_gap",
    "cos_incorrect",
    "cos_correct",
    "cos_gap",
)
COMPARISONS = (
    ("two_answer", "original"),
    ("two_answer", "single_answer"),
    ("two_answer", "exposure"),
    ("single_answer", "original"),
)


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
            raise ValueError(
                f"`answers` must hold one answer per item ({len(self.items)}); got {len(answers)}."
            )
        a_emb = _unit(self.embedder.embed(list(answers)))
        out = []
        for j, a in enumerate(answers):
            inc_e = np.stack(self._embed(self.inc[j]))
            cor_e = np.stack(self._embed(self.cor[j]))
            d_inc, d_cor = resemblance(a, self.inc[j]), resemblance(a, self.cor[j])
            c_inc, c_cor = float((inc_e @ a_emb[j]).max()), float((cor_e @ a_emb[j]).max())
            out.append(
                {
                    "difflib_incorrect": d_inc,
                    "difflib_correct": d_cor,
                    "difflib_gap": d_inc - d_cor,
                    "cos_incorrect": c_inc,
                    "cos_correct": c_cor,
                    "cos_gap": c_inc - c_cor,
                }
            )
        return out

    def state_sims(
        self, answers: Sequence[str], pairs: Sequence[tuple[str, str, str]]
    ) -> npt.NDArray[np.float64]:
        """``s_i = cos(e(y), e(a_i))`` for each answer and its question's ``(question, a1, a2)``; (n, 2)."""
        y = _unit(self.embedder.embed(list(answers)))
        a1 = np.stack(self._embed([p[1] for p in pairs]))
        a2 = np.stack(self._embed([p[2] for p in pairs]))
        return np.stack([np.sum(y * a1, axis=1), np.sum(y * a2, axis=1)], axis=1)


def calibration_mask(config: Any) -> npt.NDArray[np.bool_]:
    """Training questions whose control samples calibrate τ (True); the rest measure rates and the floor."""
    return calibration_split(
        config.n_train_questions,
        fraction=config.calibration_fraction,
        rng=np.random.default_rng([config.data_seed, 7]),
    )


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


def arm_means(rows: Sequence[Mapping[str, Any]], *, n_boot: int, rng: Any) -> list[dict[str, Any]]:
    """Mean of each metric per (arm, epoch) with its 95 % bootstrap interval over questions."""
    out = []
    order = {"original": 0, "two_answer": 1, "single_answer": 2, "exposure": 3}
    for (arm, epoch), grp in sorted(
        _groups(rows).items(), key=lambda kv: (kv[0][1], order.get(kv[0][0], 9))
    ):
        rec: dict[str, Any] = {"arm": arm, "epoch": epoch, "seeds": len({r["seed"] for r in grp})}
        for m in METRICS:
            ci = bootstrap_mean_ci(
                list(_per_question(grp, m).values()), rng=rng, n_resamples=n_boot
            )
            rec.update({"n": ci.n, m: ci.mean, f"{m}_low": ci.low, f"{m}_high": ci.high})
        out.append(rec)
    return out


def paired_tests(
    rows: Sequence[Mapping[str, Any]], *, n_boot: int, n_perm: int, rng: Any
) -> list[dict[str, Any]]:
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
                t = paired_permutation_test(
                    [xa[q] for q in qs],
                    [xb[q] for q in qs],
                    rng=rng,
                    n_resamples=n_perm,
                    n_boot=n_boot,
                )
                out.append(
                    {
                        "comparison": f"{a} - {b}",
                        "epoch": epoch,
                        "metric": m,
                        "n": t.n,
                        "mean_diff": t.mean_diff,
                        "low": t.low,
                        "high": t.high,
                        "p_value": t.p_value,
                        "test": t.test,
                    }
                )
    return out


def _scored(rows: Sequence[Mapping[str, Any]], *, in_state: bool = False) -> Scored:
    return Scored.of(
        [[r["s1"], r["s2"]] for r in rows],
        [int(r["question_index"]) for r in rows],
        [int(r["control_answer"]) for r in rows] if in_state else None,
    )


def _delta_row(td: Any) -> dict[str, Any]:
    """The per-(epoch, seed, arm) columns of one :class:`.delta_measure.TextDelta`."""
    b, p = td.margin, td.plain
    return {
        "n_calibration": td.n_calibration,
        "tau": td.tau,
        "tau_margin": td.tau_margin,
        "mu": td.mu,
        "n": b.rate.n,
        "rate": b.rate.rate,
        "wilson_low": b.rate.ci[0],
        "wilson_high": b.rate.ci[1],
        "rate_plain": p.rate.rate,
        "plain_low": p.rate.ci[0],
        "plain_high": p.rate.ci[1],
        "mean_max_sim": td.mean_max_sim,
        **td.splits,
        "n_flagged": b.rate.k,
        "n_flagged_plain": p.rate.k,
        "floor": b.floor.rate,
        "floor_low": b.floor.ci[0],
        "floor_high": b.floor.ci[1],
        "n_floor": b.floor.n,
        "n_floor_flagged": b.floor.k,
        "floor_plain": p.floor.rate,
        "floor_plain_low": p.floor.ci[0],
        "floor_plain_high": p.floor.ci[1],
        "n_floor_flagged_plain": p.floor.k,
        "excess_p_value": b.excess_p_value,
        "excess_p_value_plain": p.excess_p_value,
        "calibration": "margin",
        "alpha": td.alpha,
    }


def delta_table(
    rows: Sequence[Mapping[str, Any]],
    calib: npt.NDArray[np.bool_],
    *,
    percentile: float,
    n_boot: int,
    n_perm: int,
    rng: Any,
) -> list[dict[str, Any]]:
    """The text δ-measure per (epoch, seed, arm) through the instrument (:mod:`.delta_measure`).

    The level is ``alpha = percentile / 100``. The calibration samples are the single-answer
    control's samples on the calibration questions (their cosine to and margin for the answer it
    was trained on); rates are measured on the other questions, where the control's own samples
    give the floor (so the control's rate *is* the floor). ``rate`` / ``wilson_*``: the blend-aware
    rule; ``rate_plain`` / ``plain_*``: the plain max-cosine (conformal) rule; ``excess_p_value``:
    the instrument's one-sided test of rate > the floor of the generator's own states
    (:func:`deltahall.stats.mixture_excess_test`). ``minus_floor*``:
    paired sign-flip permutation test over those questions of the per-question flagged share,
    two-answer minus control (blend-aware rule).
    """
    alpha = float(percentile) / 100.0
    by: dict[tuple[int, int], list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        by[(int(r["epoch"]), int(r["seed"]))].append(r)
    out: list[dict[str, Any]] = []
    pooled: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
    for (epoch, seed), grp in sorted(by.items()):
        control = [r for r in grp if r["arm"] == "single_answer"]
        cal_rows = [r for r in control if calib[int(r["question_index"])]]
        floor_rows = [r for r in control if not calib[int(r["question_index"])]]
        if not cal_rows or not floor_rows:
            continue
        cal, floor = _scored(cal_rows, in_state=True), _scored(floor_rows, in_state=True)
        per_arm: dict[str, dict[str, list[bool]]] = {}
        for arm in dict.fromkeys(r["arm"] for r in grp):
            ev = [r for r in grp if r["arm"] == arm and not calib[int(r["question_index"])]]
            if not ev:
                continue
            td = measure_text(_scored(ev), calibration=cal, floor=floor, alpha=alpha)
            per_q = td.flags_by_question()
            per_arm[arm] = per_q
            acc = pooled[epoch].setdefault(
                arm,
                {
                    "per_q": defaultdict(list),
                    "seeds": [],
                    "n_calibration": 0,
                    "counts": [],
                    "splits": dict.fromkeys(SPLITS, 0),
                },
            )
            for q, fl in per_q.items():
                acc["per_q"][q].append(float(np.mean(fl)))
            acc["seeds"].append(seed)
            acc["n_calibration"] += td.n_calibration
            acc["counts"].append((td.margin.rate, td.margin.floor, td.plain.rate, td.plain.floor))
            acc["splits"] = {k: acc["splits"][k] + v for k, v in td.splits.items()}
            out.append({"epoch": epoch, "seed": seed, "arm": arm, **_delta_row(td)})
        if "two_answer" in per_arm and "single_answer" in per_arm:
            _minus_floor(
                out,
                per_arm["two_answer"],
                per_arm["single_answer"],
                epoch=epoch,
                seed=seed,
                n_boot=n_boot,
                n_perm=n_perm,
                rng=rng,
            )
    out += _pooled_rows(pooled, alpha=alpha, n_boot=n_boot, n_perm=n_perm, rng=rng)
    return out


def _minus_floor(
    out: list[dict[str, Any]],
    fa: Mapping[Any, Sequence[Any]],
    fb: Mapping[Any, Sequence[Any]],
    *,
    epoch: int,
    seed: Any,
    n_boot: int,
    n_perm: int,
    rng: Any,
) -> None:
    """Two-answer minus control per-question flagged share: paired sign-flip test, written into the
    two-answer row of (epoch, seed)."""
    qs = sorted(set(fa) & set(fb))
    if len(qs) < 2:
        return
    t = paired_permutation_test(
        [np.mean(fa[q]) for q in qs],
        [np.mean(fb[q]) for q in qs],
        rng=rng,
        n_resamples=n_perm,
        n_boot=n_boot,
    )
    for rec in out:
        if rec["epoch"] == epoch and rec["seed"] == seed and rec["arm"] == "two_answer":
            rec.update(
                {
                    "minus_floor": t.mean_diff,
                    "minus_floor_low": t.low,
                    "minus_floor_high": t.high,
                    "minus_floor_p": t.p_value,
                }
            )


def _pooled_rows(
    pooled: Mapping[int, Mapping[str, Mapping[str, Any]]],
    *,
    alpha: float,
    n_boot: int,
    n_perm: int,
    rng: Any,
) -> list[dict[str, Any]]:
    """Rows with ``seed = "all"`` for epochs measured under several seeds (each seed with its own calibration).

    Rates and floors pool the seeds' counts (Wilson intervals); the excess test is stratified by
    seed (each seed's rate against its own floor); the paired test pairs per-question flagged
    shares averaged over seeds.
    """
    out: list[dict[str, Any]] = []
    for epoch, arms in sorted(pooled.items()):
        if any(len(a["seeds"]) < 2 for a in arms.values()):
            continue
        for arm, a in arms.items():
            rb, fb, rp, fp = ([c[i] for c in a["counts"]] for i in range(4))
            blend, plain = _pool(rb), _pool(rp)
            floor, floor_p = _pool(fb), _pool(fp)
            out.append(
                {
                    "epoch": epoch,
                    "seed": "all",
                    "arm": arm,
                    "n_calibration": a["n_calibration"],
                    "tau": None,
                    "tau_margin": None,
                    "mu": None,
                    "n": blend.n,
                    "rate": blend.rate,
                    "wilson_low": blend.ci[0],
                    "wilson_high": blend.ci[1],
                    "rate_plain": plain.rate,
                    "plain_low": plain.ci[0],
                    "plain_high": plain.ci[1],
                    "mean_max_sim": None,
                    **a["splits"],
                    "n_flagged": blend.k,
                    "n_flagged_plain": plain.k,
                    "floor": floor.rate,
                    "floor_low": floor.ci[0],
                    "floor_high": floor.ci[1],
                    "n_floor": floor.n,
                    "n_floor_flagged": floor.k,
                    "floor_plain": floor_p.rate,
                    "floor_plain_low": floor_p.ci[0],
                    "floor_plain_high": floor_p.ci[1],
                    "n_floor_flagged_plain": floor_p.k,
                    "excess_p_value": _by_seed(rb, fb),
                    "excess_p_value_plain": _by_seed(rp, fp),
                    "calibration": "margin",
                    "alpha": alpha,
                }
            )
        if "two_answer" in arms and "single_answer" in arms:
            _minus_floor(
                out,
                arms["two_answer"]["per_q"],
                arms["single_answer"]["per_q"],
                epoch=epoch,
                seed="all",
                n_boot=n_boot,
                n_perm=n_perm,
                rng=rng,
            )
    return out


def _pool(props: Sequence[Any]) -> Any:
    return proportion(sum(p.k for p in props), sum(p.n for p in props))


def _by_seed(rates: Sequence[Any], floors: Sequence[Any]) -> float:
    return stratified_excess_test(
        [r.k for r in rates], [r.n for r in rates], [f.k for f in floors], [f.n for f in floors]
    )


MERGE_KEYS = ("train_questions", "truthfulqa_indices", "control_answer", "calibration_questions")
#: The experiment names of the runs :func:`merge_runs` pools and :func:`summarise` tabulates.
ARMS_RUNS = ("qa-arms", "qa-arms-merge")
#: Manifest entries the runner writes for every run; the rest of an arms manifest is its design.
_LIFECYCLE_KEYS = frozenset(
    {
        "experiment",
        "config",
        "config_type",
        "fingerprint",
        "seed",
        "world_size",
        "resumed_from",
        "sessions",
        "versions",
        "platform",
    }
)


def arms_config(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The ``qa arms`` config of a run's manifest: its ``config``, or for a folder of pooled
    seed runs (:func:`merge_runs`) the pooled ``arms_config`` (the seeds of every run)."""
    cfg = manifest.get("arms_config", manifest["config"])
    return dict(cfg)


@dataclass(frozen=True)
class MergeConfig:
    """``qa arms-merge``: pool runs of one ``qa arms`` design and other seeds into a new folder.

    Parameters
    ----------
    run_dirs : tuple of path
        Two or more ``qa arms`` folders (finished or partial; a pooled folder counts as one),
        stored as absolute paths.
    run : RunOptions
        ``out_dir``: the new folder (not inside, around or equal to a run folder).
    """

    run_dirs: tuple[Path, ...] = ()
    run: RunOptions = field(default_factory=RunOptions, metadata=RESUME_FREE)

    def __post_init__(self) -> None:
        if isinstance(self.run_dirs, (str, os.PathLike)) or len(self.run_dirs) < 2:
            n = 1 if isinstance(self.run_dirs, (str, os.PathLike)) else len(self.run_dirs)
            raise BadInput(f"`run_dirs` must name at least two runs; got {n}.")
        object.__setattr__(self, "run_dirs", tuple(Path(os.path.abspath(d)) for d in self.run_dirs))
        if not isinstance(self.run, RunOptions):
            raise TypeError(f"`run` must be a RunOptions; got {type(self.run).__name__}.")


def _merge_prepare(config: MergeConfig, pending: Any) -> dict[str, Any]:
    """Check that the runs pool (read-only); returns the pooled folder's design entries."""
    run_dirs = config.run_dirs
    manifests = []
    for d in run_dirs:
        mp = d / "manifest.json"
        if not mp.is_file():
            raise FileNotFoundError(
                f"`run_dirs`: {d} holds no manifest.json (not a `qa arms` run)."
            )
        m = json.loads(mp.read_text(encoding="utf-8"))
        if m.get("experiment") not in ARMS_RUNS:
            raise BadInput(
                f"`run_dirs`: {d} holds a {m.get('experiment')!r} run, not a `qa arms` run."
            )
        manifests.append(m)
    free = {"seeds", "out_dir", "progress", "torch_threads", "run"}
    first, first_cfg = manifests[0], arms_config(manifests[0])
    seeds: list[int] = []
    for d, m in zip(run_dirs, manifests, strict=True):
        cfg = arms_config(m)
        diff = sorted(
            k for k in set(first_cfg) | set(cfg) if k not in free and first_cfg.get(k) != cfg.get(k)
        )
        diff += [k for k in MERGE_KEYS if first.get(k) != m.get(k)]
        if diff:
            raise BadInput(
                f"`run_dirs`: {d} differs from {run_dirs[0]} in {diff}; only runs of one design pool."
            )
        seeds += list(cfg["seeds"])
    if len(set(seeds)) != len(seeds):
        raise BadInput(f"`run_dirs` must use distinct seeds; got {seeds}.")
    design = {k: v for k, v in first.items() if k not in _LIFECYCLE_KEYS | {"arms_config"}}
    design["arms_config"] = {**first_cfg, "seeds": seeds, "out_dir": str(config.run.out_dir)}
    design["merged_from"] = [os.fspath(d) for d in run_dirs]
    return design


def _merge_body(config: MergeConfig, opened: Any) -> Outcome:
    from deltahall.io.rundir import read_csv

    rd = opened.rd
    for name in ("items_truthfulqa.jsonl", "delta_samples.jsonl"):
        rd.write_text(name, jsonl(r for d in config.run_dirs for r in read_jsonl(d / name)))
    loss = [
        r for d in config.run_dirs if (d / "loss.csv").is_file() for r in read_csv(d / "loss.csv")
    ]
    rd.write_csv("loss.csv", loss, ["arm", "seed", "epoch", "loss", "steps", "examples"])
    summary = summarise(opened.root)
    return Outcome(result=summary, value=summary)


#: Pooling seed runs of ``qa arms`` as a run of the shared runner (its own manifest, refusals).
MERGE = Experiment(
    name="qa-arms-merge",
    body=_merge_body,
    inputs=lambda config: [("run_dir", d) for d in config.run_dirs],
    outputs=("items_truthfulqa.jsonl", "delta_samples.jsonl", "summary.json"),
    prepare=_merge_prepare,
    manifest_extra=lambda config, pending, design: design,
    what="run",
)


def merge_runs(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    resume_from_checkpoint: str | None = None,
) -> dict[str, Any]:
    """Pool finished (or partial) runs of the same design and other seeds into ``out_dir``; return its summary.

    The runs must share the config (all but ``seeds``, ``out_dir``, ``progress``, ``torch_threads``),
    the chosen questions, the control's answers and the calibration split, and use distinct seeds.
    The pooled folder is a run of the shared runner (experiment ``qa-arms-merge``): its
    ``manifest.json`` holds this config, the versions, the design of the runs, the pooled
    ``arms_config`` and ``merged_from``; ``result.json`` is the summary. With
    ``resume_from_checkpoint="latest"`` a folder that holds the pooled runs is pooled again
    (the runs may have grown).

    Raises
    ------
    ValueError
        If the runs differ in any of these, share a seed, or ``out_dir`` already holds a run, is
        one of ``run_dirs`` or lies inside one.
    FileNotFoundError
        A run folder holds no ``manifest.json``.
    """
    config = MergeConfig(
        run_dirs=tuple(Path(d) for d in run_dirs),
        run=RunOptions(
            out_dir=Path(out_dir), resume_from_checkpoint=resume_from_checkpoint, progress=False
        ),
    )
    summary: dict[str, Any] = execute(MERGE, config)
    return summary


def _fmt(x: Any, digits: int = 4) -> str:
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def markdown(summary: Mapping[str, Any]) -> str:
    """The summary's tables as Markdown (what docs/qa.md quotes)."""
    lines = [
        "Means per arm and epoch (Table 1's metrics; mean over TruthfulQA questions [95% bootstrap CI]):",
        "",
        "| arm | epoch | n | " + " | ".join(METRICS) + " |",
        "|---|---|---|" + "---|" * len(METRICS),
    ]
    for r in summary["arm_means"]:
        cells = [f"{r[m]:.4f} [{r[m + '_low']:.4f}, {r[m + '_high']:.4f}]" for m in METRICS]
        lines.append(f"| {r['arm']} | {r['epoch']} | {r['n']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Paired sign-flip permutation tests (mean difference [95% bootstrap CI], two-sided p):",
        "",
        "| comparison | epoch | metric | n | diff [CI] | p |",
        "|---|---|---|---|---|---|",
    ]
    for r in summary["paired"]:
        lines.append(
            f"| {r['comparison']} | {r['epoch']} | {r['metric']} | {r['n']} | "
            f"{r['mean_diff']:+.4f} [{r['low']:+.4f}, {r['high']:+.4f}] | {r['p_value']:.4f} |"
        )
    lines += [
        "",
        "Text δ-measure on held-out training questions, through the instrument (rate [95% Wilson CI]; "
        "blend-aware rule, and the plain max-cosine conformal rule; floor = the control's samples on the same "
        "questions, blend-aware; excess p = one-sided test of rate > the floor of the arm's own states, mixture-matched):",
        "",
        "| epoch | seed | arm | n | blend-aware rate | plain rate | floor | excess p | near a1 | near a2 | near both "
        "| neither | two-answer minus floor [CI], p |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summary["delta"]:
        extra = (
            (
                f"{r['minus_floor']:+.3f} [{r['minus_floor_low']:+.3f}, {r['minus_floor_high']:+.3f}], "
                f"p={r['minus_floor_p']:.4f}"
            )
            if "minus_floor" in r
            else ""
        )
        floor = (
            f"{r['floor']:.3f} [{r['floor_low']:.3f}, {r['floor_high']:.3f}] | {r['excess_p_value']:.3g}"
            if "floor" in r
            else " | "
        )
        lines.append(
            f"| {r['epoch']} | {r['seed']} | {r['arm']} | {r['n']} | "
            f"{r['rate']:.3f} [{r['wilson_low']:.3f}, {r['wilson_high']:.3f}] | "
            f"{r['rate_plain']:.3f} [{r['plain_low']:.3f}, {r['plain_high']:.3f}] | {floor} | {r['near_a1']} | "
            f"{r['near_a2']} | {r['near_both']} | {r['neither']} | {extra} |"
        )
    if summary["delta"]:
        r0 = summary["delta"][0]
        lines += [
            "",
            f"(alpha = {r0['alpha']:g}; thresholds of epoch {r0['epoch']}: tau={r0['tau']:.4f}; blend-aware "
            f"tau'={r0['tau_margin']:.4f}, mu={r0['mu']:.4f}; from {r0['n_calibration']} control samples; all "
            "epochs in delta.csv)",
        ]
    if summary.get("loss"):
        lines += [
            "",
            "Training loss (answer tokens) per epoch:",
            "",
            "| arm | seed | epoch | loss | steps |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['arm']} | {r['seed']} | {r['epoch']} | {float(r['loss']):.4f} | {r['steps']} |"
            for r in summary["loss"]
        ]
    return "\n".join(lines) + "\n"


def summarise(run_dir: str | Path) -> dict[str, Any]:
    """Recompute every table of a (possibly unfinished) run from its files; write them; return the summary.

    Writes ``arm_means.csv``, ``paired.csv``, ``delta.csv``, ``summary.json`` and ``summary.md``.

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
    cfg = arms_config(manifest)
    calib = np.array(manifest["calibration_questions"], dtype=bool)
    rng = np.random.default_rng([int(cfg["data_seed"]), 11])
    tq = read_jsonl(root / "items_truthfulqa.jsonl")
    ds = read_jsonl(root / "delta_samples.jsonl")
    loss = read_csv(root / "loss.csv") if (root / "loss.csv").is_file() else []
    timings = read_csv(root / "timings.csv") if (root / "timings.csv").is_file() else []
    summary: dict[str, Any] = {
        "plumbing": bool(manifest.get("plumbing", False)),
        "arm_means": arm_means(tq, n_boot=int(cfg["n_boot"]), rng=rng) if tq else [],
        "paired": paired_tests(tq, n_boot=int(cfg["n_boot"]), n_perm=int(cfg["n_perm"]), rng=rng)
        if tq
        else [],
        "delta": delta_table(
            ds,
            calib,
            percentile=float(cfg["delta_percentile"]),
            n_boot=int(cfg["n_boot"]),
            n_perm=int(cfg["n_perm"]),
            rng=rng,
        )
        if ds
        else [],
        "loss": loss,
        "elapsed_s": float(timings[-1]["elapsed_s"]) if timings else None,
    }
    rd = RunDir(root)
    rd.write_csv("arm_means.csv", summary["arm_means"])
    rd.write_csv("paired.csv", summary["paired"])
    rd.write_csv("delta.csv", summary["delta"])
    rd.write_json("summary.json", summary)
    rd.write_text("summary.md", markdown(summary))
    return summary
