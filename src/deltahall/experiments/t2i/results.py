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
    instrument.json        the instrument fitted on the real embeddings: split, density
                           models, per rule the calibration scores, thresholds and floor
    measure.json           the final checkpoint through the instrument: both rules, selection,
                           baselines (see :mod:`.final`)
    samples/step-*.csv|npz per-sample scores, embeddings, log-densities, rate-vs-alpha curves
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

from deltahall.io.rundir import read_csv, read_run_json

_INT = ("step", "prompt_index", "K")
_STR = ("prompt", "calibration")


def _cell(key: str, v: str) -> Any:
    if key in _INT or key.startswith("n_outside"):
        return int(v)
    if key.startswith(("mean_embedding_inside", "mean_image_inside")):
        if v not in ("True", "False"):
            raise ValueError(f"metrics.csv column {key!r} must be True/False; got {v!r}.")
        return v == "True"
    if key in _STR:
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


def read_instrument(run_dir: str | Path) -> dict[str, Any]:
    """``instrument.json`` of a run (see :meth:`.instrument.Instrument.summary`)."""
    import json

    path = Path(run_dir) / "instrument.json"
    if not path.is_file():
        raise FileNotFoundError(f"no instrument.json in {run_dir}; is it a t2i run directory?")
    out: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return out


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    """``manifest.json`` of a run (resolved config, fingerprint, seed, versions)."""
    out: dict[str, Any] = read_run_json(run_dir, "manifest.json")
    return out


def read_result(run_dir: str | Path) -> dict[str, Any]:
    """``result.json`` of a run (headline numbers and timings); ``{}`` before the run finished."""
    out: dict[str, Any] = read_run_json(run_dir, "result.json", missing_ok=True)
    return out


def read_measure(run_dir: str | Path) -> dict[str, Any]:
    """``measure.json`` of a run (see :mod:`.final`); ``{}`` when the run wrote none."""
    out: dict[str, Any] = read_run_json(run_dir, "measure.json", missing_ok=True)
    return out


def final_samples(
    run_dir: str | Path, prompts: list[str]
) -> tuple[int, npt.NDArray[np.float64], list[str]]:
    """The last step, its generated embeddings ``(n, d)`` and the prompt of each row.

    Raises
    ------
    FileNotFoundError
        If ``run_dir`` has no ``samples/step-*.npz``.
    """
    files = sorted((Path(run_dir) / "samples").glob("step-*.npz"))
    if not files:
        raise FileNotFoundError(f"no samples/step-*.npz in {run_dir}; is it a t2i run directory?")
    step = int(files[-1].stem.split("-")[1])
    embs, names = [], []
    with np.load(files[-1], allow_pickle=False) as f:
        for p, prompt in enumerate(prompts):
            E = f[f"embeddings_p{p}"].astype(np.float64)
            embs.append(E)
            names += [prompt] * E.shape[0]
    return step, np.vstack(embs), names


def save_figures(run_dir: str | Path | Any) -> list[Path]:
    """Draw Figures 5-7 (and rate vs α) of a run directory into ``figures/`` (PNG + SVG).

    Reads ``metrics.csv``, ``loss.csv``, ``instrument.json`` and the last step's
    ``samples/step-*.npz`` (the rate-vs-α figure is skipped when that file is missing), draws
    every figure, then writes them (atomically) through ``run_dir`` when it is a
    :class:`~deltahall.io.rundir.RunDir` (as ``t2i report`` gives it), else a new one.

    Returns
    -------
    list of Path
        The PNG files written.

    Raises
    ------
    FileNotFoundError
        If ``run_dir`` has no ``metrics.csv`` or ``instrument.json``.
    """
    from deltahall.io import RunDir
    from deltahall.measure.calibration import ALPHA_GRID
    from deltahall.plotting import pyplot
    from deltahall.plotting.t2i import figure5, figure6, figure7, rate_vs_percentile

    rd = run_dir if isinstance(run_dir, RunDir) else None
    root = rd.root if rd is not None else Path(run_dir)
    metrics, losses = read_metrics(root), read_losses(root)
    inst = read_instrument(root)
    main, other = inst["rules"]
    rule = inst["per_rule"][main]
    fl = rule["floor"]
    floor, floor_ci = float(fl["rate"]), (float(fl["ci"][0]), float(fl["ci"][1]))
    steps = sorted({int(r["step"]) for r in metrics})
    thresholds = [float("nan") if t is None else float(t) for t in rule["thresholds"]]
    figures = [
        (
            "fig5_rate_and_loss",
            lambda: figure5(
                metrics, losses, floor=floor, floor_ci=floor_ci, rule=main, beside=other
            ),
        ),
        (
            "fig6_rate_per_prompt",
            lambda: figure6(metrics, floor=floor, floor_ci=floor_ci, rule=main, beside=other),
        ),
        (
            "fig7_calibration",
            lambda: figure7(
                rule["calibration_scores"],
                thresholds,
                class_names=inst["classes"],
                percentile=100.0 * float(inst["alpha"]),
                rule=main,
            ),
        ),
    ]
    npz = root / "samples" / f"step-{steps[-1]:06d}.npz" if steps else None
    if npz is not None and npz.is_file():
        prompts = {int(r["prompt_index"]): str(r["prompt"]) for r in metrics}
        with np.load(npz, allow_pickle=False) as f:
            curves = {
                prompts[p]: f[f"curve_rate_p{p}"]
                for p in sorted(prompts)
                if f"curve_rate_p{p}" in f
            }
            if "curve_floor" in f:
                curves["held-out real images (the floor)"] = f["curve_floor"]
        pct = 100.0 * np.asarray(ALPHA_GRID)
        if curves:
            figures.append(
                (
                    "rate_vs_percentile",
                    lambda: rate_vs_percentile(
                        pct,
                        curves,
                        threshold_percentile=100.0 * float(inst["alpha"]),
                        step=steps[-1],
                        rule=main,
                    ),
                )
            )
    plt = pyplot()
    drawn = [(name, draw()) for name, draw in figures]  # everything drawn before the first write
    rd = rd if rd is not None else RunDir(root)
    out: list[Path] = []
    for name, fig in drawn:
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
        The fitted instrument's ``instrument.json``.
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
