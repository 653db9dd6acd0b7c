"""One ``modes`` run: ``run(config) -> ModesResult`` (known truth on mixtures of Gaussians).

1. Draw the real data of the target (:mod:`.truth`): training points, validation points, a
   labelled reference set and a held-out real set (independent seeds); write ``truth.json``.
2. Train the DDPM (:mod:`.model`); every ``checkpoint_every`` steps (and at step 0) draw K
   samples with the same noise, evaluate Definition 4.2 exactly on them, score every detector
   (:mod:`.detectors`) against the truth, write ``samples/step-<k>.csv`` and a row of
   ``metrics.csv``, then save ``checkpoints/checkpoint-<k>``.
3. Recursive training (:mod:`.recursive`).
4. ``result.json`` and the figures (:mod:`.results`).

A run killed at any instant continues with ``resume_from_checkpoint="latest"`` to byte-identical
CSV and JSON files: each step's minibatch, timesteps and noise come from generators seeded by the
step number, so a resumed range of steps repeats exactly what an uninterrupted run does; a
recursive generation is published (weights, then its row) only when finished. Wall times go to
``timing.json``, kept apart so reruns give identical results.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from deltahall.experiments._run import Experiment, OpenRun, Outcome, execute
from deltahall.experiments.modes import detectors as det
from deltahall.experiments.modes import truth as tr
from deltahall.experiments.modes.config import ModesConfig, data_dim, log_delta_at
from deltahall.experiments.modes.seeding import seed_of
from deltahall.io import RunDir
from deltahall.stats import proportion

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class RealData:
    """The real samples of one run, in data units (model units = data units / ``scale``)."""

    train: FloatArray
    val: FloatArray
    ref_x: FloatArray
    ref_y: npt.NDArray[np.int64]
    holdout: FloatArray
    scale: float


def real_data(config: ModesConfig) -> RealData:
    def rng(name: str) -> np.random.Generator:
        return np.random.default_rng(seed_of(config.seed, "data", name))

    train, _ = tr.draw(config.data, config.n_train, rng("train"))
    val, _ = tr.draw(config.data, config.n_val, rng("val"))
    ref_x, ref_y = tr.draw(config.data, config.n_reference, rng("reference"))
    holdout, _ = tr.draw(config.data, config.n_holdout, rng("holdout"))
    return RealData(
        train=train,
        val=val,
        ref_x=ref_x,
        ref_y=ref_y,
        holdout=holdout,
        scale=tr.model_scale(config.data),
    )


@dataclass(frozen=True)
class ModesResult:
    """Outcome of a run: the per-checkpoint metrics, the recursive table and ``result.json``'s body."""

    config: ModesConfig
    metrics: list[dict[str, Any]]
    recursive: list[dict[str, Any]]
    summary: dict[str, Any]
    out_dir: Path | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def run(config: ModesConfig) -> ModesResult:
    """Train, evaluate against the exact truth, train recursively; see the module docstring.

    Raises
    ------
    ValueError
        If ``out_dir`` holds a run and no resume was asked for, or the run was started with other
        settings (the changed keys are named).
    FileNotFoundError
        If an explicit checkpoint folder holds no checkpoint.
    """
    if not isinstance(config, ModesConfig):
        raise TypeError(f"`config` must be a ModesConfig; got {type(config).__name__}.")
    result: ModesResult = execute(EXPERIMENT, config)
    return result


class Context:
    """What every evaluation needs: the config, the real data, the schedule."""

    def __init__(self, config: ModesConfig, real: RealData) -> None:
        from deltahall.experiments.modes.model import Schedule

        self.config = config
        self.real = real
        self.schedule = Schedule.linear(config.timesteps, config.beta_start, config.beta_end)
        self.dim = data_dim(config.data)

    def draw(self, model: Any, n: int, name: tuple[object, ...]) -> tuple[FloatArray, FloatArray]:
        """``n`` samples in data units and their trajectory variances (data units squared)."""
        import torch

        from deltahall.experiments.modes.model import sample

        c = self.config
        gen = torch.Generator().manual_seed(seed_of(c.seed, *name))
        s = sample(
            model,
            self.schedule,
            n=n,
            dim=self.dim,
            window=c.variance_window,
            batch_size=c.sample_batch_size,
            gen=gen,
        )
        return s.x * self.real.scale, s.trajectory_variance * self.real.scale**2

    def real_variance(self, model: Any) -> FloatArray:
        """Trajectory variance of held-out real points noised to the window's first step."""
        import torch

        from deltahall.experiments.modes.model import sample

        c = self.config
        gen = torch.Generator().manual_seed(seed_of(c.seed, "holdout-trajectory"))
        x0 = torch.from_numpy(self.real.holdout / self.real.scale).to(torch.float32)
        s = sample(
            model,
            self.schedule,
            n=x0.shape[0],
            dim=self.dim,
            window=c.variance_window,
            batch_size=c.sample_batch_size,
            gen=gen,
            x0=x0,
        )
        return s.trajectory_variance * self.real.scale**2


