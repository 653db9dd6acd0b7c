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
    from deltahall.experiments.t2i.results import final_samples, read_manifest
    from deltahall.measure.compare import baselines_on_measurement
    from deltahall.measure.selection import select_candidates

    cfg = read_manifest(run_dir)["config"]
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
