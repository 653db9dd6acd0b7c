"""The main job's measurement step: the digits text-to-image run, measured with ``deltahall measure``.

The main job runs the t2i step into ``run_dir.parent / "t2i"``; that run saves the real
images' embeddings (``real_embeddings.npz``) and, per checkpoint, every generated
sample's embedding (``samples/step-XXXXXX.npz``). This step takes the final checkpoint's
samples and measures them with the calibrated instrument — conformal level, Wilson
intervals against the real floor, per prompt — then shows HCDR-guided selection before
and after and the baselines at the same α, and the known-truth comparison of
:mod:`deltahall.measure.compare`. It only reads saved embeddings: seconds, no model.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from deltahall.io import RunDir, Section

logger = logging.getLogger(__name__)

ALPHA = 0.1


def _final_samples(t2i_dir: Path) -> tuple[int, np.ndarray, list[str]]:
    """Final step, generated embeddings (n, d) and the prompt of each row."""
    files = sorted((t2i_dir / "samples").glob("step-*.npz"))
    if not files:
        raise FileNotFoundError(f"no samples/step-*.npz in {t2i_dir}; is it a finished t2i run directory?")
    last = files[-1]
    step = int(last.stem.split("-")[1])
    cfg = _config(t2i_dir)
    prompts_cfg = list(cfg.get("prompts") or [])
    embs, prompts = [], []
    with np.load(last, allow_pickle=False) as f:
        keys = sorted((k for k in f.files if k.startswith("embeddings_p")), key=lambda k: int(k[len("embeddings_p"):]))
        for k in keys:
            p = int(k[len("embeddings_p"):])
            E = f[k]
            embs.append(E)
            name = prompts_cfg[p] if p < len(prompts_cfg) else f"prompt {p}"
            prompts += [name] * E.shape[0]
    return step, np.vstack(embs), prompts


def _config(t2i_dir: Path) -> dict[str, Any]:
    m = t2i_dir / "manifest.json"
    if not m.is_file():
        return {}
    cfg = json.loads(m.read_text(encoding="utf-8")).get("config", {})
    return cfg if isinstance(cfg, dict) else {}


def measure_t2i_run(t2i_dir: str | Path, *, alpha: float = ALPHA, seed: int = 0) -> dict[str, Any]:
    """Measure a t2i run's final checkpoint from its saved embeddings.

    Returns
    -------
    dict
        ``measurement`` (:class:`~deltahall.measure.Measurement`), ``selection``,
        ``baselines`` (rows), ``summary`` (JSON-able), ``step``, ``classes``.

    Raises
    ------
    FileNotFoundError
        If ``t2i_dir`` lacks ``real_embeddings.npz`` or sample embeddings.
    """
    from deltahall.measure import DetectorSettings, measure_embeddings
    from deltahall.measure.compare import baselines_on_measurement
    from deltahall.measure.selection import select_candidates

    root = Path(t2i_dir)
    npz = root / "real_embeddings.npz"
    if not npz.is_file():
        raise FileNotFoundError(f"no real_embeddings.npz in {root}; is it a t2i run directory?")
    with np.load(npz, allow_pickle=False) as f:
        X, y = f["embeddings"].astype(np.float64), f["labels"].astype(np.int64)
    cfg = _config(root)
    classes = [str(c) for c in (cfg.get("classes") or sorted(set(y.tolist())))]
    labels = np.asarray([f"digit {classes[k]}" if k < len(classes) else str(k) for k in y])
    step, G, prompts = _final_samples(root)
    settings = DetectorSettings(
        alpha=alpha, pca_dim=int(cfg.get("pca_dim") or 8), n_components=int(cfg.get("n_components") or 2),
        covariance_type=str(cfg.get("covariance_type") or "diag"), seed=seed,
    )
    m = measure_embeddings(X, labels, G, prompts=prompts, settings=settings)
    sel = select_candidates(m.gen_p, m.prompts, m.gen_nearest, m.gen_flagged, states=m.states,
                            reference_sizes=m.state_sizes["total"], mode="hcdr", alpha=alpha)
    base = baselines_on_measurement(m, X, G, labels)
    summary = m.summary()
    summary.update({"curve": m.curve, "selection": sel.summary(), "baselines": base, "step": step,
                    "t2i_dir": str(root), "embedder": "t2i run's saved embeddings"})
    return {"measurement": m, "selection": sel, "baselines": base, "summary": summary, "step": step,
            "classes": classes}


def known_truth_rows(seed: int = 0, *, digits_cnn: bool = True) -> dict[str, list[dict[str, Any]]]:
    """Precision / recall of "outside" per method on the known-truth data sets.

    Synthetic Gaussian states, digits in pixel space and, when ``digits_cnn`` and the
    ``@digits-cnn`` embedder loads (torch installed; trained once into the cache, ~10 s),
    digits in that embedding.
    """
    from deltahall._validation import RunFailure
    from deltahall.measure.compare import compare_methods, digits_known_truth, synthetic_known_truth

    sets = [synthetic_known_truth(seed), digits_known_truth(seed)]
    if digits_cnn:
        try:
            from deltahall.models import load_embedder

            sets.append(digits_known_truth(seed, embedder=load_embedder("@digits-cnn")))
        except (ImportError, OSError, ValueError, RunFailure) as exc:
            logger.warning("known truth in the @digits-cnn embedding skipped: %s", exc)
    return {d.name: compare_methods(d) for d in sets}


def main_job_section(run_dir: Path, seed: int) -> Section:
    """Measure the main job's digits t2i run (``run_dir.parent / "t2i"``) and compare methods."""
    from deltahall.measure.report import measurement_section

    rd = RunDir(run_dir)
    t2i_dir = Path(run_dir).parent / "t2i"
    title = "Measure your own model: the digits run, calibrated (deltahall measure)"
    if (t2i_dir / "real_embeddings.npz").is_file() and list((t2i_dir / "samples").glob("step-*.npz")):
        res = measure_t2i_run(t2i_dir, seed=seed)
        rd.write_json("measure.json", res["summary"])
        intro = (
            f"The text-to-image step's final checkpoint (step {res['step']}): its saved sample embeddings measured "
            f"against the real digits {res['classes']} with split-conformal calibration at α = {ALPHA:g} (a fresh real "
            "digit is flagged with probability at most α), instead of the paper's percentile rule. Selection keeps, "
            "per prompt, the samples inside the calibrated HCDR; the baselines are thresholded on the same calibration "
            "part at the same α. Generated images are not saved by the t2i run, so no image grids here (the t2i "
            "section shows the flagged ones)."
        )
        sec = measurement_section(res["summary"], res["measurement"].test_p, rd, title=title, intro=intro)
        sec.code(f"reproduce: deltahall measure on {t2i_dir}/real_embeddings.npz and samples/step-{res['step']:06d}.npz "
                 "(see docs/measure.md)")
    else:
        sec = Section(title)
        sec.note(
            f"The digits text-to-image run is missing ({t2i_dir} has no real_embeddings.npz or samples/step-*.npz): "
            "run the main job with its t2i step (`deltahall report`) to measure it here. Only the known-truth "
            "comparison below was computed."
        )
    for name, rows in known_truth_rows(seed).items():
        sec.table(rows, ["method", "false_flag_rate", "flagged", "precision", "recall"],
                  caption=f"Known truth, {name}: precision / recall of 'outside', every method calibrated at α = {ALPHA:g} "
                          "on the same calibration part; false_flag_rate = flagged share of the held-out real test part.")
    return sec
