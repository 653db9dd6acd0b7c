"""``run(config) -> T2IResult``: the whole Section 7.3 experiment for one config.

1. Check the run directory (resume or fresh; a fresh run never overwrites checkpoints).
2. Load (or build, for ``digits``) the model; load the training images.
3. Main process: load the embedder, embed the real images, fit and save the HCDR detector.
4. Train, checkpointing and evaluating every ``checkpoint_every`` steps (:mod:`.train`).
5. Main process: Figures 5-7 and ``summary.json``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deltahall.experiments._checkpoint import list_checkpoints, resolve_resume
from deltahall.experiments.t2i.config import TINY_MODEL, T2IConfig
from deltahall.experiments.t2i.results import T2IResult, read_losses, read_metrics
from deltahall.io import RunDir

logger = logging.getLogger(__name__)


def _check_run_dir(config: T2IConfig, rd: RunDir) -> Path | None:
    """The checkpoint to resume from, after checking the run directory allows it."""
    try:
        resume = resolve_resume(rd.root, config.resume_from_checkpoint)
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            "`resume_from_checkpoint` must be 'latest' or a checkpoint folder with state.json; "
            f"got {config.resume_from_checkpoint!r}."
        ) from exc
    if resume is None:
        existing = list_checkpoints(rd.root)
        if existing:
            raise ValueError(
                f"`out_dir` {rd.root} already holds {existing[-1].name}; pass "
                "`resume_from_checkpoint` 'latest' to continue it, or choose another `out_dir`."
            )
        return None
    manifest = rd.root / "manifest.json"
    if not manifest.is_file():
        raise FileNotFoundError(f"cannot resume: {manifest} (the run's settings) is missing.")
    old = rd.read_json("manifest.json").get("fingerprint")
    new = config.fingerprint()
    if old != new:
        diff = sorted(k for k in set(old or {}) | set(new) if (old or {}).get(k) != new.get(k))
        raise ValueError(f"cannot resume {rd.root}: settings differ from the original run in {diff}.")
    return resume


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    import torch

    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _accelerator(config: T2IConfig, run_dir: Path) -> Any:
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    acc = Accelerator(
        mixed_precision=str(config.mixed_precision), cpu=config.device == "cpu",
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        project_config=ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir / "logs")),
    )
    if config.device == "cuda" and acc.device.type != "cuda":
        raise ValueError(f"`device` 'cuda' was asked for but accelerate chose {acc.device}.")
    return acc


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
    from deltahall.experiments.t2i.data import load_training_images
    from deltahall.experiments.t2i.modeling import load_components
    from deltahall.experiments.t2i.train import History, train

    t_start = time.perf_counter()
    rd = RunDir(config.run_dir)
    resume = _check_run_dir(config, rd)
    with _threads(config.torch_threads):
        acc = _accelerator(config, rd.root)
        main = acc.is_main_process
        if main and resume is None:
            _clear_outputs(rd.root)
        if main:
            rd.write_manifest(config, seed=config.seed, extra={
                "fingerprint": config.fingerprint(), "resumed_from": str(resume) if resume else None,
                "num_processes": acc.num_processes,
            })
        model = str(config.model)
        if model == TINY_MODEL:
            from deltahall.experiments.t2i.tiny import ensure_tiny_model

            with acc.main_process_first():
                texts = [*(config.captions or ()), *(config.prompts or ())]
                model = str(ensure_tiny_model(rd.root / "base_model", texts, resolution=int(config.resolution or 8), seed=config.seed))
        with acc.main_process_first():  # downloads / dataset caches are made once
            components = load_components(model, use_vae=config.uses_vae)
            data = load_training_images(config)
        embedder = detector = None
        if main:
            embedder, detector = _fit_detector(config, rd, data, acc.device)
        history = History()
        if resume is not None:
            history.metrics, history.losses = read_metrics(rd.root), read_losses(rd.root)
        t_setup = time.perf_counter() - t_start
        train(config, rd.root, acc, components, data, embedder, detector, resume, history)
        acc.wait_for_everyone()
    seconds = {"setup": t_setup, **history.seconds}
    figures: list[Path] = []
    if main:
        from deltahall.plotting.t2i import save_t2i_figures

        figures = save_t2i_figures(rd.root)
        seconds["total"] = time.perf_counter() - t_start
        _write_summary(rd, config, history, detector, embedder, seconds)
    acc.end_training()
    return T2IResult(run_dir=rd.root, metrics=history.metrics, losses=history.losses,
                     detector_path=rd.root / "detector.safetensors", figures=figures, seconds=seconds)


def _clear_outputs(root: Path) -> None:
    """A fresh run removes per-step files a previous run left (stale grids would mislead)."""
    for sub in ("samples", "grids"):
        for p in sorted((root / sub).glob("step-*")):
            p.unlink()
    for name in ("metrics.csv", "loss.csv", "summary.json"):
        (root / name).unlink(missing_ok=True)


def _fit_detector(config: T2IConfig, rd: RunDir, data: Any, device: Any) -> tuple[Any, Any]:
    from deltahall.experiments.t2i.detector import fit_detector, real_embeddings
    from deltahall.experiments.t2i.embed import load_embedder

    embedder = load_embedder(config, rd.root, device)
    X, y = real_embeddings(config, rd.root, embedder, data)
    detector = fit_detector(config, X, y)
    detector.save(rd.path("detector.safetensors"))
    rd.write_json("detector.json", {
        "classes": list(config.classes or ()), "n_real": int(X.shape[0]), "dim": int(X.shape[1]),
        "per_class": [int((y == k).sum()) for k in range(len(config.classes or ()))],
        "thresholds": detector.thresholds_, "holdout_coverage": detector.holdout_coverage_,
        "embedder": embedder.name, "embedder_info": getattr(embedder, "info", None),
    })
    return embedder, detector


def _write_summary(rd: RunDir, config: T2IConfig, history: Any, detector: Any, embedder: Any, seconds: dict[str, float]) -> None:
    last = max((int(r["step"]) for r in history.metrics), default=0)
    final = [r for r in history.metrics if int(r["step"]) == last]
    rd.write_json("summary.json", {
        "preset": config.preset, "final_step": last,
        "final": {r["prompt"]: {"rate": r["rate"], "mean_embedding_inside": r["mean_embedding_inside"],
                                "mean_image_inside": r["mean_image_inside"]} for r in final},
        "first_loss": history.losses[0]["loss"] if history.losses else None,
        "last_loss": history.losses[-1]["loss"] if history.losses else None,
        "seconds": seconds,
    })
