"""Reading a run directory back: metrics, losses, the figures drawn from them, the result object.

:func:`save_figures` reads the run directory and hands rows and arrays to
:mod:`deltahall.plotting.t2i`, which never reads files itself. It lives here rather than in
:mod:`.report` because the pipeline draws the figures at the end of a run and the report runs
the pipeline: here neither module imports the other.

Files of a finished run (see ``docs/t2i.md``)::

    manifest.json          resolved config, fingerprint, seed, versions
    metrics.csv            one row per checkpoint x prompt
    loss.csv               training loss of every optimizer step
    result.json            headline numbers and timings
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

import numpy as np
import numpy.typing as npt

from deltahall.io.rundir import read_csv

#: Threshold percentiles of the rate-vs-percentile figure.
PERCENTILE_GRID = np.linspace(0.0, 50.0, 51)

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


def real_floor(holdout_coverage: npt.ArrayLike) -> float:
    """Mean over classes of the held-out real fraction outside its own class's region.

    >>> real_floor([0.75, 0.5])
    0.375
    """
    return float(np.mean(1.0 - np.asarray(holdout_coverage, dtype=np.float64)))


def save_figures(run_dir: str | Path) -> list[Path]:
    """Draw Figures 5-7 (and rate vs percentile) of a run directory into ``figures/`` (PNG + SVG).

    Reads ``metrics.csv``, ``loss.csv``, ``manifest.json`` (class names),
    ``detector.safetensors`` and the last step's ``samples/step-*.npz`` (the rate-vs-percentile
    figure is skipped when that file is missing).

    Returns
    -------
    list of Path
        The PNG files written.

    Raises
    ------
    FileNotFoundError
        If ``run_dir`` has no ``metrics.csv``, ``manifest.json`` or ``detector.safetensors``.
    """
    import json

    from deltahall.detectors import HCDRDetector
    from deltahall.io import RunDir
    from deltahall.plotting import pyplot
    from deltahall.plotting.t2i import figure5, figure6, figure7, rate_vs_percentile

    root = Path(run_dir)
    metrics, losses = read_metrics(root), read_losses(root)
    for name in ("manifest.json", "detector.safetensors"):
        if not (root / name).is_file():
            raise FileNotFoundError(f"no {name} in {root}; is it a t2i run directory?")
    classes = [str(c) for c in json.loads((root / "manifest.json").read_text(encoding="utf-8"))["config"]["classes"]]
    det = HCDRDetector.load(root / "detector.safetensors")
    floor = real_floor(det.holdout_coverage_)
    steps = sorted({int(r["step"]) for r in metrics})
    figures = [
        ("fig5_rate_and_loss", lambda: figure5(metrics, losses, floor=floor)),
        ("fig6_rate_per_prompt", lambda: figure6(metrics, floor=floor)),
        ("fig7_calibration", lambda: figure7(det.calibration_scores_, det.thresholds_, class_names=classes,
                                             percentile=det.percentile)),
    ]
    npz = root / "samples" / f"step-{steps[-1]:06d}.npz" if steps else None
    if npz is not None and npz.is_file():
        prompts = {int(r["prompt_index"]): str(r["prompt"]) for r in metrics}
        with np.load(npz, allow_pickle=False) as f:
            curves = {prompts[p]: det.rate_curve(f[f"embeddings_p{p}"].astype(np.float64), PERCENTILE_GRID)
                      for p in sorted(prompts) if f"embeddings_p{p}" in f}
        figures.append(("rate_vs_percentile", lambda: rate_vs_percentile(
            PERCENTILE_GRID, curves, threshold_percentile=det.percentile, step=steps[-1])))
    rd, plt = RunDir(root), pyplot()
    out: list[Path] = []
    for name, draw in figures:
        fig = draw()
        out.append(rd.save_figure(fig, name)[0])
        plt.close(fig)
    return out


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
