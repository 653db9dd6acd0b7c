"""Recursive training (the peer's model-collapse experiment; the paper's HCDR-guided selection).

Every generation is a fresh model trained for ``recursive_train_steps`` steps on
``recursive_n_train`` points (so generations differ only in their data, not their budget).
Generation 0 (shared by every strategy) is trained on real points. For each strategy and each
later generation g, the model of generation g-1 draws ``ceil(recursive_n_train / recursive_keep)``
candidates and a filter keeps ``recursive_n_train`` of them:

- ``none``: the first ``recursive_n_train`` candidates (no filter, same count);
- ``random``: candidates chosen uniformly (the peer's control);
- ``variance``: those with the smallest trajectory variance (the peer's filter);
- ``hcdr``: those with the largest conformal p-value of the instrument fitted on the labelled
  real reference set (HCDR-guided selection).

At generation 1 every strategy filters the same candidates. Each generation's model is evaluated
on K samples with the fixed sampling noise: the true hallucination rate with its Wilson interval,
mode coverage and the total variation distance of the in-support component shares from uniform.
A finished generation is published as ``recursive/<strategy>/gen-<g>.safetensors`` and then its
row ``gen-<g>.json``; a resumed run reuses finished generations.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np

from deltahall.experiments.modes import detectors as det
from deltahall.experiments.modes import truth as tr
from deltahall.experiments.modes.seeding import seed_of
from deltahall.io import RunDir
from deltahall.stats import proportion

logger = logging.getLogger(__name__)


def select(strategy: str, *, x: Any, var: Any, ctx: Any, n_keep: int, g: int) -> Any:
    """Indices of the kept candidates (sorted by the filter's preference, ties by index)."""
    c = ctx.config
    n = x.shape[0]
    if strategy == "none":
        return np.arange(n_keep)
    if strategy == "random":
        rng = np.random.default_rng(seed_of(c.seed, "recursive-random", g))
        return np.sort(rng.choice(n, size=n_keep, replace=False))
    if strategy == "variance":
        return np.argsort(var, kind="stable")[:n_keep]
    m = det.instrument(
        ctx.real.ref_x,
        ctx.real.ref_y,
        x,
        alpha=c.alpha,
        calibration="conformal",
        seed=seed_of(c.seed, "instrument") % (2**31),
    )
    return np.argsort(-np.asarray(m.gen_p, dtype=np.float64), kind="stable")[:n_keep]


def generation_row(ctx: Any, model: Any, *, strategy: str, g: int) -> dict[str, Any]:
    """Evaluate one generation's model against the truth."""
    c = ctx.config
    x, _ = ctx.draw(model, c.num_samples, ("samples",))
    truth = tr.evaluate(c.data, x, c.log_delta)
    p = proportion(int(truth.hallucinated.sum()), c.num_samples)
    covered, tv, _ = tr.coverage(c.data, truth, share=c.coverage_share)
    return {
        "strategy": strategy,
        "generation": g,
        "true_rate": p.rate,
        "true_lo": p.ci[0],
        "true_hi": p.ci[1],
        "covered": covered,
        "n_components": tr.mixture(c.data).n_states,
        "tv_from_uniform": tv,
    }


def run_recursive(ctx: Any, rd: RunDir, *, timing: dict[str, float]) -> list[dict[str, Any]]:
    """Every strategy's generations 0..G-1; returns their rows (generation 0 shared)."""
    from safetensors.torch import load_file

    from deltahall.experiments.modes.model import build_denoiser

    c = ctx.config
    rows: list[dict[str, Any]] = []
    if c.generations == 1:
        return rows
    n_cand = math.ceil(c.recursive_n_train / c.recursive_keep)
    real0, _ = tr.draw(
        c.data, c.recursive_n_train, np.random.default_rng(seed_of(c.seed, "data", "recursive-0"))
    )

    def unit(strategy: str, g: int, prev: Any) -> tuple[Any, dict[str, Any]]:
        name = "recursive/gen-0" if g == 0 else f"recursive/{strategy}/gen-{g}"
        model = build_denoiser(
            ctx.dim,
            width=c.width,
            n_blocks=c.n_blocks,
            tied_blocks=c.tied_blocks,
            seed=seed_of(c.seed, "recursive-init", strategy, g) % (2**63),
        )
        if rd.path(f"{name}.json").is_file() and rd.path(f"{name}.safetensors").is_file():
            model.load_state_dict(load_file(str(rd.path(f"{name}.safetensors"))))
            return model, rd.read_json(f"{name}.json")
        return model, _train_generation(
            ctx,
            rd,
            model,
            prev,
            name=name,
            strategy=strategy,
            g=g,
            n_cand=n_cand,
            real0=real0,
            timing=timing,
        )

    model0, base = unit("", 0, None)
    for strategy in c.strategies:
        rows.append({**base, "strategy": strategy})
        prev = model0
        for g in range(1, c.generations):
            prev, row = unit(strategy, g, prev)
            rows.append(row)
    return rows


def _train_generation(
    ctx: Any,
    rd: RunDir,
    model: Any,
    prev: Any,
    *,
    name: str,
    strategy: str,
    g: int,
    n_cand: int,
    real0: Any,
    timing: dict[str, float],
) -> dict[str, Any]:
    """Draw and filter the training set of generation ``g``, train ``model`` on it, publish it."""
    import torch

    from deltahall.experiments.modes.model import train_steps

    c = ctx.config
    t0 = time.perf_counter()
    if g == 0:
        kept = real0
    else:
        x, var = ctx.draw(
            prev, n_cand, ("candidates", g) if g == 1 else ("candidates", strategy, g)
        )
        keep = select(strategy, x=x, var=var, ctx=ctx, n_keep=c.recursive_n_train, g=g)
        kept = x[keep]
    kept_truth = tr.evaluate(c.data, kept, c.log_delta)
    kept_cov, _, _ = tr.coverage(c.data, kept_truth, share=c.coverage_share)
    data = torch.from_numpy(kept / ctx.real.scale).to(torch.float32)
    opt = torch.optim.Adam(model.parameters(), lr=c.lr)
    train_steps(
        model,
        opt,
        data,
        ctx.schedule,
        first=0,
        last=c.recursive_train_steps,
        batch_size=c.batch_size,
        seed_of=lambda *n: seed_of(c.seed, "recursive", strategy, g, *n),
    )
    row = generation_row(ctx, model, strategy=strategy, g=g)
    row["train_true_rate"] = float(np.mean(kept_truth.hallucinated))
    row["train_covered"] = kept_cov
    rd.write_bytes(f"{name}.safetensors", _safetensors_bytes(model))
    rd.write_json(f"{name}.json", row)
    timing[name] = time.perf_counter() - t0
    rd.write_json("timing.json", timing)
    logger.info("%s: true rate %.4f, covered %d", name, row["true_rate"], row["covered"])
    return row


def _safetensors_bytes(model: Any) -> bytes:
    from safetensors.torch import save

    return bytes(save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}))
