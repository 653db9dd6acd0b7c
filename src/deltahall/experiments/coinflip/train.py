"""One coin-flip training run: ``run(config) -> CoinFlipResult`` (paper Section 7.1).

Every epoch: train on shuffled minibatches, then evaluate on every distinct coin set in one
forward pass (see :mod:`.evaluate`), append a row to ``metrics.csv`` (rewritten atomically) and
save ``checkpoints/checkpoint-{epoch}``. A killed run restarted with
``run.resume_from_checkpoint="latest"`` continues from its last finished epoch and ends with the same numbers as an uninterrupted run
(same machine, same thread count): the checkpoint holds the weights, the optimizer state and
the torch generator that drives both the data order and dropout.

The run lifecycle (acceptance, resume, manifest, threads, ``result.json``) is
:func:`deltahall.experiments._run.execute`; this module supplies the body (:data:`EXPERIMENT`).
Files in ``config.run.out_dir`` (none when it is ``None``): ``manifest.json``, ``metrics.csv``, ``reference.json`` (what the exact
truth scores), ``predictions.csv`` (the final model on every distinct validation coin set),
``timing.json`` (seconds per epoch; kept out of the CSV so that reruns give identical CSVs),
``result.json`` and ``checkpoints/``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deltahall.experiments._checkpoint import load_checkpoint, save_checkpoint
from deltahall.experiments._run import Experiment, OpenRun, Outcome, execute
from deltahall.experiments.coinflip.config import CoinFlipConfig
from deltahall.experiments.coinflip.data import CoinFlipData, derive_seeds, make_dataset
from deltahall.experiments.coinflip.evaluate import (
    epoch_metrics,
    metric_columns,
    predict_sets,
    reference_metrics,
)
from deltahall.experiments.coinflip.model import build_model
from deltahall.experiments.coinflip.results import read_epoch_timing
from deltahall.experiments.coinflip.truth import pmf_at
from deltahall.io import RunDir

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CoinFlipResult:
    """Outcome of one run.

    Attributes
    ----------
    config : CoinFlipConfig
    history : list of dict
        One row per epoch (the columns of ``metrics.csv``).
    reference : dict
        :func:`~deltahall.experiments.coinflip.evaluate.reference_metrics` (Bayes floor etc.).
    predictions : list of dict
        The final model on every distinct validation coin set.
    epoch_seconds : list of float
        Wall time of each epoch run in this process (resumed epochs are not re-timed).
    out_dir : Path or None
    """

    config: CoinFlipConfig
    history: list[dict[str, float]]
    reference: dict[str, float]
    predictions: list[dict[str, Any]]
    epoch_seconds: list[float] = field(default_factory=list)
    out_dir: Path | None = None

    @property
    def final(self) -> dict[str, float]:
        """The last epoch's row."""
        return self.history[-1]


def run(config: CoinFlipConfig) -> CoinFlipResult:
    """Train and evaluate one model of the coin-flip experiment.

    Parameters
    ----------
    config : CoinFlipConfig
        ``config.run.out_dir`` is the run directory (``None`` keeps everything in memory);
        ``config.run.resume_from_checkpoint`` is ``"latest"`` (the newest checkpoint in
        ``out_dir/checkpoints``; a fresh start if there is no run yet) or a checkpoint folder.

    Raises
    ------
    ValueError
        If ``out_dir`` holds a run and no resume was asked for, or the run was started with
        other settings (the changed keys are named).
    FileNotFoundError
        If an explicit checkpoint folder holds no checkpoint.
    """
    if not isinstance(config, CoinFlipConfig):
        raise TypeError(f"`config` must be a CoinFlipConfig; got {type(config).__name__}.")
    result: CoinFlipResult = execute(EXPERIMENT, config)
    return result