def evaluate_checkpoint(
    ctx: Context, model: Any, *, step: int
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """One checkpoint: the metrics row, the per-sample rows and the detectors' table."""
    c, real = ctx.config, ctx.real
    x, var = ctx.draw(model, c.num_samples, ("samples",))
    truth = tr.evaluate(c.data, x, c.log_delta)
    scored = det.score_all(
        ref_x=real.ref_x,
        ref_y=real.ref_y,
        holdout_x=real.holdout,
        holdout_var=ctx.real_variance(model),
        gen_x=x,
        gen_var=var,
        alpha=c.alpha,
        knn_k=c.knn_k,
        seed=seed_of(c.seed, "instrument") % (2**31),
    )
    table = det.evaluate(
        scored, truth.hallucinated, alpha=c.alpha, keep_in_support=c.keep_in_support
    )
    k = int(truth.hallucinated.sum())
    p = proportion(k, c.num_samples)
    covered, tv, _ = tr.coverage(c.data, truth, share=c.coverage_share)
    row: dict[str, Any] = {
        "step": step,
        "true_k": k,
        "true_n": c.num_samples,
        "true_rate": p.rate,
        "true_lo": p.ci[0],
        "true_hi": p.ci[1],
    }
    for r in c.sensitivity_sigmas:
        row[f"true_rate_{r:g}sd"] = float(np.mean(truth.max_log_density <= log_delta_at(c.data, r)))
    hc = proportion(int(scored.flagged.sum()), c.num_samples)
    row.update(
        {
            "hcdr_rate": hc.rate,
            "hcdr_lo": hc.ci[0],
            "hcdr_hi": hc.ci[1],
            "hcdr_floor": scored.floor,
            "hcdr_percentile_rate": float(np.mean(scored.flagged_percentile)),
            "hcdr_percentile_floor": scored.floor_percentile,
            "covered": covered,
            "tv_from_uniform": tv,
        }
    )
    for name in det.DETECTORS:
        d = table[name]
        row.update(
            {
                f"{name}_auroc": d["auroc"],
                f"{name}_rate": d["rate"] if name != "hcdr" else row["hcdr_rate"],
                f"{name}_precision": d["precision"],
                f"{name}_recall": d["recall"],
                f"{name}_removed_at_keep": d["removed_at_keep"],
                f"{name}_kept_at_remove95": d["kept_at_remove95"],
            }
        )
    rows = sample_rows(c.data, x, truth, scored, var)
    return row, rows, table


def sample_rows(
    data: str, x: FloatArray, truth: tr.Truth, scored: det.Scored, var: FloatArray
) -> list[dict[str, Any]]:
    """The rows of ``samples/step-<k>.csv`` (coordinates in data units, float64 written exactly)."""
    rows = []
    for i in range(x.shape[0]):
        r: dict[str, Any] = {"x0": float(x[i, 0])}
        if x.shape[1] > 1:
            r["x1"] = float(x[i, 1])
        r.update(
            {
                "truth_hallucinated": int(truth.hallucinated[i]),
                "true_max_log_density": float(truth.max_log_density[i]),
                "nearest_component": int(truth.nearest[i]),
                "p_value": float(scored.p_value[i]),
                "flagged": int(scored.flagged[i]),
                "flagged_percentile": int(scored.flagged_percentile[i]),
                "trajectory_variance": float(var[i]),
                "knn_distance": float(scored.gen["knn"][i]),
            }
        )
        rows.append(r)
    return rows


def truth_json(config: ModesConfig) -> dict[str, Any]:
    """``truth.json``: δ and the components, enough to recompute the truth column from a CSV."""
    from deltahall.experiments.modes.config import COMPONENT_STD

    means = tr.component_means(config.data)
    return {
        "delta": math.exp(config.log_delta),
        "log_delta": config.log_delta,
        "delta_sigmas": config.delta_sigmas,
        "means": means.tolist(),
        "stds": [COMPONENT_STD] * means.shape[0],
        "weights": [1.0 / means.shape[0]] * means.shape[0],
        "rule": "truth_hallucinated = max_k log N(x; means[k], stds[k]^2 I) <= log(delta) (Definition 4.2)",
        "units": "the data's own units (the model sees x / model_scale)",
        "model_scale": tr.model_scale(config.data),
    }


def _body(config: ModesConfig, opened: OpenRun) -> Outcome:
    import torch
    from tqdm.auto import tqdm

    from deltahall.experiments._checkpoint import load_checkpoint, save_checkpoint
    from deltahall.experiments.modes.model import build_denoiser, fixed_loss, train_steps
    from deltahall.experiments.modes.recursive import run_recursive
    from deltahall.experiments.modes.results import write_results

    c = config
    rd: RunDir = opened.rd
    ckpt_root = rd.root / "checkpoints"
    real = real_data(c)
    ctx = Context(c, real)
    rd.write_json("truth.json", truth_json(c))
    model = build_denoiser(
        ctx.dim,
        width=c.width,
        n_blocks=c.n_blocks,
        tied_blocks=c.tied_blocks,
        seed=seed_of(c.seed, "init") % (2**63),
    )
    opt = torch.optim.Adam(model.parameters(), lr=c.lr)
    history: list[dict[str, Any]] = []
    tables: dict[str, Any] = {}
    start = -1  # the last evaluated step (-1: none)
    if opened.checkpoint is not None:
        state = load_checkpoint(opened.checkpoint, model=model, optimizer=opt)
        history = [dict(r) for r in state["extra"]["history"]]
        tables = dict(state["extra"]["tables"])
        start = int(state["step"])
        logger.info("resumed %s at step %d", opened.checkpoint, start)
    train = torch.from_numpy(real.train / real.scale).to(torch.float32)
    val = torch.from_numpy(real.val / real.scale).to(torch.float32)
    timing: dict[str, float] = _read_timing(rd)
    fp = opened.fingerprint

    def seed_main(*names: object) -> int:
        return seed_of(c.seed, "train", *names)

    evals = ([0] if c.eval_initial else []) + list(
        range(c.checkpoint_every, c.train_steps + 1, c.checkpoint_every)
    )
    bar = tqdm(
        total=len(evals), disable=not c.run.progress, leave=False, desc=f"modes {c.data} {c.preset}"
    )
    bar.update(sum(1 for s in evals if s <= start))
    for s in evals:
        if s <= start:
            continue
        t0 = time.perf_counter()
        first = max(start, 0)
        losses = (
            train_steps(
                model,
                opt,
                train,
                ctx.schedule,
                first=first,
                last=s,
                batch_size=c.batch_size,
                seed_of=seed_main,
            )
            if s > first
            else []
        )
        row, rows, table = evaluate_checkpoint(ctx, model, step=s)
        row = {
            "step": s,
            "train_loss": float(np.mean(losses)) if losses else None,
            "val_loss": fixed_loss(
                model,
                val,
                ctx.schedule,
                seed=seed_of(c.seed, "val") % (2**63),
                batch_size=c.sample_batch_size,
            ),
            **{k: v for k, v in row.items() if k != "step"},
        }
        history.append(row)
        tables[str(s)] = table
        rd.write_csv(f"samples/step-{s}.csv", rows)
        rd.write_csv("metrics.csv", history)
        save_checkpoint(
            ckpt_root,
            s,
            model_state=model.state_dict(),
            optimizer=opt,
            extra={"fingerprint": fp, "history": history, "tables": tables},
            total_limit=2,
        )
        start = s
        timing[f"step-{s}"] = time.perf_counter() - t0
        rd.write_json("timing.json", timing)
        bar.update(1)
        bar.set_postfix(true_rate=f"{row['true_rate']:.3f}", loss=f"{row['val_loss']:.4f}")
    bar.close()
    t0 = time.perf_counter()
    recursive = run_recursive(ctx, rd, timing=timing)
    timing["recursive"] = timing.get("recursive", 0.0) + time.perf_counter() - t0
    summary = write_results(rd, c, history, tables, recursive)
    rd.write_json("timing.json", timing)
    return Outcome(
        result=summary,
        value=ModesResult(
            config=c,
            metrics=history,
            recursive=recursive,
            summary=summary,
            out_dir=rd.root,
            seconds=timing,
        ),
    )


#: A ``modes`` run as the shared runner executes it.
EXPERIMENT = Experiment(name="modes", body=_body, checkpoints="checkpoints", extra="modes")


def _read_timing(rd: RunDir) -> dict[str, float]:
    if rd.path("timing.json").is_file():
        try:
            t = rd.read_json("timing.json")
            return {str(k): float(v) for k, v in t.items()} if isinstance(t, dict) else {}
        except (OSError, ValueError):
            return {}
    return {}
