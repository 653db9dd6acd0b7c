"""The final checkpoint through the instrument: both rules pooled over prompts, selection, baselines.

Written to ``measure.json`` at the end of a run, from the same fitted instrument and the same
saved sample embeddings as the final rows of ``metrics.csv`` (so its per-prompt rates *are*
those rows'): one set of samples, one rate per rule. It adds what one row per prompt cannot
show: the rate pooled over prompts with its interval and the stratified excess test, the
states the inside samples reach, HCDR-guided selection (keep, per prompt, the samples with a
conformal p-value above α) with its cost in state shares, and the baselines of
:mod:`deltahall.measure.compare` (one Gaussian, shared-covariance Mahalanobis, kNN radius, LOF)
thresholded on the same calibration part at the same α.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)


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


def measure_final(
    run_dir: str | Path, inst: Any, X: npt.NDArray[np.float64], y: npt.NDArray[np.int64]
) -> dict[str, Any]:
    """``measure.json``: per rule the measurement summary of the final step's samples (all prompts),
    then selection and baselines.

    Parameters
    ----------
    run_dir : path
        The run directory (its manifest's prompts and its last ``samples/step-*.npz``).
    inst : Instrument
        The run's fitted instrument (:class:`.instrument.Instrument`).
    X, y : the real embeddings and class indices it was fitted on.
    """
    import json

    from deltahall.measure.compare import baselines_on_measurement
    from deltahall.measure.selection import select_candidates

    cfg = json.loads((Path(run_dir) / "manifest.json").read_text(encoding="utf-8"))["config"]
    step, G, prompts = final_samples(run_dir, [str(p) for p in cfg["prompts"]])
    out: dict[str, Any] = {
        "step": step,
        "rules": list(inst.rules),
        "alpha": inst.alpha,
        "per_rule": {},
    }
    ms = {}
    for rule in inst.rules:
        m = inst.measure(G, prompts, rule)
        ms[rule] = m
        out["per_rule"][rule] = {**m.summary(), "curve": m.curve}
    conf = ms["conformal"]
    sel = select_candidates(
        conf.gen_p,
        conf.prompts,
        conf.gen_nearest,
        conf.gen_flagged,
        states=conf.states,
        reference_sizes=conf.state_sizes["total"],
        mode="hcdr",
        alpha=inst.alpha,
    )
    out["selection"] = {**sel.summary(), "rule": "conformal"}
    base = baselines_on_measurement(conf, X, G, inst.labels)
    pct = ms["percentile"]
    base.insert(
        1,
        {
            "method": "HCDR (percentile)",
            "rate": pct.rate.rate,
            "rate_ci": list(pct.rate.ci),
            "floor": pct.floor.rate,
            "floor_ci": list(pct.floor.ci),
        },
    )
    out["baselines"] = base
    logger.info("final step %d: rate %s", step, {r: round(m.rate.rate, 4) for r, m in ms.items()})
    return out