def _body(config: CoinFlipConfig, opened: OpenRun) -> Outcome:
    import torch
    from tqdm.auto import tqdm

    progress = config.run.progress
    data_rng, init_seed, order_seed = derive_seeds(config.seed)
    data = make_dataset(config, data_rng)
    model = build_model(config, init_seed)
    opt = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True
    )
    gen = torch.Generator().manual_seed(order_seed)
    history: list[dict[str, float]] = []
    rd: RunDir | None = None
    ckpt_root: Path | None = None
    fingerprint: dict[str, Any] = {}
    start = 0
    if opened.folder is not None:
        rd, fingerprint = opened.folder, opened.fingerprint
        ckpt_root = rd.root / "checkpoints"
        if opened.checkpoint is not None:
            state = load_checkpoint(opened.checkpoint, model=model, optimizer=opt, generator=gen)
            history = [dict(r) for r in state["extra"]["history"]]
            start = int(state["extra"]["epoch"])
            logger.info("resumed %s at epoch %d", opened.checkpoint, start)
        rd.write_json("reference.json", reference_metrics(data, config))

    sets = torch.from_numpy(data.sets)
    train_set = torch.from_numpy(data.train_set)
    y_train = torch.from_numpy(data.train_y)
    columns = metric_columns(config)
    seconds: list[float] = []
    bar = tqdm(
        total=config.epochs,
        initial=start,
        disable=not progress,
        leave=False,
        desc=f"coinflip N={config.n} M={config.m} {config.objective} seed={config.seed}",
    )
    model.train()
    with torch.random.fork_rng(devices=[]):
        for epoch in range(start, config.epochs):
            t0 = time.perf_counter()
            # Dropout draws from the global RNG: seed it from our generator each epoch so the
            # whole epoch is a function of the checkpointed generator state.
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=gen)))
            running = _train_epoch(model, opt, sets, train_set, y_train, config, gen)
            row: dict[str, float] = {"epoch": epoch + 1, "train_running_loss": running}
            row.update(epoch_metrics(predict_sets(model, data.sets, config), data, config))
            history.append({c: row[c] for c in columns})
            seconds.append(time.perf_counter() - t0)
            if rd is not None:
                rd.write_csv("metrics.csv", history, columns)
                save_checkpoint(
                    ckpt_root,  # type: ignore[arg-type]
                    epoch + 1,
                    model_state=model.state_dict(),
                    optimizer=opt,
                    generator=gen,
                    extra={"fingerprint": fingerprint, "epoch": epoch + 1, "history": history},
                    total_limit=1,
                )
                _append_timing(rd, epoch + 1, seconds[-1])
            bar.update(1)
            bar.set_postfix(_postfix(row, config))
    bar.close()
    pred = predict_sets(model, data.sets, config)
    predictions = _prediction_rows(pred, data)
    reference = reference_metrics(data, config)
    if rd is not None:
        rd.write_csv("predictions.csv", predictions)
    return Outcome(
        result={"config": config, "final": history[-1], "reference": reference} if rd else None,
        value=CoinFlipResult(
            config, history, reference, predictions, seconds, rd.root if rd else None
        ),
    )


#: The coin-flip run as the shared runner executes it (in memory when ``run.out_dir`` is unset).
EXPERIMENT = Experiment(
    name="coinflip",
    body=_body,
    checkpoints="checkpoints",
    extra="coinflip",
    folder_optional=True,
)


def _train_epoch(
    model: Any, opt: Any, sets: Any, set_idx: Any, y: Any, config: CoinFlipConfig, gen: Any
) -> float:
    """One pass over shuffled minibatches; returns the running mean of minibatch losses.

    Without dropout the model is a deterministic function of the coin set, so a minibatch's
    loss is computed from one forward pass per *distinct* set in it, weighted by how often
    it occurs (:func:`batch_loss` with ``grouped=True``): the same loss and gradient as the
    per-sample sum, up to floating-point summation order, at a fraction of the cost
    (a batch of 128 holds at most 6 distinct sets at N = 2). With dropout every sample gets
    its own forward pass, as in the authors' code.
    """
    import torch

    grouped = config.dropout == 0.0
    n = set_idx.shape[0]
    perm = torch.randperm(n, generator=gen)
    total = 0.0
    for i in range(0, n, config.batch_size):
        idx = perm[i : i + config.batch_size]
        opt.zero_grad(set_to_none=True)
        loss = batch_loss(
            model, sets, set_idx[idx], y[idx], config.objective, config.n, grouped=grouped
        )
        loss.backward()
        opt.step()
        total += float(loss.detach()) * idx.shape[0]
    return total / n


