"""The offline image embedding of the ``digits`` preset: a small CNN digit classifier.

Stands in for CLIP ViT-B/32. Like CLIP it is trained once, on real images, for a
semantic task, then frozen; the embedding is its 32-d penultimate layer (before the
ReLU). It is trained on all ten digit classes, so the space also has room for shapes
that are neither of the studied classes, and on a stratified 30 % of the bundled digits
only: the other 70 % of the studied classes are what the HCDR detector is fitted and
calibrated on, so the detector's thresholds come from images the embedder has never
seen, as generated images are (the held-out accuracy is recorded in
``embedder/embedder.json``). Pixel PCA would also run offline, but it measures ink
overlap rather than "which digit", so a blurred average of a 0 and a 1 could sit close
to both; a classifier's features separate digit identity, which is what the latent
state is.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from deltahall.experiments.t2i.config import T2IConfig

logger = logging.getLogger(__name__)

#: Training recipe (recorded in the cache marker).
RECIPE: dict[str, Any] = {"fraction": 0.3, "epochs": 60, "batch_size": 64, "lr": 2e-3,
                          "weight_decay": 1e-4, "dim": 32, "max_shift": 1}


def embedder_split(labels: npt.NDArray[np.int64], seed: int, fraction: float = RECIPE["fraction"]) -> npt.NDArray[np.bool_]:
    """Boolean mask of the stratified ``fraction`` of images used to train the embedder."""
    rng = np.random.default_rng([seed, 21])
    mask = np.zeros(labels.shape[0], dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        mask[rng.choice(idx, size=round(fraction * idx.size), replace=False)] = True
    return mask


def _net(side: int, dim: int) -> Any:
    from torch import nn

    class DigitsCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
                nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.Flatten(),
                nn.Linear(32 * (side // 2) ** 2, dim),
            )
            self.head = nn.Sequential(nn.ReLU(), nn.Linear(dim, 10))

        def forward(self, x: Any) -> Any:
            return self.head(self.body(x))

    return DigitsCNN()


class DigitsEmbedder:
    """Penultimate features of the trained digit CNN (see module docstring)."""

    def __init__(self, net: Any, device: Any, batch_size: int, info: dict[str, Any]) -> None:
        import torch

        self.name = "digits-cnn"
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.batch_size = batch_size
        self.info = info

    def embed(self, images: Any) -> npt.NDArray[np.float64]:
        import torch

        out = []
        with torch.no_grad():
            for i in range(0, images.shape[0], self.batch_size):
                x = images[i: i + self.batch_size].to(self.device, torch.float32)
                out.append(self.net.body(x).cpu().numpy())
        return np.concatenate(out).astype(np.float64)

    def predict_digit(self, images: Any) -> npt.NDArray[np.int64]:
        """The CNN's digit prediction (0-9) for each image."""
        import torch

        with torch.no_grad():
            return self.net(images.to(self.device, torch.float32)).argmax(1).cpu().numpy()


def _train(x: Any, y: npt.NDArray[np.int64], seed: int) -> Any:
    import torch
    import torch.nn.functional as F

    r = RECIPE
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = _net(int(x.shape[-1]), r["dim"])
    opt = torch.optim.AdamW(net.parameters(), lr=r["lr"], weight_decay=r["weight_decay"])
    yt = torch.from_numpy(y)
    n = x.shape[0]
    net.train()
    for _ in range(r["epochs"]):
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, r["batch_size"]):
            idx = perm[i: i + r["batch_size"]]
            xb = x[idx]
            dx, dy = (int(v) for v in torch.randint(-r["max_shift"], r["max_shift"] + 1, (2,), generator=gen))
            xb = torch.roll(xb, shifts=(dy, dx), dims=(2, 3))
            loss = F.cross_entropy(net(xb), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


def ensure_digits_embedder(folder: Path, config: T2IConfig, device: Any) -> DigitsEmbedder:
    """Train the digit CNN into ``folder`` (``model.safetensors`` + ``embedder.json``) or reuse it.

    A folder trained with another recipe, resolution or seed is retrained, never reused.
    """
    import torch
    from safetensors.torch import load_file, save_file

    from deltahall.experiments.t2i.data import load_digits_arrays

    res = int(config.resolution or 8)
    spec = {"recipe": RECIPE, "resolution": res, "seed": int(config.seed)}
    marker = folder / "embedder.json"
    batch = int(config.embed_batch_size or 512)
    if marker.is_file() and (weights := folder / "model.safetensors").is_file():
        info = json.loads(marker.read_text(encoding="utf-8"))
        if info.get("spec") == spec:
            net = _net(res, RECIPE["dim"])
            net.load_state_dict(load_file(str(weights)))
            return DigitsEmbedder(net, device, batch, info)
        logger.info("digits embedder in %s was trained with other settings; retraining", folder)
    x, y = load_digits_arrays(res)
    mask = embedder_split(y, config.seed)
    with torch.random.fork_rng(devices=[]):
        net = _train(x[torch.from_numpy(mask)], y[mask], config.seed)
    with torch.no_grad():
        pred = net(x[torch.from_numpy(~mask)]).argmax(1).numpy()
    acc = float(np.mean(pred == y[~mask]))
    info = {"spec": spec, "heldout_accuracy": acc, "n_train": int(mask.sum()), "n_heldout": int((~mask).sum())}
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(folder / "model.safetensors"))
    marker.write_text(json.dumps(info, indent=2), encoding="utf-8")
    logger.info("digits embedder: held-out accuracy %.3f on %d images", acc, int((~mask).sum()))
    return DigitsEmbedder(net, device, batch, info)
