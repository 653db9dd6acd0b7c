"""Report section of the coin-flip experiment: for the main job and for any finished sweep."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from deltahall.experiments.coinflip.config import CoinFlipConfig
from deltahall.experiments.coinflip.results import load_runs, summarize_sweep
from deltahall.experiments.coinflip.sweep import SweepConfig, run_sweep
from deltahall.experiments.coinflip.truth import bayes_mse_uniform
from deltahall.io import Report, RunDir, Section
from deltahall.plotting import pyplot
from deltahall.plotting.coinflip import estimates_vs_truth, figure3

logger = logging.getLogger(__name__)

#: The main job's reduced sweep (under a minute on 2 shared cores): the paper's network and
#: N values, but 2000 samples, 6 epochs and 2 rounds, in 2 single-thread worker processes.
MAIN_JOB_SWEEP = dict(
    ns=(2, 3, 5),
    ms=(2000,),
    rounds=2,
    objectives=("mse", "ce"),
    n_permutations=999,
    workers=2,
    threads=1,
)
MAIN_JOB_BASE = dict(epochs=6)

#: The paper-scale sweep, as run for docs/coinflip.md ("Results on this machine").
FULL_SWEEP_COMMAND = (
    "nice deltahall coinflip sweep --out-dir runs/coinflip_full --ns 2 3 5 --ms 20000 "
    "--rounds 5 --epochs 20 --objectives mse ce --workers 2 --threads 1"
)
#: The smallest sweep whose correlations the report reads as evidence (that of
#: :data:`FULL_SWEEP_COMMAND`): every run at least this M and these epochs, every (objective, N, M)
#: with at least this many rounds. Below it the correlations are shown without a reading.
PAPER_SCALE = {"m": 20000, "epochs": 20, "rounds": 5}
#: What :data:`FULL_SWEEP_COMMAND` measured, quoted from docs/coinflip.md (a test checks each
#: row against that file): pooled over 5 rounds × 20 epochs, permutation p-values from 9,999
#: within-round shuffles, eval-mode training loss vs mean exact P(Y = estimate | X) on validation.
PAPER_SCALE_CORRELATIONS: tuple[dict[str, str], ...] = tuple(
    dict(
        zip(
            ("objective", "N", "estimate", "Pearson (p)", "Spearman (p)", "P(Y=est|X) range"),
            row,
            strict=True,
        )
    )
    for row in (
        ("mse", "2", "round", "undefined: P constant within every round", "—", "0.601–0.607"),
        ("mse", "3", "round", "−0.244 (0.018)", "−0.204 (0.046)", "0.493–0.518"),
        ("mse", "5", "round", "−0.890 (1e-4)", "−0.724 (1e-4)", "0.398–0.410"),
        ("mse", "5", "ceil (authors')", "−0.258 (0.028)", "−0.161 (0.12)", "0.317–0.388"),
        ("ce", "2", "argmax", "−0.329 (0.004)", "−0.251 (0.013)", "0.580–0.607"),
        ("ce", "3", "argmax", "−0.602 (1e-4)", "−0.456 (1e-4)", "0.491–0.518"),
        ("ce", "5", "argmax", "−0.533 (1e-4)", "−0.479 (1e-4)", "0.385–0.410"),
    )
)
#: The verdict of docs/coinflip.md on Figure 3, with its numbers (checked against that file).
PAPER_SCALE_VERDICT = (
    "Verdict of the paper-scale sweep (docs/coinflip.md; 30 runs, 1060 s wall on a 2-core machine): "
    "Figure 3's claim that training loss and conditional probability do not move together does not "
    "hold there: they are significantly negatively correlated (lower loss, higher probability), "
    "because rounding E[Y|X] lands on or next to the mode of the Poisson-binomial. The effect is small "
    "in absolute terms (P moves by ~0.01). With the authors' ceil estimate the correlation is weak "
    '(|r| ≤ 0.27), which is how a "no correlation" reading can arise. Dropping the first two epochs '
    "leaves the picture unchanged (mse N = 5: Pearson −0.896, p = 1e-4)."
)
#: Columns of the correlation table.
CORRELATION_COLUMNS = (
    "objective",
    "n",
    "m",
    "probability",
    "from_epoch",
    "rounds",
    "points",
    "pearson",
    "pearson_p",
    "spearman",
    "spearman_p",
    "prob_min",
    "prob_max",
)


def _mean(xs: list[float]) -> float:
    return float(np.mean(xs)) if xs else float("nan")


def summary_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (objective, N, M): final numbers averaged over rounds, beside the exact references."""
    groups: dict[tuple[str, int, int], list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        c: CoinFlipConfig = r["config"]
        groups[(c.objective, c.n, c.m)].append(r)
    rows = []
    for (obj, n, m), g in sorted(groups.items()):
        fin = [r["history"][-1] for r in g]
        d0 = g[0]["config"].deltas[0]
        rows.append(
            {
                "objective": obj,
                "N": n,
                "M": m,
                "rounds": len(g),
                "Bayes MSE (exact)": bayes_mse_uniform(n),
                "train MSE": _mean([f["train_mse"] for f in fin]),
                "val MSE (raw)": _mean([f["val_mse"] for f in fin]),
                "val sq.err (integer est.)": _mean([f["val_mse_est"] for f in fin]),
                "RMS dist to E[Y|X]": _mean([f["dist_bayes"] for f in fin]),
                "P(Y=est|X)": _mean([f["cp_est"] for f in fin]),
                "P(Y=ceil|X)": _mean([f["cp_ceil"] for f in fin]),
                "P(Y=raw|X)": _mean([f["cp_raw"] for f in fin]),
                "P(round E[Y|X])": _mean([r["reference"]["cp_bayes_round"] for r in g]),
                "P(mode) (best)": _mean([r["reference"]["cp_mode"] for r in g]),
                f"hall. rate est δ={d0:g}": _mean([f[f"hall_est_d{d0:g}"] for f in fin]),
                f"hall. rate raw δ={d0:g}": _mean([f[f"hall_raw_d{d0:g}"] for f in fin]),
            }
        )
    return rows


def at_paper_scale(runs: list[dict[str, Any]]) -> bool:
    """Whether a sweep is large enough to read its correlations as evidence (:data:`PAPER_SCALE`)."""
    if not runs:
        return False
    groups: dict[tuple[str, int, int], int] = defaultdict(int)
    for r in runs:
        c: CoinFlipConfig = r["config"]
        if c.m < PAPER_SCALE["m"] or len(r["history"]) < PAPER_SCALE["epochs"]:
            return False
        groups[(c.objective, c.n, c.m)] += 1
    return min(groups.values()) >= PAPER_SCALE["rounds"]


def _reading(row: dict[str, Any], alpha: float = 0.05) -> str:
    """A short reading of one pooled correlation row (used at paper scale only)."""
    if np.isnan(row["pearson"]):
        return "undefined: P constant within every round"
    sig = [row["pearson_p"] < alpha, row["spearman_p"] < alpha]
    if not any(sig):
        return "no significant correlation"
    which = "both" if all(sig) else ("Pearson only" if sig[0] else "Spearman only")
    sign = "negative" if row["pearson"] < 0 else "positive"
    return f"{sign} ({which} p < {alpha:g})"


def _correlation_part(sec: Section, pooled: list[dict[str, Any]], *, paper_scale: bool) -> None:
    """The correlation table; a reading column only at paper scale, else where the verdict comes from."""
    caption = (
        "Training loss (objective, eval mode, whole training set) vs average conditional probability "
        "(cp_est: the integer estimate; cp_ceil: the authors' ceil), over epochs, pooled over rounds; "
        "permutation p-values shuffle epochs within each round. from_epoch 3 leaves out the first two "
        "epochs' joint descent."
    )
    if paper_scale:
        rows = [{**r, "reading": _reading(r)} for r in pooled]
        sec.table(rows, [*CORRELATION_COLUMNS, "reading"], caption=caption, float_format="{:.3g}")
        sec.text(
            "Figure 3 claims that training loss and P(Y = estimate | X) do not move together. A negative "
            "row means epochs with lower loss have a higher probability; a significant one contradicts "
            "the claim."
        )
        return
    sec.table(
        pooled,
        CORRELATION_COLUMNS,
        caption=caption + " Reduced size: shown, not read.",
        float_format="{:.3g}",
    )
    sec.note(
        f"At this size (M, epochs or rounds below the paper-scale sweep's M = {PAPER_SCALE['m']}, "
        f"{PAPER_SCALE['epochs']} epochs, {PAPER_SCALE['rounds']} rounds) the correlations above check the "
        "plumbing; they are not read for or against Figure 3. The verdict comes from the paper-scale sweep "
        "(the command below), whose measured correlations docs/coinflip.md reports (pooled over 5 rounds × 20 "
        "epochs, permutation p-values from 9,999 within-round shuffles)."
    )
    sec.code(FULL_SWEEP_COMMAND)
    sec.table(
        list(PAPER_SCALE_CORRELATIONS),
        caption="Paper-scale sweep, quoted from docs/coinflip.md (not computed by this run).",
    )
    sec.text(PAPER_SCALE_VERDICT)


def section_from_sweep(
    rd: RunDir,
    *,
    title: str = "Coin flipping (Section 7.1, Figure 3)",
    n_permutations: int = 9999,
    seed: int = 0,
) -> Section:
    """Build the report section (tables, Figure 3, estimates plot) of the sweep in ``rd``.

    The figures are written through ``rd`` (from :func:`write_sweep_report`, the
    :func:`~deltahall.experiments._derived.rewrite` of the sweep's folder).

    The correlations of loss and probability get a reading (negative, positive, none) only when
    the sweep is at paper scale (:func:`at_paper_scale`); a smaller sweep shows them as a table and
    quotes the paper-scale sweep's numbers and verdict from docs/coinflip.md instead.

    Raises
    ------
    FileNotFoundError
        If ``sweep_dir`` holds no finished run.
    """
    sweep_dir = rd.root
    runs = load_runs(sweep_dir)
    if not runs:
        raise FileNotFoundError(f"`sweep_dir` {sweep_dir} holds no finished coin-flip run.")
    _, pooled = summarize_sweep(sweep_dir, n_permutations=n_permutations, rng=seed)
    sec = Section(title)
    cfg0: CoinFlipConfig = runs[0]["config"]
    sec.text(
        f"{len(runs)} runs from {sweep_dir}: an {cfg0.n_layers}-layer token transformer (d_model {cfg0.d_model}, "
        f"feed-forward {cfg0.d_ff}) sees the labels of the N chosen coins (of 2N, head probabilities (i+1)/(2N)) "
        f"and predicts the number of heads; {cfg0.epochs} epochs, batch {cfg0.batch_size}, validation fraction "
        f"{cfg0.val_fraction:g}. 'mse' is the paper's squared loss (integer estimate = rounded output); 'ce' is "
        "the mode-seeking variant (cross-entropy over 0..N, estimate = argmax). Conditional probabilities "
        "P(Y = estimate | X) are exact (Poisson-binomial pmf) and averaged over the validation set."
    )
    summ = summary_rows(runs)
    sec.table(
        summ,
        caption="Final epoch, mean over rounds, beside the exact references "
        "(Bayes MSE = irreducible squared error; P(round E[Y|X]) = what a perfect squared-loss model scores "
        "after rounding; P(mode) = the best any estimator can score).",
    )
    _correlation_part(sec, pooled, paper_scale=at_paper_scale(runs))
    raw_max = max(e["cp_raw"] for r in runs for e in r["history"])
    ref_gap = max(r["reference"]["cp_mode"] - r["reference"]["cp_bayes_round"] for r in runs)
    sec.text(
        "Exact at any size: P(round E[Y|X]) is within "
        f"{ref_gap:.4f} of the best possible P(mode) in every run, so rounding E[Y|X] lands on or next to the "
        "mode of the Poisson-binomial. Theorem 5.1 concerns the real-valued loss minimiser itself: the largest "
        f"P(Y = raw output | X) over every epoch of every run is {raw_max:.4g}, i.e. the raw output "
        "δ-hallucinates at every δ < 1 on essentially every input, as the theorem says."
    )
    for obj in sorted({r["config"].objective for r in runs}):
        for m in sorted({r["config"].m for r in runs}):
            sel = [r for r in runs if r["config"].objective == obj and r["config"].m == m]
            if not sel:
                continue
            hist: dict[int, list[Any]] = defaultdict(list)
            preds: dict[int, list[Any]] = defaultdict(list)
            refs: dict[int, list[float]] = defaultdict(list)
            for r in sel:
                hist[r["config"].n].append(r["history"])
                preds[r["config"].n].extend(r["predictions"])
                refs[r["config"].n].append(r["reference"]["cp_bayes_round"])
            floors = {n: bayes_mse_uniform(n) for n in hist} if obj == "mse" else None
            fig = figure3(
                hist,
                floors=floors,
                references={n: _mean(v) for n, v in refs.items()},
                title=f"Figure 3 regenerated: objective {obj}, M = {m}",
            )
            paths = rd.save_figure(fig, f"figure3_{obj}_M{m}")
            pyplot().close(fig)
            sec.figure(
                paths[0],
                f"Training loss (blue, solid) and P(Y = estimate | X) on validation (red, dashed), "
                f"all rounds; objective {obj}, M = {m}.",
            )
            fig = estimates_vs_truth(
                preds, title=f"Final model output vs E[Y|X]: objective {obj}, M = {m}"
            )
            paths = rd.save_figure(fig, f"estimates_{obj}_M{m}")
            pyplot().close(fig)
            sec.figure(
                paths[0],
                "Each dot is one distinct validation coin set of one round. On the diagonal the "
                "output equals the Bayes-optimal E[Y|X], which is rarely an integer: its own "
                "conditional probability is 0 (Theorem 5.1 in its plainest form).",
            )
    return sec


def write_sweep_report(
    sweep_dir: str | Path,
    *,
    n_permutations: int = 9999,
    seed: int = 0,
    command: str = "coinflip report",
) -> Path:
    """``sweep_dir/report.html`` holding :func:`section_from_sweep`, and its figures.

    A rebuild of an existing sweep's derived files, so it goes through
    :func:`~deltahall.experiments._derived.rewrite`: the folder must hold a ``coinflip-sweep``
    manifest, and the rebuild is recorded in its ``derived.json``.
    """
    from deltahall.experiments._derived import rewrite
    from deltahall.experiments.coinflip.sweep import SWEEP

    def write(rd: RunDir, manifest: dict[str, Any]) -> Path:
        rep = Report("deltahall: the coin-flip experiment")
        rep.add(section_from_sweep(rd, n_permutations=n_permutations, seed=seed))
        return rd.write_text("report.html", rep.render())

    path: Path = rewrite(sweep_dir, experiment=SWEEP.name, write=write, command=command)
    return path


def main_job_section(run_dir: Path, seed: int) -> Section:
    """Run the reduced sweep (:data:`MAIN_JOB_SWEEP`) into ``run_dir`` and describe it."""
    t0 = time.perf_counter()
    from deltahall.experiments._run import RunOptions

    # A rerun of the main job continues (or just re-reports) the sweep it finds in ``run_dir``.
    resume = "latest" if (Path(run_dir) / "manifest.json").is_file() else None
    cfg = SweepConfig(
        base_seed=seed,
        base=CoinFlipConfig(**MAIN_JOB_BASE),  # type: ignore[arg-type]
        run=RunOptions(
            out_dir=Path(run_dir),
            resume_from_checkpoint=resume,
            progress=False,
            threads=int(MAIN_JOB_SWEEP["threads"]),  # type: ignore[call-overload]
        ),
        **{k: v for k, v in MAIN_JOB_SWEEP.items() if k != "threads"},  # type: ignore[arg-type]
    )
    run_sweep(cfg)
    from deltahall.experiments._derived import rewrite
    from deltahall.experiments.coinflip.sweep import SWEEP

    sec: Section = rewrite(
        run_dir,
        experiment=SWEEP.name,
        write=lambda rd, manifest: section_from_sweep(
            rd, n_permutations=cfg.n_permutations, seed=seed
        ),
        command="report (coinflip step)",
    )
    sec.text(
        f"Reduced size for the main job ({time.perf_counter() - t0:.0f} s): M = {cfg.ms[0]}, "
        f"{cfg.base.epochs} epochs, {cfg.rounds} rounds. The exact references (Bayes MSE, P(round E[Y|X]), "
        "P(mode)) are exact at any size."
    )
    return sec
