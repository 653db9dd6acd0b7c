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
import logging
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
from deltahall.experiments.coinflip.results import (
    SWEEP_TIMING,
    is_finished,
    read_sweep_timing,
    summarize_sweep,
)

logger = logging.getLogger(__name__)

#: The sweep's run options by default: its folder, and one torch thread per run (these models
#: are tiny: more threads than free cores slow them down many-fold).
DEFAULT_RUN = RunOptions(out_dir=Path("runs/coinflip_sweep"), threads=1)


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
    run: RunOptions = field(default_factory=lambda: DEFAULT_RUN, metadata=RESUME_FREE)

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
        if self.run.out_dir is None:
            raise BadInput("`out_dir` must be the sweep's folder; got None.")
        check_int(self.n_permutations, "n_permutations", low=1)
        self.run_configs()  # every run's config must be valid (raises otherwise)

    @property
    def out_dir(self) -> Path:
        """The sweep directory (``run.out_dir``, always set after construction)."""
        return Path(self.run.out_dir)  # type: ignore[arg-type]

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
    cfg_dict: dict[str, Any], run_dir: str, threads: int | None, entry: bool = False
) -> tuple[str, float]:
    """Train one run (resuming it if it was started) on ``threads`` torch threads (the sweep's
    ``run.threads``); in a worker process (``entry=True``) this is the entry point, so it also
    switches torch to deterministic algorithms there."""
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
        if not is_finished(rd.root / "runs" / name)
    }
    total = len(config.run_configs())
    t0 = time.perf_counter()
    bar = tqdm(
        total=total, initial=total - len(todo), disable=not progress, desc="coinflip sweep (runs)"
    )
    seconds: dict[str, float] = {}
    if config.workers == 0:
        for name, cfg in todo.items():
            _, s = _worker(cfg.to_dict(), str(rd.root / "runs" / name), config.run.threads)
            seconds[name] = s
            bar.update(1)
            bar.set_postfix(last=name)
    else:
        import multiprocessing as mp

        with ProcessPoolExecutor(config.workers, mp_context=mp.get_context("spawn")) as ex:
            futs = {
                ex.submit(
                    _worker, cfg.to_dict(), str(rd.root / "runs" / name), config.run.threads, True
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
    timing = read_sweep_timing(rd.root)
    timing["sessions"].append(
        {"wall_seconds": wall, "runs_trained": len(todo), "run_seconds": seconds}
    )
    timing["total_wall_seconds"] = sum(s["wall_seconds"] for s in timing["sessions"])
    rd.write_json(SWEEP_TIMING, timing)
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
