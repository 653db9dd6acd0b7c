"""Per-epoch evaluation: losses, distance to the Bayes-optimal estimate, conditional
probabilities and δ-hallucination rates (paper Definition 4.2, Theorem 5.1, Figure 3).

The model is a deterministic function of the coin *set* in eval mode, so it is evaluated
once on every distinct set (at most C(2N, N) = 252 at N = 5) in a single forward pass, and
per-sample metrics are gathered from that: validating 4000 samples costs one small batch,
not 4000 batch-1 passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from deltahall.experiments.coinflip.config import CoinFlipConfig
from deltahall.experiments.coinflip.data import CoinFlipData
from deltahall.experiments.coinflip.truth import hallucination_rate, pmf_at

FloatArray = npt.NDArray[np.float64]

#: Estimate kinds scored every epoch: the real-valued output (``raw``; for ce the mean of the
#: predicted distribution), its rounding, its ceiling (the authors' choice), and the run's
#: integer estimate ``est`` (round for mse, ceil with the authors' bug, argmax for ce).
KINDS: tuple[str, ...] = ("raw", "round", "ceil", "est")


@dataclass(frozen=True)
class SetPredictions:
    """Model outputs on every distinct coin set: real-valued ``raw``, the integer estimates
    of each kind, and (ce only) the predicted log-probabilities over 0..N."""

    raw: FloatArray
    estimates: dict[str, FloatArray]
    log_probs: FloatArray | None


def predict_sets(model: Any, sets: npt.NDArray[np.int64], config: CoinFlipConfig) -> SetPredictions:
    """One forward pass over ``sets`` (U, N) in eval mode; the model's mode is restored."""
    import torch

    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(torch.from_numpy(sets)).to(torch.float64)
    model.train(was_training)
    log_probs = None
    if config.objective == "mse":
        raw = out.numpy()
        est = np.ceil(raw) if "ceil" in config.authors_bugs else np.floor(raw + 0.5)
    else:
        lp = torch.log_softmax(out, dim=-1).numpy()
        log_probs = lp
        raw = np.exp(lp) @ np.arange(config.n + 1, dtype=np.float64)
        est = np.argmax(lp, axis=1).astype(np.float64)
    estimates = {"raw": raw, "round": np.floor(raw + 0.5), "ceil": np.ceil(raw), "est": est}
    return SetPredictions(raw=raw, estimates=estimates, log_probs=log_probs)


def _loss(
    pred: SetPredictions, set_idx: npt.NDArray[np.int64], y: npt.NDArray[np.int64], objective: str
) -> float:
    if objective == "mse":
        return float(np.mean((pred.raw[set_idx] - y) ** 2))
    assert pred.log_probs is not None  # internal invariant: ce predictions carry log-probs
    return float(-np.mean(pred.log_probs[set_idx, y]))


def epoch_metrics(
    pred: SetPredictions, data: CoinFlipData, config: CoinFlipConfig
) -> dict[str, float]:
    """Train/validation metrics of one epoch (train metrics in eval mode, no dropout).

    Returns
    -------
    dict
        ``train_loss`` (the objective), ``train_mse``, ``train_excess_mse`` (train MSE minus the
        exact Bayes floor on the same inputs), ``val_loss``, ``val_mse``, ``val_mse_est``
        (squared error of the integer estimate), ``val_excess_mse``, ``dist_bayes`` (RMS distance
        of the raw output to E[Y|X]), and for each kind in :data:`KINDS` the average
        conditional probability ``cp_<kind>`` = mean P(Y = estimate | X) and the
        δ-hallucination rate ``hall_<kind>_d<δ>`` = fraction with P(Y = estimate | X) <= δ.
    """
    tr, va = data.train_set, data.val_set
    out: dict[str, float] = {
        "train_loss": _loss(pred, tr, data.train_y, config.objective),
        "train_mse": float(np.mean((pred.raw[tr] - data.train_y) ** 2)),
    }
    out["train_excess_mse"] = out["train_mse"] - float(np.mean(data.var[tr]))
    out["val_loss"] = _loss(pred, va, data.val_y, config.objective)
    out["val_mse"] = float(np.mean((pred.raw[va] - data.val_y) ** 2))
    out["val_mse_est"] = float(np.mean((pred.estimates["est"][va] - data.val_y) ** 2))
    out["val_excess_mse"] = out["val_mse"] - float(np.mean(data.var[va]))
    out["dist_bayes"] = float(np.sqrt(np.mean((pred.raw[va] - data.mean[va]) ** 2)))
    for kind in KINDS:
        cp = pmf_at(data.pmf, pred.estimates[kind])[va]
        out[f"cp_{kind}"] = float(np.mean(cp))
        for d in config.deltas:
            out[f"hall_{kind}_d{d:g}"] = hallucination_rate(cp, d)
    return out


def reference_metrics(data: CoinFlipData, config: CoinFlipConfig) -> dict[str, float]:
    """What the exact truth scores on the same validation inputs (constant over epochs).

    ``bayes_mse_val`` / ``bayes_mse_train``: the irreducible MSE, mean Var(Y|X);
    ``cp_bayes_round``: mean P(Y = round(E[Y|X]) | X), what a perfect squared-loss model scores
    after rounding; ``cp_bayes_ceil`` likewise with ceil; ``cp_bayes_raw``: the raw E[Y|X]
    (non-zero only where E[Y|X] is an integer); ``cp_mode``: mean max_k P(Y = k | X), the best any
    estimator can score; ``mse_mode``: squared error of the mode; plus their hallucination rates.
    """
    va = data.val_set
    mode = np.argmax(data.pmf, axis=1).astype(np.float64)
    cands = {
        "bayes_raw": data.mean,
        "bayes_round": np.floor(data.mean + 0.5),
        "bayes_ceil": np.ceil(data.mean),
        "mode": mode,
    }
    out: dict[str, float] = {
        "bayes_mse_val": float(np.mean(data.var[va])),
        "bayes_mse_train": float(np.mean(data.var[data.train_set])),
        "mse_mode": float(np.mean((mode[va] - data.val_y) ** 2)),
        "mse_bayes_round": float(np.mean((cands["bayes_round"][va] - data.val_y) ** 2)),
    }
    for name, est in cands.items():
        cp = pmf_at(data.pmf, est)[va]
        out[f"cp_{name}"] = float(np.mean(cp))
        for d in config.deltas:
            out[f"hall_{name}_d{d:g}"] = hallucination_rate(cp, d)
    return out


def metric_columns(config: CoinFlipConfig) -> list[str]:
    """CSV columns of ``metrics.csv`` in order (every one is written every epoch)."""
    cols = [
        "epoch",
        "train_loss",
        "train_mse",
        "train_excess_mse",
        "train_running_loss",
        "val_loss",
        "val_mse",
        "val_mse_est",
        "val_excess_mse",
        "dist_bayes",
    ]
    for kind in KINDS:
        cols.append(f"cp_{kind}")
        cols.extend(f"hall_{kind}_d{d:g}" for d in config.deltas)
    return cols
