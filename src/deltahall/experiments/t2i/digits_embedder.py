"""The offline image embedding of the ``digits`` preset: a small CNN digit classifier.

The network, its training recipe and its cache live in :mod:`deltahall.models.digits_cnn`
(also the registry's ``'@digits-cnn'``); this module keeps the experiment's interface:
a float64 ``embed`` of ``(n, 1, R, R)`` tensors, trained into the run's ``embedder/``
folder at the run's resolution and seed.

Why a classifier: like CLIP it is trained once, on real images, for a semantic task, then
frozen; the embedding is its 32-d penultimate layer. It is trained on all ten digit classes
on a stratified 30 % of the bundled digits only: the other 70 % of the studied classes are
what the HCDR detector is fitted and calibrated on, so the detector's thresholds come from
images the embedder has never seen, as generated images are (the held-out accuracy is
recorded in ``embedder/embedder.json``). Pixel PCA would also run offline, but it measures
ink overlap rather than "which digit", so a blurred average of a 0 and a 1 could sit close
to both; a classifier's features separate digit identity, which is what the latent state is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from deltahall.experiments.t2i.config import T2IConfig
from deltahall.models.digits_cnn import (
    RECIPE,
    DigitsCNNEmbedder,
    embedder_split,
    ensure_digits_cnn,
)

__all__ = ["RECIPE", "DigitsEmbedder", "embedder_split", "ensure_digits_embedder"]


class DigitsEmbedder:
    """Penultimate features of the trained digit CNN, as float64 (see module docstring)."""

    def __init__(self, net: Any, device: Any, batch_size: int, info: dict[str, Any]) -> None:
        res = int(info.get("spec", {}).get("resolution", 8))
        self._cnn = DigitsCNNEmbedder(
            net,
            name="digits-cnn",
            resolution=res,
            device=str(device),
            batch_size=batch_size,
            info=info,
        )
        self.name = "digits-cnn"
        self.device = self._cnn.device
        self.net = self._cnn.net
        self.batch_size = batch_size
        self.info = info

    def embed(self, images: Any) -> npt.NDArray[np.float64]:
        """``(n, 1, R, R)`` float tensor in [0, 1] -> ``(n, 32)`` float64."""
        return self._cnn.embed_tensor(images).astype(np.float64)

    def predict_digit(self, images: Any) -> npt.NDArray[np.int64]:
        """The CNN's digit prediction (0-9) for each image."""
        return self._cnn.predict_digit(images)


def ensure_digits_embedder(folder: Path, config: T2IConfig, device: Any) -> DigitsEmbedder:
    """Train the digit CNN into ``folder`` (``model.safetensors`` + ``embedder.json``) or reuse it.

    A folder trained with another recipe, resolution or seed is retrained, never reused.
    """
    net, info = ensure_digits_cnn(folder, resolution=int(config.resolution), seed=int(config.seed))
    return DigitsEmbedder(net, device, int(config.embed_batch_size), info)
