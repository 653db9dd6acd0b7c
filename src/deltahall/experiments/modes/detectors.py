"""Detectors scored against the exact truth on the same generated samples.

Four detectors, each a score (larger = more likely a hallucination) on generated samples and on
held-out real samples:

- ``hcdr`` — the instrument (:func:`deltahall.measure.measure_embeddings`) fitted on labelled
  real samples with the components as latent states, split-conformal at α; score ``-p``;
- ``hcdr_percentile`` — the same with the paper's percentile rule (its flags only);
- ``hcdr_density`` — the instrument's own per-state log-density, maximised over states (the
  score its p-values are computed from; unlike a p-value it keeps ranking points beyond the
  calibration range, where every conformal p-value ties at its minimum 1/(m+1));
- ``variance`` — the peer's trajectory variance of x̂₀ over the last sampling steps;
- ``knn`` — the distance to the k-th nearest real sample.

For each: AUROC against the truth; precision and recall at a threshold giving the same
false-flag rate α on held-out real samples; and the peer's headline, the share of true
hallucinations removed at the threshold that keeps ``keep_in_support`` of the truly in-support
generated samples (and, the other way round, the share kept at 95 % removed).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from deltahall.measure import DetectorSettings, measure_embeddings
from deltahall.stats import auroc, detection_scores

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

DETECTORS: tuple[str, ...] = ("hcdr", "hcdr_density", "variance", "knn")


@dataclass(frozen=True)
class Scored:
    """Scores of generated and held-out real samples, and the instrument's outputs."""

    gen: dict[str, FloatArray]
    real: dict[str, FloatArray]
    p_value: FloatArray
    flagged: npt.NDArray[np.bool_]
    flagged_percentile: npt.NDArray[np.bool_]
    floor: Any
    floor_percentile: Any


def instrument(
    ref_x: FloatArray,
    ref_y: npt.NDArray[np.int64],
    points: FloatArray,
    *,
    alpha: float,
    calibration: str,
    seed: int,
) -> Any:
    """The instrument on ``points`` (generated and held-out real rows together).

    Each state's density is one full-covariance Gaussian (``n_components=1``,
    ``covariance_type="full"``): the family the true components belong to, and about 15 times
    faster than the instrument's automatic choice (8 s per call on 25 states). If a later
    version of the instrument no longer takes these two settings, its automatic choice is used
    and a warning says so.
    """
    base: dict[str, Any] = dict(
        alpha=alpha, calibration=calibration, normalize=False, pca_dim=None, seed=seed
    )
    try:
        settings = DetectorSettings(**base, n_components=1, covariance_type="full")
    except TypeError:
        logger.warning(
            "DetectorSettings takes no n_components/covariance_type: using the instrument's automatic choice."
        )
        settings = DetectorSettings(**base)
    return measure_embeddings(ref_x, ref_y, points, settings=settings)


def score_all(
    *,
    ref_x: FloatArray,
    ref_y: npt.NDArray[np.int64],
    holdout_x: FloatArray,
    holdout_var: FloatArray,
    gen_x: FloatArray,
    gen_var: FloatArray,
    alpha: float,
    knn_k: int,
    seed: int,
) -> Scored:
    """Every detector's scores on ``gen_x`` and ``holdout_x`` (data units)."""
    from sklearn.neighbors import NearestNeighbors

    both = np.vstack([gen_x, holdout_x])
    n = gen_x.shape[0]
    conf = instrument(ref_x, ref_y, both, alpha=alpha, calibration="conformal", seed=seed)
    perc = instrument(ref_x, ref_y, both, alpha=alpha, calibration="percentile", seed=seed)
    p = np.asarray(conf.gen_p, dtype=np.float64)
    scores = getattr(conf, "gen_scores", None)
    if scores is None:
        logger.warning(
            "the instrument's Measurement has no gen_scores: hcdr_density falls back to -p."
        )
        dens = -p
    else:
        dens = -np.max(np.asarray(scores, dtype=np.float64), axis=1)
    nn = NearestNeighbors(n_neighbors=knn_k).fit(ref_x)
    dist = nn.kneighbors(both)[0][:, -1]
    flag_c = np.asarray(conf.gen_flagged, dtype=bool)
    flag_p = np.asarray(perc.gen_flagged, dtype=bool)
    return Scored(
        gen={
            "hcdr": -p[:n],
            "hcdr_density": dens[:n],
            "variance": np.asarray(gen_var, dtype=np.float64),
            "knn": dist[:n],
        },
        real={
            "hcdr": -p[n:],
            "hcdr_density": dens[n:],
            "variance": np.asarray(holdout_var, dtype=np.float64),
            "knn": dist[n:],
        },
        p_value=p[:n],
        flagged=flag_c[:n],
        flagged_percentile=flag_p[:n],
        floor=float(np.mean(flag_c[n:])),
        floor_percentile=float(np.mean(flag_p[n:])),
    )


def _nan_to_none(v: float) -> float | None:
    return None if not np.isfinite(v) else float(v)


def evaluate(
    scored: Scored, truth: npt.NDArray[np.bool_], *, alpha: float, keep_in_support: float
) -> dict[str, Any]:
    """Per detector: AUROC, precision/recall at real false-flag rate α, the peer's headline numbers."""
    out: dict[str, Any] = {}
    t = np.asarray(truth, dtype=bool)
    for name in DETECTORS:
        g, r = scored.gen[name], scored.real[name]
        thr = float(np.quantile(r, 1.0 - alpha, method="higher"))
        flags = g > thr
        ds = detection_scores(flags, t)
        row: dict[str, Any] = {
            "auroc": _nan_to_none(auroc(g, t)),
            "threshold": thr,
            "real_false_flag": float(np.mean(r > thr)),
            "rate": float(np.mean(flags)),
            "precision": _nan_to_none(ds.precision),
            "recall": _nan_to_none(ds.recall),
            "false_flag_in_support": _nan_to_none(ds.false_flag_rate),
        }
        row.update(headline(g, t, keep_in_support=keep_in_support))
        out[name] = row
    for name, flags in (
        ("hcdr_conformal_flags", scored.flagged),
        ("hcdr_percentile_flags", scored.flagged_percentile),
    ):
        ds = detection_scores(flags, t)
        out[name] = {
            "rate": float(np.mean(flags)),
            "precision": _nan_to_none(ds.precision),
            "recall": _nan_to_none(ds.recall),
            "false_flag_in_support": _nan_to_none(ds.false_flag_rate),
        }
    out["hcdr_conformal_flags"]["real_false_flag"] = scored.floor
    out["hcdr_percentile_flags"]["real_false_flag"] = scored.floor_percentile
    return out


def headline(
    score: FloatArray, truth: npt.NDArray[np.bool_], *, keep_in_support: float
) -> dict[str, float | None]:
    """The peer's two numbers for one score (larger = filter out first).

    ``removed_at_keep``: share of true hallucinations removed by the threshold that keeps
    ``keep_in_support`` of the truly in-support samples; ``kept_at_remove95``: share of in-support
    samples kept by the threshold that removes 95 % of the true hallucinations.
    """
    t = np.asarray(truth, dtype=bool)
    if t.all() or not t.any():
        return {"removed_at_keep": None, "kept_at_remove95": None}
    inside, hall = score[~t], score[t]
    thr_keep = float(np.quantile(inside, keep_in_support, method="higher"))
    thr_rm = float(np.quantile(hall, 0.05, method="lower"))
    return {
        "removed_at_keep": float(np.mean(hall > thr_keep)),
        "kept_at_remove95": float(np.mean(inside < thr_rm)),
    }
