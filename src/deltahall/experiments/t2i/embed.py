"""Image embedders: images in [0, 1] -> embedding arrays for the HCDR detector.

Both presets go through the same interface, :class:`Embedder`: ``embed(images)`` takes
a float tensor ``(n, C, H, W)`` in [0, 1] (real or generated, same preprocessing) and
returns a float64 array ``(n, d)``, computed in batches of ``batch_size``.

- :class:`CLIPEmbedder` (paper scale): CLIP ViT-B/32 image embeddings
  (``CLIPVisionModelWithProjection.image_embeds``), preprocessed in torch with the
  ``CLIPImageProcessor``'s size, crop, mean and std, so generated tensors need no PIL
  round trip; the model code lives in :mod:`deltahall.models.embedders`.
- :class:`deltahall.experiments.t2i.digits_embedder.DigitsEmbedder` (offline).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from deltahall.experiments.t2i.config import DIGITS_CNN, T2IConfig

logger = logging.getLogger(__name__)


class Embedder(Protocol):
    """What the experiment needs from an image embedder."""

    name: str

    def embed(self, images: Any) -> npt.NDArray[np.float64]:
        """``(n, C, H, W)`` images in [0, 1] -> ``(n, d)`` float64 embeddings."""
        ...


class CLIPEmbedder:
    """CLIP image embeddings (Section 7.3: CLIP ViT-B/32), as float64.

    A thin wrapper of :class:`deltahall.models.embedders.CLIPVisionEmbedder` (which
    preprocesses in torch with the ``CLIPImageProcessor``'s size, crop, mean and std).

    Parameters
    ----------
    model : str
        Hub id or folder with a ``CLIPVisionModelWithProjection`` and its
        ``preprocessor_config.json``.
    device : torch.device or str
    batch_size : int
    """

    def __init__(self, model: str, device: Any, batch_size: int) -> None:
        from deltahall.models.embedders import CLIPVisionEmbedder
        from deltahall.models.registry import resolve_model

        self._clip = CLIPVisionEmbedder(
            resolve_model(model), device=str(device), batch_size=batch_size
        )
        self.name = f"clip:{model}"
        self.device = self._clip.device
        self.batch_size = batch_size
        self.model = self._clip.model

    def _preprocess(self, x: Any) -> Any:
        return self._clip._preprocess(x)

    def embed(self, images: Any) -> npt.NDArray[np.float64]:
        out = self._clip.embed_tensor(images)
        return np.concatenate(out).astype(np.float64) if out else np.zeros((0, 0))


def load_embedder(config: T2IConfig, run_dir: Path, device: Any) -> Embedder:
    """The configured embedder (training the digits CNN into ``run_dir/embedder`` if needed)."""
    if config.embedder == DIGITS_CNN:
        from deltahall.experiments.t2i.digits_embedder import ensure_digits_embedder

        return ensure_digits_embedder(run_dir / "embedder", config, device)
    return CLIPEmbedder(str(config.embedder), device, int(config.embed_batch_size))


def embed_dataset(
    embedder: Embedder, data: Any, batch_size: int, progress: bool = False
) -> npt.NDArray[np.float64]:
    """Embed every item of an :class:`~deltahall.experiments.t2i.data.ImageData` (no flips)."""
    import torch
    from tqdm.auto import tqdm

    chunks = []
    for i in tqdm(
        range(0, len(data), batch_size), desc="embed real", disable=not progress, leave=False
    ):
        imgs = torch.stack([data[(j, False)][0] for j in range(i, min(i + batch_size, len(data)))])
        chunks.append(embedder.embed(imgs))
    return np.concatenate(chunks)
