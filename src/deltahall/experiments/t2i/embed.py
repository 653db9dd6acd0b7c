"""Image embedders: images in [0, 1] -> embedding arrays for the HCDR detector.

Both presets go through the same interface, :class:`Embedder`: ``embed(images)`` takes
a float tensor ``(n, C, H, W)`` in [0, 1] (real or generated, same preprocessing) and
returns a float64 array ``(n, d)``, computed in batches of ``batch_size``.

- :class:`CLIPEmbedder` (paper scale): CLIP ViT-B/32 image embeddings
  (``CLIPVisionModelWithProjection.image_embeds``), preprocessed in torch with the
  ``CLIPImageProcessor``'s size, crop, mean and std, so generated tensors need no PIL
  round trip.
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


def _size(d: Any, key: str) -> int:
    """``size``/``crop_size`` of an image processor: a dict, a ``SizeDict`` or an int."""
    if isinstance(d, (int, float)):
        return int(d)
    for k in (key, "shortest_edge", "height"):
        v = d.get(k) if hasattr(d, "get") else getattr(d, k, None)
        if v is not None:
            return int(v)
    raise ValueError(f"CLIP image processor size {d!r} has no {key!r}.")


class CLIPEmbedder:
    """CLIP image embeddings (Section 7.3: CLIP ViT-B/32).

    Parameters
    ----------
    model : str
        Hub id or folder with a ``CLIPVisionModelWithProjection`` and its
        ``preprocessor_config.json``.
    device : torch.device or str
    batch_size : int
    """

    def __init__(self, model: str, device: Any, batch_size: int) -> None:
        import torch
        from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

        self.name = f"clip:{model}"
        self.device = torch.device(device)
        self.batch_size = batch_size
        clip: Any = CLIPVisionModelWithProjection.from_pretrained(model, use_safetensors=True)
        self.model = clip.to(self.device).eval()
        self.model.requires_grad_(False)
        proc = CLIPImageProcessor.from_pretrained(model)
        self.resize = _size(proc.size, "shortest_edge")
        self.crop = _size(proc.crop_size, "height")
        self.mean = torch.tensor(proc.image_mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(proc.image_std, dtype=torch.float32).view(1, -1, 1, 1)

    def _preprocess(self, x: Any) -> Any:
        import torch.nn.functional as F

        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        h, w = x.shape[-2:]
        s = self.resize / min(h, w)
        nh, nw = max(self.resize, round(h * s)), max(self.resize, round(w * s))
        x = F.interpolate(x, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True)
        top, left = (nh - self.crop) // 2, (nw - self.crop) // 2
        x = x[..., top: top + self.crop, left: left + self.crop].clamp(0.0, 1.0)
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def embed(self, images: Any) -> npt.NDArray[np.float64]:
        import torch

        out = []
        with torch.no_grad():
            for i in range(0, images.shape[0], self.batch_size):
                x = self._preprocess(images[i: i + self.batch_size].to(self.device, torch.float32))
                out.append(self.model(pixel_values=x).image_embeds.float().cpu().numpy())
        return np.concatenate(out).astype(np.float64) if out else np.zeros((0, 0))


def load_embedder(config: T2IConfig, run_dir: Path, device: Any) -> Embedder:
    """The configured embedder (training the digits CNN into ``run_dir/embedder`` if needed)."""
    if config.embedder == DIGITS_CNN:
        from deltahall.experiments.t2i.digits_embedder import ensure_digits_embedder

        return ensure_digits_embedder(run_dir / "embedder", config, device)
    return CLIPEmbedder(str(config.embedder), device, int(config.embed_batch_size or 64))


def embed_dataset(embedder: Embedder, data: Any, batch_size: int, progress: bool = False) -> npt.NDArray[np.float64]:
    """Embed every item of an :class:`~deltahall.experiments.t2i.data.ImageData` (no flips)."""
    import torch
    from tqdm.auto import tqdm

    chunks = []
    for i in tqdm(range(0, len(data), batch_size), desc="embed real", disable=not progress, leave=False):
        imgs = torch.stack([data[(j, False)][0] for j in range(i, min(i + batch_size, len(data)))])
        chunks.append(embedder.embed(imgs))
    return np.concatenate(chunks)
