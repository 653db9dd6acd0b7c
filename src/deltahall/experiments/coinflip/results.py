"""Reading coin-flip run folders back: the one module of the experiment that does.

A run folder (``deltahall coinflip run``, see :mod:`.train`)::

    manifest.json      resolved config, fingerprint, seed, versions
    metrics.csv        one row per epoch
    reference.json     what the exact truth scores
    predictions.csv    the final model on every distinct validation coin set
    timing.json        seconds per epoch (kept out of the CSV: reruns give identical CSVs)
    result.json        config, final epoch, reference (written once the run is finished)
    checkpoints/       the last epoch's checkpoint

A sweep folder (``deltahall coinflip sweep``, see :mod:`.sweep`) holds one run folder per run
under ``runs/<obj>_N<n>_M<m>_r<round>/`` beside ``sweep_timing.json`` (wall time per session),
``runs.csv`` and ``correlations.csv`` (:func:`summarize_sweep`) and ``result.json``.
:mod:`.sweep` asks here which runs are finished and how long earlier sessions took;
:mod:`.report` gets every run from :func:`load_runs` and the tables from :func:`summarize_sweep`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from deltahall._validation import BadInput
from deltahall.experiments.coinflip.config import CoinFlipConfig
from deltahall.io import RunDir
from deltahall.io.rundir import read_csv, read_run_json

__all__ = [
    "CORRELATION_PAIRS",
    "is_finished",
    "load_runs",
    "read_epoch_timing",
    "read_sweep_timing",
    "summarize_sweep",
]

#: (loss column, probability column) pairs correlated over epochs.
CORRELATION_PAIRS: tuple[tuple[str, str], ...] = (
    ("train_loss", "cp_est"),
    ("train_loss", "cp_ceil"),
)
#: The sweep's wall time per session.
SWEEP_TIMING = "sweep_timing.json"


def is_finished(run_dir: str | Path) -> bool:
    """Whether the run in ``run_dir`` finished (its ``result.json`` is written last)."""
    return (Path(run_dir) / "result.json").is_file()


def read_epoch_timing(run_dir: str | Path) -> dict[str, float]:
    """``timing.json`` of a run: epoch (as a string) -> seconds; ``{}`` before the first epoch."""
    timing: dict[str, float] = read_run_json(run_dir, "timing.json", missing_ok=True)
    return timing


def read_sweep_timing(sweep_dir: str | Path) -> dict[str, Any]:
    """``sweep_timing.json``: ``{"sessions": [...], "total_wall_seconds": ...}``; no sessions
    before the first one has finished."""
    timing: dict[str, Any] = read_run_json(sweep_dir, SWEEP_TIMING, missing_ok=True)
    timing.setdefault("sessions", [])
    return timing


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
        if not is_finished(d):
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
