"""Reading a run directory back: metrics, losses, the result object.

Files of a finished run (see ``docs/t2i.md``)::

    manifest.json          resolved config, fingerprint, seed, versions
    metrics.csv            one row per checkpoint x prompt
    loss.csv               training loss of every optimizer step
    summary.json           headline numbers and timings
    detector.safetensors   the fitted HCDR detector
    samples/step-*.csv|npz per-sample scores and embeddings
    grids/step-*_p*.png    samples flagged as hallucinations
    figures/fig5_*.png ... Figures 5-7
    checkpoint-*/          the last ``checkpoints_total_limit`` checkpoints
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deltahall.io.rundir import read_csv

_INT = ("step", "prompt_index", "n_outside", "K")
_BOOL = ("mean_embedding_inside", "mean_image_inside")


def _cell(key: str, v: str) -> Any:
    if key in _INT:
        return int(v)
    if key in _BOOL:
        if v not in ("True", "False"):
            raise ValueError(f"metrics.csv column {key!r} must be True/False; got {v!r}.")
        return v == "True"
    if key == "prompt":
        return v
    return float(v) if v != "" else math.nan


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """``metrics.csv`` with typed cells (ints, bools, floats; NaN for an empty loss)."""
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no metrics.csv in {run_dir}; is it a t2i run directory?")
    return [{k: _cell(k, v) for k, v in r.items()} for r in read_csv(path)]


def read_losses(run_dir: str | Path) -> list[dict[str, Any]]:
    """``loss.csv`` as ``[{"step": int, "loss": float}, ...]`` (empty if absent)."""
    path = Path(run_dir) / "loss.csv"
    if not path.is_file():
        return []
    return [{"step": int(r["step"]), "loss": float(r["loss"])} for r in read_csv(path)]


@dataclass(frozen=True)
class T2IResult:
    """What :func:`deltahall.experiments.t2i.run` returns.

    Attributes
    ----------
    run_dir : Path
    metrics : list of dict
        Rows of ``metrics.csv`` (per checkpoint and prompt).
    losses : list of dict
        Rows of ``loss.csv`` (per optimizer step).
    detector_path : Path
    figures : list of Path
    seconds : dict
        Wall time of the whole run and of training / evaluation / setup.
    """

    run_dir: Path
    metrics: list[dict[str, Any]]
    losses: list[dict[str, Any]]
    detector_path: Path
    figures: list[Path] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def steps(self) -> list[int]:
        """Evaluated steps, ascending."""
        return sorted({int(r["step"]) for r in self.metrics})

    def rates(self) -> dict[str, list[float]]:
        """Hallucination rate per prompt, in the order of :attr:`steps`."""
        out: dict[str, list[float]] = {}
        for r in sorted(self.metrics, key=lambda r: int(r["step"])):
            out.setdefault(str(r["prompt"]), []).append(float(r["rate"]))
        return out

    def mean_inside(self) -> dict[str, list[bool]]:
        """Whether the mean embedding is inside the HCDR, per prompt, in the order of :attr:`steps`."""
        out: dict[str, list[bool]] = {}
        for r in sorted(self.metrics, key=lambda r: int(r["step"])):
            out.setdefault(str(r["prompt"]), []).append(bool(r["mean_embedding_inside"]))
        return out
