"""``run(config) -> T2IResult``: the whole Section 7.3 experiment for one config.

1. Accept the run (the shared runner, :func:`deltahall.experiments._run.execute`: resume or
   fresh, one fingerprint policy, the accelerator, the manifest written by the main process only
   after acceptance, ``result.json`` once the body returns).
2. Load (or build, for ``digits``) the model; load the training images.
3. Main process: load the embedder, embed the real images, fit the instrument once
   (:mod:`.instrument`, both rules) and write ``instrument.json``.
4. Train, checkpointing and evaluating every ``checkpoint_every`` steps (:mod:`.train`).
5. Main process: the final checkpoint through the instrument (``measure.json``: both rules,
   selection, baselines; :mod:`.final`), Figures 5-7 and ``result.json``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from deltahall.experiments._run import (
    Experiment,
    OpenRun,
    Outcome,
    Pending,
    execute,
    make_accelerator,
)
from deltahall.experiments.t2i.config import TINY_MODEL, T2IConfig
from deltahall.experiments.t2i.results import T2IResult, read_losses, read_metrics
from deltahall.io import RunDir

logger = logging.getLogger(__name__)


def run(config: T2IConfig) -> T2IResult:
    """Run the text-to-image experiment (Section 7.3, Figures 5-7) into ``config.out_dir``.

    Raises
    ------
    ValueError
        If ``out_dir`` holds checkpoints and no resume was asked for, or a resumed run's
        settings differ from the original's.
    FileNotFoundError
        If an explicit ``resume_from_checkpoint`` or the ``data`` folder does not exist.
    """
    result: T2IResult = execute(EXPERIMENT, config)
    return result


def _preflight(config: T2IConfig) -> None:
    from deltahall.experiments.t2i.data import check_sources

    check_sources(config)  # bad data / model specs are refused before anything is written


def _accelerator(config: T2IConfig) -> Any:
    return make_accelerator(
        config.run,
        mixed_precision=str(config.mixed_precision),
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        project_dir=config.run_dir,
    )


def _manifest_extra(config: T2IConfig, pending: Pending, prepared: Any) -> dict[str, Any]:
    return {"preset": config.preset, "num_processes": pending.world.size}


def _body(config: T2IConfig, opened: OpenRun) -> Outcome:
    from deltahall.experiments.t2i.data import load_training_images
    from deltahall.experiments.t2i.modeling import load_components
    from deltahall.experiments.t2i.train import History, train

    t_start = time.perf_counter()
    acc, world = opened.accelerator, opened.world
    rd, resume = opened.rd, opened.checkpoint
    main = world.is_main
    if main and resume is None:
        _clear_outputs(rd.root)
    model = str(config.model)
    if model == TINY_MODEL:
        from deltahall.experiments.t2i.tiny import ensure_tiny_model

        with world.main_first():  # built once, atomically, by the main process; then loaded by all
            texts = [*config.captions, *config.prompts]
            model = str(
                ensure_tiny_model(
                    rd.root / "base_model",
                    texts,
                    resolution=config.resolution,
                    seed=config.seed,
                )
            )
    with world.main_first():  # downloads / dataset caches are made once
        components = load_components(model, use_vae=config.uses_vae)
        data = load_training_images(config)
    embedder = detector = None
    real: Any = None
    if main:
        embedder, detector, real = _fit_instrument(config, rd, data, acc.device)
    history = History()
    if resume is not None:
        history.metrics, history.losses = read_metrics(rd.root), read_losses(rd.root)
    t_setup = time.perf_counter() - t_start
    train(config, rd.root, acc, components, data, embedder, detector, resume, history)
    acc.wait_for_everyone()
    seconds = {"setup": t_setup, **history.seconds}
    figures: list[Path] = []
    if main:
        from deltahall.experiments.t2i.final import measure_final
        from deltahall.experiments.t2i.results import save_figures

        if history.metrics:
            rd.write_json("measure.json", measure_final(rd.root, detector, *real))
        figures = save_figures(rd.root)
        seconds["total"] = time.perf_counter() - t_start
    acc.end_training()
    return Outcome(
        result=_summary(config, history, seconds) if main else None,
        value=T2IResult(
            run_dir=rd.root,
            metrics=history.metrics,
            losses=history.losses,
            detector_path=rd.root / "instrument.json",
            figures=figures,
            seconds=seconds,
        ),
    )


#: The text-to-image experiment as the shared runner executes it.
EXPERIMENT = Experiment(
    name="t2i",
    body=_body,
    preflight=_preflight,
    accelerator=_accelerator,
    manifest_extra=_manifest_extra,
)


def _clear_outputs(root: Path) -> None:
    """A fresh run removes per-step files a previous run left (stale grids would mislead)."""
    for sub in ("samples", "grids"):
        for p in sorted((root / sub).glob("step-*")):
            p.unlink()
    for name in ("metrics.csv", "loss.csv", "result.json", "measure.json"):
        (root / name).unlink(missing_ok=True)


def _fit_instrument(config: T2IConfig, rd: RunDir, data: Any, device: Any) -> tuple[Any, Any, Any]:
    """Embed the real images and fit the instrument on them, once per run (deterministic, so a
    resumed run refits exactly the same one); ``instrument.json`` records it."""
    from deltahall.experiments.t2i.detector import real_embeddings
    from deltahall.experiments.t2i.embed import load_embedder
    from deltahall.experiments.t2i.instrument import Instrument

    embedder = load_embedder(config, rd.root, device)
    X, y = real_embeddings(config, rd.root, embedder, data)
    inst = Instrument(config, X, y)
    rd.write_json(
        "instrument.json",
        {
            "n_real": int(X.shape[0]),
            "dim": int(X.shape[1]),
            "per_class": [int((y == k).sum()) for k in range(len(config.classes))],
            "embedder": embedder.name,
            "embedder_info": getattr(embedder, "info", None),
            **inst.summary(),
        },
    )
    return embedder, inst, (X, y)


def _summary(config: T2IConfig, history: Any, seconds: dict[str, float]) -> dict[str, Any]:
    """``result.json``'s body: the final step's rates per prompt, losses and timings."""
    last = max((int(r["step"]) for r in history.metrics), default=0)
    final = [r for r in history.metrics if int(r["step"]) == last]
    return {
        "preset": config.preset,
        "final_step": last,
        "final": {
            r["prompt"]: {
                k: r[k]
                for k in (
                    "rate",
                    "rate_ci_low",
                    "rate_ci_high",
                    "floor",
                    "excess_p_value",
                    "calibration",
                    "mean_embedding_inside",
                    "mean_image_inside",
                )
            }
            for r in final
        },
        "first_loss": history.losses[0]["loss"] if history.losses else None,
        "last_loss": history.losses[-1]["loss"] if history.losses else None,
        "seconds": seconds,
    }
