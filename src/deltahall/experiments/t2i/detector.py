"""Real-image embeddings: the reference the t2i run measures against (Section 7.3, Appendix A).

The classes' real images are embedded once per run; :mod:`.instrument` fits the one
instrument (:mod:`deltahall.measure`) on them, the classes as latent states.

Real embeddings are cached in ``real_embeddings.npz`` (loaded with
``allow_pickle=False``) beside ``real_embeddings.json``, the settings that made them; a
cache made with other settings is recomputed, never reused.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from deltahall.experiments.t2i.config import SKLEARN_DIGITS, T2IConfig
from deltahall.experiments.t2i.embed import embed_dataset
from deltahall.io import atomic_write_bytes, atomic_write_text

logger = logging.getLogger(__name__)


def detector_images(config: T2IConfig, train_data: Any) -> Any:
    """The real images the detector is fitted on.

    Digits: the studied classes' images outside the embedder's training split. Otherwise:
    the training images (at most ``detector_max_per_class`` per class, a seeded choice).
    """
    import torch

    from deltahall.experiments.t2i.data import TensorImages, _limit, load_digits_arrays

    classes = config.classes
    if config.data == SKLEARN_DIGITS:
        from deltahall.experiments.t2i.digits_embedder import embedder_split

        x, y = load_digits_arrays(int(config.resolution))
        digits = [int(c) for c in classes]
        sel = np.flatnonzero(~embedder_split(y, config.seed) & np.isin(y, digits))
        labels = np.asarray([digits.index(int(v)) for v in y[sel]], dtype=np.int64)
        data = TensorImages(x[torch.from_numpy(sel)], labels, tuple(classes))
    else:
        data = train_data
    keep = _limit(
        data.labels,
        len(classes),
        config.detector_max_per_class,
        np.random.default_rng([config.seed, 31]),
    )
    return data if keep.size == len(data) else data.subset(keep)


def _spec(config: T2IConfig, embedder: Any) -> dict[str, Any]:
    keys = (
        "data",
        "data_split",
        "image_column",
        "label_column",
        "classes",
        "resolution",
        "max_train_images",
        "detector_max_per_class",
        "seed",
        "embedder",
    )
    d = {k: getattr(config, k) for k in keys}
    d["classes"] = list(d["classes"])
    d["embedder_name"] = embedder.name
    d["embedder_info"] = getattr(embedder, "info", None)
    return d


def real_embeddings(
    config: T2IConfig, run_dir: Path, embedder: Any, train_data: Any
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Embeddings ``(n, d)`` and class indices ``(n,)`` of the detector's real images (cached)."""
    spec = _spec(config, embedder)
    npz, meta = run_dir / "real_embeddings.npz", run_dir / "real_embeddings.json"
    if (
        npz.is_file()
        and meta.is_file()
        and json.loads(meta.read_text(encoding="utf-8")) == json.loads(json.dumps(spec))
    ):
        with np.load(npz, allow_pickle=False) as f:
            return f["embeddings"].astype(np.float64), f["labels"].astype(np.int64)
    data = detector_images(config, train_data)
    X = embed_dataset(embedder, data, int(config.embed_batch_size), config.progress)
    y = np.asarray(data.labels, dtype=np.int64)
    buf = io.BytesIO()
    np.savez(buf, embeddings=X, labels=y)
    atomic_write_bytes(npz, buf.getvalue())
    atomic_write_text(meta, json.dumps(spec, indent=2, allow_nan=False))
    logger.info("embedded %d real images (%d dims)", X.shape[0], X.shape[1])
    return X, y
