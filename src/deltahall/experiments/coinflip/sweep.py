"""The Figure 3 sweep: N x M x rounds x objectives, with correlations (paper Section 7.1).

``run_sweep(SweepConfig(...))`` trains every run into ``out_dir/runs/<obj>_N<n>_M<m>_r<round>/``
(each resumable from its checkpoints), then writes ``runs.csv`` (one row per run, with its own
correlations), ``correlations.csv`` (pooled over the rounds of each objective, N and M) and
``sweep.json``. Rerunning the same sweep into the same directory skips finished runs and
resumes unfinished ones from their last epoch. Each round has its own seed, derived from
``base_seed`` and (N, M, round) with ``numpy.random.SeedSequence``; the mse and ce runs of one
round share that seed, hence the same data.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deltahall._validation import BadInput, check_choice, check_int
from deltahall.experiments._run import (
    RESUME_FREE,
    Experiment,
    OpenRun,
    Outcome,
    RunOptions,
    execute,
    free,
)
from deltahall.experiments.coinflip.config import OBJECTIVES, CoinFlipConfig
from deltahall.io import RunDir
from deltahall.io.rundir import read_csv

logger = logging.getLogger(__name__)

#: (loss column, probability column) pairs correlated over epochs.
CORRELATION_PAIRS: tuple[tuple[str, str], ...] = (
    ("train_loss", "cp_est"),
    ("train_loss", "cp_ceil"),
)


@dataclass(frozen=True)
class SweepConfig:
    """The grid of runs; every other setting comes from ``base`` (a :class:`CoinFlipConfig`)."""

    ns: tuple[int, ...] = field(default=(2, 3, 5), metadata={"help": "values of N"})
    ms: tuple[int, ...] = field(
        default=(20000,), metadata={"help": "values of M (paper: 20000 to 40000)"}
    )
    rounds: int = field(default=5, metadata={"help": "rounds (independent seeds) per (N, M)"})
    objectives: tuple[str, ...] = field(
        default=("mse", "ce"), metadata={"help": "objectives: mse ce"}
    )
    base_seed: int = field(default=0, metadata={"help": "seed the round seeds are derived from"})
    workers: int = field(
        default=2,
        metadata=free("worker processes training runs in parallel; 0 trains in this process"),
    )
    n_permutations: int = field(
        default=9999, metadata=free("permutations for the correlation p-values")
    )
    base: CoinFlipConfig = field(
        default_factory=CoinFlipConfig, metadata={"help": "settings shared by all runs"}
    )
    run: RunOptions = field(
        default_factory=lambda: RunOptions(out_dir=Path("runs/coinflip_sweep")),
        metadata=RESUME_FREE,
    )

    def __post_init__(self) -> None:
        if not self.ns or not self.ms or not self.objectives:
            raise ValueError("`ns`, `ms` and `objectives` must each hold at least one value.")
        for n in self.ns:
            check_int(n, "ns", low=1)
        for m in self.ms:
            check_int(m, "ms", low=2)
        for obj in self.objectives:
            check_choice(obj, "objectives", OBJECTIVES)
        check_int(self.rounds, "rounds", low=1)
        check_int(self.base_seed, "base_seed", low=0)
        check_int(self.workers, "workers", low=0)
        if isinstance(self.run, dict):
            object.__setattr__(self, "run", RunOptions(**self.run))
        object.__setattr__(self, "run", self.run.with_defaults(out_dir=Path("runs/coinflip_sweep")))
        check_int(self.n_permutations, "n_permutations", low=1)
        self.run_configs()  # every run's config must be valid (raises otherwise)

    @property
    def out_dir(self) -> Path:
        """The sweep directory (``run.out_dir``)."""
        return Path(self.run.out_dir)  # type: ignore[arg-type]

    @property
    def threads(self) -> int:
        """torch threads per run (``run.threads``; default 1: more threads than free cores slow
        these small models down many-fold)."""
        return self.run.threads or 1

    def run_configs(self) -> dict[str, CoinFlipConfig]:
        """Name -> config of every run, largest N first."""
        out = {}
        for n in sorted(self.ns, reverse=True):
            for m in self.ms:
                for r in range(self.rounds):
                    for obj in self.objectives:
                        objective: Any = obj
                        out[run_name(obj, n, m, r)] = dataclasses.replace(
                            self.base,
                            n=n,
                            m=m,
                            objective=objective,
                            seed=round_seed(self.base_seed, n, m, r),
                        )
        return out


def run_name(objective: str, n: int, m: int, r: int) -> str:
    return f"{objective}_N{n}_M{m}_r{r}"


def round_seed(base_seed: int, n: int, m: int, r: int) -> int:
    """Seed of round ``r`` at (N, M): ``SeedSequence(base_seed, spawn_key=(n, m, r))``."""
    return int(np.random.SeedSequence(base_seed, spawn_key=(n, m, r)).generate_state(1)[0])


@dataclass(frozen=True)
class SweepResult:
    """Per-run rows, pooled correlation rows, wall time, and where they are written."""

    out_dir: Path
    runs: list[dict[str, Any]]
    correlations: list[dict[str, Any]]
    wall_seconds: float


def _worker(
    cfg_dict: dict[str, Any], run_dir: str, threads: int, entry: bool = False
) -> tuple[str, float]:
    """Train one run (resuming it if it was started); in a worker process (``entry=True``) this
    is the entry point, so it also switches torch to deterministic algorithms there."""
    from deltahall.experiments.coinflip.train import run

    if entry:
        import torch

        torch.use_deterministic_algorithms(True)
    t0 = time.perf_counter()
    cfg = CoinFlipConfig.from_dict(cfg_dict)
    started = (Path(run_dir) / "manifest.json").is_file()
    opts = RunOptions(
        out_dir=Path(run_dir),
        resume_from_checkpoint="latest" if started else None,
        threads=threads,
        progress=False,
    )
    run(dataclasses.replace(cfg, run=opts))
    return run_dir, time.perf_counter() - t0


def run_sweep(config: SweepConfig) -> SweepResult:
    """Train every run of ``config`` (skipping finished ones) and write the tables.

    The sweep is one run of the shared runner (:func:`deltahall.experiments._run.execute`):
    ``run.resume_from_checkpoint="latest"`` continues it (finished runs are skipped, started
    ones resumed from their last epoch); ``result.json`` holds the totals once it is done.

    Raises
    ------
    ValueError
        If ``out_dir`` holds a sweep and no resume was asked for, or one made with other
        settings (the changed keys are named).
    """
    if not isinstance(config, SweepConfig):
        raise TypeError(f"`config` must be a SweepConfig; got {type(config).__name__}.")
    result: SweepResult = execute(SWEEP, config)
    return result


def _sweep(config: SweepConfig, opened: OpenRun) -> Outcome:
    from tqdm.auto import tqdm

    rd = opened.rd
    progress = config.run.progress
    todo = {
        name: cfg
        for name, cfg in config.run_configs().items()
        if not (rd.root / "runs" / name / "result.json").is_file()
    }
    total = len(config.run_configs())
    t0 = time.perf_counter()
    bar = tqdm(
        total=total, initial=total - len(todo), disable=not progress, desc="coinflip sweep (runs)"
    )
    seconds: dict[str, float] = {}
    if config.workers == 0:
        for name, cfg in todo.items():
            _, s = _worker(cfg.to_dict(), str(rd.root / "runs" / name), config.threads)
            seconds[name] = s
            bar.update(1)
            bar.set_postfix(last=name)
    else:
        import multiprocessing as mp

        with ProcessPoolExecutor(config.workers, mp_context=mp.get_context("spawn")) as ex:
            futs = {
                ex.submit(
                    _worker, cfg.to_dict(), str(rd.root / "runs" / name), config.threads, True
                ): name
                for name, cfg in todo.items()
            }
            for fut in as_completed(futs):
                _, s = fut.result()
                seconds[futs[fut]] = s
                bar.update(1)
                bar.set_postfix(last=futs[fut])
    bar.close()
    wall = time.perf_counter() - t0
    res = summarize_sweep(rd.root, n_permutations=config.n_permutations, rng=config.base_seed)
    timing = (
        rd.read_json("sweep_timing.json")
        if rd.path("sweep_timing.json").is_file()
        else {"sessions": []}
    )
    timing["sessions"].append(
        {"wall_seconds": wall, "runs_trained": len(todo), "run_seconds": seconds}
    )
    timing["total_wall_seconds"] = sum(s["wall_seconds"] for s in timing["sessions"])
    rd.write_json("sweep_timing.json", timing)
    return Outcome(
        result={
            "runs": len(res[0]),
            "runs_trained_this_session": len(todo),
            "total_wall_seconds": timing["total_wall_seconds"],
            "tables": ["runs.csv", "correlations.csv", "sweep.json"],
        },
        value=SweepResult(rd.root, res[0], res[1], timing["total_wall_seconds"]),
    )


#: The sweep as the shared runner executes it (its runs are coin-flip runs of their own).
SWEEP = Experiment(name="coinflip-sweep", body=_sweep)


def _read_run_file(path: Path, read: Any) -> Any:
    """``read(path)``; a file that is not UTF-8, not JSON or not numeric is a :class:`BadInput` naming it."""
    try:
        return read(path)
    except UnicodeDecodeError as exc:
        raise BadInput(
            f"{os.fspath(path)}: not UTF-8 text (byte {exc.start}); it was not written by "
            "deltahall coinflip (or was edited in another encoding)."
        ) from None
    except json.JSONDecodeError as exc:
        raise BadInput(
            f"{os.fspath(path)}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}."
        ) from None
    except (ValueError, TypeError) as exc:
        raise BadInput(f"{os.fspath(path)}: unreadable ({' '.join(str(exc).split())}).") from None


def load_runs(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """Every finished run under ``sweep_dir/runs``: config, history (floats), reference, predictions."""
    out = []
    for d in sorted((Path(sweep_dir) / "runs").glob("*")):
        if not (d / "result.json").is_file():
            continue
        summary = _read_run_file(d / "result.json", lambda p: RunDir(p.parent).read_json(p.name))
        if not isinstance(summary, dict) or not {"config", "reference"} <= set(summary):
            raise BadInput(
                f"{os.fspath(d / 'result.json')}: not a coin-flip result (a JSON object with "
                "`config` and `reference`)."
            )
        cfg = CoinFlipConfig.from_dict(summary["config"])
        hist = _read_run_file(
            d / "metrics.csv",
            lambda p: [{k: float(v) for k, v in row.items()} for row in read_csv(p)],
        )
        preds = _read_run_file(d / "predictions.csv", read_csv)
        out.append(
            {
                "name": d.name,
                "dir": d,
                "config": cfg,
                "history": hist,
                "reference": summary["reference"],
                "predictions": preds,
            }
        )
    return out


def summarize_sweep(
    sweep_dir: str | Path,
    *,
    n_permutations: int = 9999,
    rng: int = 0,
    from_epochs: tuple[int, ...] = (1, 3),
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per-run and pooled correlation tables of a (possibly partial) sweep; writes both as CSV.

    Pooled rows are computed over all epochs (``from_epoch`` 1) and again from epoch 3 on, so a
    reader can see whether a correlation is more than the first epochs' joint descent.
    """
    # scipy.stats is imported here, not at module level: `deltahall coinflip run` never needs it.
    from deltahall.experiments.coinflip.stats import permutation_correlation

    runs = load_runs(sweep_dir)
    run_rows: list[dict[str, Any]] = []
    for i, r in enumerate(runs):
        cfg: CoinFlipConfig = r["config"]
        h = r["history"]
        fin = h[-1]
        row: dict[str, Any] = {
            "run": r["name"],
            "objective": cfg.objective,
            "n": cfg.n,
            "m": cfg.m,
            "seed": cfg.seed,
            "epochs": len(h),
            "train_mse": fin["train_mse"],
            "val_mse": fin["val_mse"],
            "bayes_mse": r["reference"]["bayes_mse_val"],
            "val_mse_est": fin["val_mse_est"],
            "dist_bayes": fin["dist_bayes"],
            "cp_est": fin["cp_est"],
            "cp_ceil": fin["cp_ceil"],
            "cp_bayes_round": r["reference"]["cp_bayes_round"],
            "cp_mode": r["reference"]["cp_mode"],
        }
        for d in cfg.deltas:
            row[f"hall_est_d{d:g}"] = fin[f"hall_est_d{d:g}"]
        for loss_col, p_col in CORRELATION_PAIRS:
            c = permutation_correlation(
                [e[loss_col] for e in h],
                [e[p_col] for e in h],
                n_permutations=n_permutations,
                rng=rng + i,
            )
            row[f"pearson_{p_col}"], row[f"pearson_p_{p_col}"] = c.pearson, c.pearson_p
            row[f"spearman_{p_col}"], row[f"spearman_p_{p_col}"] = c.spearman, c.spearman_p
        run_rows.append(row)
    pooled: list[dict[str, Any]] = []
    keys = sorted({(r["config"].objective, r["config"].n, r["config"].m) for r in runs})
    for j, (obj, n, m) in enumerate(keys):
        group = [
            r for r in runs if (r["config"].objective, r["config"].n, r["config"].m) == (obj, n, m)
        ]
        for first in from_epochs:
            for loss_col, p_col in CORRELATION_PAIRS:
                xs, ys, gs = [], [], []
                for gi, r in enumerate(group):
                    h = [e for e in r["history"] if e["epoch"] >= first]
                    xs += [e[loss_col] for e in h]
                    ys += [e[p_col] for e in h]
                    gs += [gi] * len(h)
                if len(xs) < 3:
                    continue
                c = permutation_correlation(
                    xs,
                    ys,
                    groups=gs,
                    n_permutations=n_permutations,
                    rng=rng + 1000 + 10 * j + first,
                )
                pooled.append(
                    {
                        "objective": obj,
                        "n": n,
                        "m": m,
                        "from_epoch": first,
                        "loss": loss_col,
                        "probability": p_col,
                        "rounds": len(group),
                        "points": c.n,
                        "pearson": c.pearson,
                        "pearson_p": c.pearson_p,
                        "spearman": c.spearman,
                        "spearman_p": c.spearman_p,
                        "prob_min": float(min(ys)),
                        "prob_max": float(max(ys)),
                    }
                )
    rd = RunDir(sweep_dir)
    if run_rows:
        rd.write_csv("runs.csv", run_rows)
        rd.write_csv("correlations.csv", pooled)
    return run_rows, pooled