def batch_loss(
    model: Any, sets: Any, set_idx: Any, y: Any, objective: str, n: int, *, grouped: bool
) -> Any:
    """Mean loss of a minibatch given as indices ``set_idx`` (B,) into ``sets`` (U, N).

    ``grouped=True`` evaluates each distinct set once:
    :math:`\\frac1B\\sum_i (f(x_i) - y_i)^2 = \\frac1B\\sum_u [c_u (f(u) - \\bar y_u)^2 + \\sum_{i \\in u} (y_i - \\bar y_u)^2]`
    for mse and :math:`-\\frac1B\\sum_u \\sum_k c_{uk} \\log p_k(u)` for ce; exact only
    when the forward pass is deterministic (no dropout).
    """
    import torch

    b = set_idx.shape[0]
    if not grouped:
        out = model(sets[set_idx])
        if objective == "mse":
            return torch.mean((out - y.to(out.dtype)) ** 2)
        return torch.nn.functional.cross_entropy(out, y)
    uniq, inv = torch.unique(set_idx, return_inverse=True)
    out = model(sets[uniq])
    if objective == "mse":
        yf = y.to(torch.float64)
        cnt = torch.bincount(inv, minlength=uniq.shape[0]).to(torch.float64)
        ysum = torch.bincount(inv, weights=yf, minlength=uniq.shape[0])
        ybar = ysum / cnt
        within = float((yf**2).sum() - (ysum**2 / cnt).sum())
        sq = (cnt.to(out.dtype) * (out - ybar.to(out.dtype)) ** 2).sum()
        return (sq + within) / b
    counts = torch.zeros(uniq.shape[0], n + 1, dtype=out.dtype)
    counts.index_put_((inv, y), torch.ones(b, dtype=out.dtype), accumulate=True)
    return -(counts * torch.log_softmax(out, dim=-1)).sum() / b


def _postfix(row: dict[str, float], config: CoinFlipConfig) -> dict[str, str]:
    d = config.deltas[0]
    return {
        "train_mse": f"{row['train_mse']:.4f}",
        "val_mse": f"{row['val_mse']:.4f}",
        "dist": f"{row['dist_bayes']:.3f}",
        "cp_est": f"{row['cp_est']:.3f}",
        f"hall@{d:g}": f"{row[f'hall_est_d{d:g}']:.3f}",
    }


def _append_timing(rd: RunDir, epoch: int, seconds: float) -> None:
    timing = {k: v for k, v in read_epoch_timing(rd.root).items() if int(k) < epoch}
    timing[str(epoch)] = seconds
    rd.write_json("timing.json", timing)


def _prediction_rows(pred: Any, data: CoinFlipData) -> list[dict[str, Any]]:
    counts = np.bincount(data.val_set, minlength=len(data.sets))
    cp_est = pmf_at(data.pmf, pred.estimates["est"])
    cp_round = pmf_at(data.pmf, pred.estimates["round"])
    rows = []
    for u in np.flatnonzero(counts):
        rows.append(
            {
                "coins": "-".join(str(int(c)) for c in data.sets[u]),
                "n_val": int(counts[u]),
                "bayes_mean": float(data.mean[u]),
                "bayes_var": float(data.var[u]),
                "raw": float(pred.raw[u]),
                "est": float(pred.estimates["est"][u]),
                "cp_est": float(cp_est[u]),
                "cp_round": float(cp_round[u]),
                "cp_mode": float(data.pmf[u].max()),
            }
        )
    return rows
