"""The digit-CNN image embedder (``'@digits-cnn'``), also the t2i digits preset's embedding.

Stands in for CLIP ViT-B/32 offline. Like CLIP it is trained once, on real images, for a
semantic task, then frozen; the embedding is its 32-d penultimate layer (before the ReLU).
It is trained on all ten digit classes of scikit-learn's bundled digits, on a stratified
30 % only (:func:`embedder_split`), so a detector can be fitted and calibrated on images the
embedder has never seen. Training is deterministic (seeded generator, forked global RNG);
the weights are cached as safetensors beside an ``embedder.json`` that carries the recipe,
resolution and seed, and a folder made with other settings is retrained, never reused.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from deltahall.io.atomic import atomic_write_text
from deltahall.models.base import Embedder, images_to_tensors
from deltahall.models.registry import ResolvedModel, atomic_target, describe, file_sha256

logger = logging.getLogger(__name__)

__all__ = [
    "RECIPE",
    "DigitsCNNEmbedder",
    "digits_net",
    "embedder_split",
    "ensure_digits_cnn",
    "load_digits_arrays",
    "train_digits_cnn",
]

#: Training recipe (recorded in the cache marker).
RECIPE: dict[str, Any] = {
    "fraction": 0.3,
    "epochs": 60,
    "batch_size": 64,
    "lr": 2e-3,
    "weight_decay": 1e-4,
    "dim": 32,
    "max_shift": 1,
    # torch CPU threads while training: the weights depend on it (1 vs 2 threads differ by up
    # to 0.12 after the 60 epochs: reductions are summed in another order), so it is fixed
    "threads": 1,
}

#: The alias's settings: the t2i digits preset's defaults.
ALIAS_RESOLUTION, ALIAS_SEED = 8, 0


def embedder_split(
    labels: npt.NDArray[np.int64], seed: int, fraction: float = RECIPE["fraction"]
) -> npt.NDArray[np.bool_]:
    """Boolean mask of the stratified ``fraction`` of images used to train the embedder."""
    rng = np.random.default_rng([seed, 21])
    mask = np.zeros(labels.shape[0], dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        mask[rng.choice(idx, size=round(fraction * idx.size), replace=False)] = True
    return mask


def load_digits_arrays(resolution: int) -> tuple[Any, npt.NDArray[np.int64]]:
    """All 1797 bundled digits as ``(n, 1, R, R)`` float tensors in [0, 1] and labels 0-9.

    The 8x8 images (values 0-16) are divided by 16 and, for ``R != 8``, resized bilinearly.
    """
    import torch
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0)[:, None]
    if resolution != 8:
        x = torch.nn.functional.interpolate(
            x, size=(resolution, resolution), mode="bilinear", align_corners=False
        )
        x = x.clamp(0.0, 1.0)
    return x, d.target.astype(np.int64)


def digits_net(side: int, dim: int) -> Any:
    """The CNN: three 3x3 convolutions, one 2x2 max-pool, a ``dim``-d layer, a 10-way head."""
    from torch import nn

    class DigitsCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(1, 16, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(16, 32, 3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(32, 32, 3, padding=1),
                nn.ReLU(),
                nn.Flatten(),
                nn.Linear(32 * (side // 2) ** 2, dim),
            )
            self.head = nn.Sequential(nn.ReLU(), nn.Linear(dim, 10))

        def forward(self, x: Any) -> Any:
            return self.head(self.body(x))

    return DigitsCNN()


def train_digits_cnn(x: Any, y: npt.NDArray[np.int64], seed: int) -> Any:
    """Train :func:`digits_net` on ``x`` ``(n, 1, R, R)``, labels ``y``; deterministic in ``seed``.

    Training runs on ``RECIPE["threads"]`` torch CPU threads whatever the caller set (restored
    after), so the weights do not depend on the machine or the command's ``--threads``.
    """
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(int(RECIPE["threads"]))
    try:
        return _train(x, y, seed)
    finally:
        torch.set_num_threads(old)


def _train(x: Any, y: npt.NDArray[np.int64], seed: int) -> Any:
    import torch
    import torch.nn.functional as F

    r = RECIPE
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = digits_net(int(x.shape[-1]), r["dim"])
    opt = torch.optim.AdamW(net.parameters(), lr=r["lr"], weight_decay=r["weight_decay"])
    yt = torch.from_numpy(y)
    n = x.shape[0]
    net.train()
    for _ in range(r["epochs"]):
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, r["batch_size"]):
            idx = perm[i : i + r["batch_size"]]
            xb = x[idx]
            dx, dy = (
                int(v)
                for v in torch.randint(-r["max_shift"], r["max_shift"] + 1, (2,), generator=gen)
            )
            xb = torch.roll(xb, shifts=(dy, dx), dims=(2, 3))
            loss = F.cross_entropy(net(xb), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


def ensure_digits_cnn(folder: Path, *, resolution: int, seed: int) -> tuple[Any, dict[str, Any]]:
    """Train the digit CNN into ``folder`` (``model.safetensors`` + ``embedder.json``) or reuse it.

    A folder trained with another recipe, resolution or seed is retrained, never reused.
    Both files are written atomically, the marker last.

    Returns
    -------
    net : torch.nn.Module (eval mode, CPU)
    info : dict
        The marker: ``spec``, ``heldout_accuracy``, ``n_train``, ``n_heldout``.
    """
    import torch
    from safetensors.torch import load_file, save_file

    spec = {"recipe": RECIPE, "resolution": int(resolution), "seed": int(seed)}
    marker = folder / "embedder.json"
    weights = folder / "model.safetensors"
    if marker.is_file() and weights.is_file():
        info = json.loads(marker.read_text(encoding="utf-8"))
        if info.get("spec") == spec:
            net = digits_net(int(resolution), RECIPE["dim"])
            net.load_state_dict(load_file(str(weights)))
            return net.eval(), info
        logger.info("digits embedder in %s was trained with other settings; retraining", folder)
    x, y = load_digits_arrays(int(resolution))
    mask = embedder_split(y, seed)
    with torch.random.fork_rng(devices=[]):
        net = train_digits_cnn(x[torch.from_numpy(mask)], y[mask], seed)
    with torch.no_grad():
        pred = net(x[torch.from_numpy(~mask)]).argmax(1).numpy()
    acc = float(np.mean(pred == y[~mask]))
    info = {
        "spec": spec,
        "heldout_accuracy": acc,
        "n_train": int(mask.sum()),
        "n_heldout": int((~mask).sum()),
    }
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_target(weights) as tmp:
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp))
    atomic_write_text(marker, json.dumps(info, indent=2, allow_nan=False))
    logger.info("digits embedder: held-out accuracy %.3f on %d images", acc, int((~mask).sum()))
    return net, info


class DigitsCNNEmbedder(Embedder):
    """Penultimate features of the trained digit CNN (32-d).

    Images are converted to gray, resized to the CNN's resolution (bilinear, antialiased)
    and scaled to [0, 1]; like the training digits, ink is bright on a dark background.
    """

    modality = "image"

    def __init__(
        self,
        net: Any,
        *,
        name: str,
        resolution: int,
        device: str = "cpu",
        batch_size: int = 512,
        fingerprint: dict[str, Any] | None = None,
        info: dict[str, Any] | None = None,
    ) -> None:
        import torch

        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.name = name
        self.resolution = int(resolution)
        self.batch_size = batch_size
        self.dim = int(RECIPE["dim"])
        self.info = info or {}
        self.fingerprint = fingerprint or {
            "spec": name,
            "family": "digits-cnn",
            "sha256": None,
            "dim": self.dim,
        }

    @classmethod
    def from_cache(
        cls, resolved: ResolvedModel, *, device: str = "cpu", batch_size: int = 512
    ) -> DigitsCNNEmbedder:
        """The ``'@digits-cnn'`` alias: trained once into ``cache_dir()/digits-cnn``."""
        assert resolved.path is not None
        net, info = ensure_digits_cnn(resolved.path, resolution=ALIAS_RESOLUTION, seed=ALIAS_SEED)
        sha = file_sha256(resolved.path / "model.safetensors")
        fp = {
            **describe(resolved),
            "sha256": sha,
            "family": "digits-cnn",
            "dim": int(RECIPE["dim"]),
            "train_spec": info["spec"],
            "heldout_accuracy": info.get("heldout_accuracy"),
        }
        return cls(
            net,
            name=resolved.spec,
            resolution=ALIAS_RESOLUTION,
            device=device,
            batch_size=batch_size,
            fingerprint=fp,
            info=info,
        )

    def embed_tensor(self, images: Any) -> npt.NDArray[np.float32]:
        """``(n, 1, R, R)`` float tensor in [0, 1] -> float32 ``(n, 32)``, in batches."""
        import torch

        out = [np.zeros((0, self.dim), dtype=np.float32)]
        with torch.no_grad():
            for i in range(0, images.shape[0], self.batch_size):
                x = images[i : i + self.batch_size].to(self.device, torch.float32)
                out.append(self.net.body(x).cpu().numpy())
        return np.concatenate(out)

    def predict_digit(self, images: Any) -> npt.NDArray[np.int64]:
        """The CNN's digit prediction (0-9) for each ``(n, 1, R, R)`` image."""
        import torch

        with torch.no_grad():
            return self.net(images.to(self.device, torch.float32)).argmax(1).cpu().numpy()

    def _embed_batch(self, items: Sequence[Any]) -> npt.NDArray[np.float32]:
        import torch
        import torch.nn.functional as F

        r = self.resolution
        xs = [
            F.interpolate(
                t[None], size=(r, r), mode="bilinear", align_corners=False, antialias=True
            )[0].clamp(0.0, 1.0)
            if t.shape[-2:] != (r, r)
            else t
            for t in images_to_tensors(items, mode="L")
        ]
        with torch.no_grad():
            return self.net.body(torch.stack(xs).to(self.device)).cpu().numpy()
