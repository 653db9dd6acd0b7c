"""The embedder interface shared by every family, and image input conversion."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

__all__ = ["Embedder", "check_device", "images_to_tensors", "open_image"]

#: ITU-R 601-2 luma weights, as PIL's ``convert("L")`` uses.
_LUMA = (0.299, 0.587, 0.114)


def check_device(device: Any, name: str = "device") -> str:
    """A torch device string this machine has: ``'cpu'``, ``'cuda'``, ``'cuda:i'`` or ``'mps'``.

    Raises
    ------
    deltahall._validation.BadInput
        Not a device string torch understands.
    deltahall._validation.RunFailure
        A CUDA (or MPS) device on a machine or torch build without one, e.g. ``--device cuda``
        with the CPU build of torch.
    """
    import torch

    from deltahall._validation import BadInput, RunFailure

    if not isinstance(device, str) or not device.strip():
        raise BadInput(f"`{name}` must be a torch device such as 'cpu' or 'cuda'; got {device!r}.")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise BadInput(
            f"`{name}` must be a torch device such as 'cpu', 'cuda', 'cuda:0' or 'mps'; "
            f"got {device!r}."
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = (
                "a CPU-only build of torch" if torch.version.cuda is None else "no CUDA GPU visible"
            )
            raise RunFailure(
                f"`{name}` {device!r} was asked for, but torch {torch.__version__} sees no CUDA GPU "
                f"({build}); use --{name.replace('_', '-')} cpu."
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RunFailure(
                f"`{name}` {device!r} was asked for, but this machine has "
                f"{torch.cuda.device_count()} CUDA GPU(s)."
            )
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise RunFailure(
            f"`{name}` {device!r} was asked for, but torch sees no MPS device on this machine."
        )
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise BadInput(f"`{name}` must be 'cpu', 'cuda', 'cuda:i' or 'mps'; got {device!r}.")
    return device


def open_image(path: Any) -> Any:
    """Open and fully load one image file as a PIL image; every failure is one line naming the file.

    An image whose header claims more pixels than PIL's decompression-bomb limit
    (``PIL.Image.MAX_IMAGE_PIXELS``, about 89 megapixels) is refused before it is decoded.

    Raises
    ------
    deltahall._validation.BadInput
        Not a readable image, or too many pixels (the size is named).
    """
    import os
    import warnings

    from PIL import Image, UnidentifiedImageError

    from deltahall._validation import BadInput

    where = os.fspath(path) if isinstance(path, (str, os.PathLike)) else "<image bytes>"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
                return im.copy()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadInput(
            f"{where}: refusing to decode a possible decompression bomb: "
            f"{' '.join(str(exc).split())} ({type(exc).__name__})."
        ) from None
    except FileNotFoundError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise BadInput(f"{where}: not a readable image ({' '.join(str(exc).split())}).") from None


class Embedder:
    """Items -> float32 embeddings ``(n, dim)``; one subclass per model family.

    Attributes
    ----------
    name : str
        The spec as given.
    modality : {'text', 'image'}
    dim : int
    fingerprint : dict
        JSON-able: ``spec``, ``family``, ``sha256`` (of the weights), ``dim``, and more.
    """

    name: str
    modality: Literal["text", "image"]
    dim: int
    fingerprint: dict[str, Any]
    batch_size: int

    def _embed_batch(self, items: Sequence[Any]) -> npt.NDArray[np.float32]:
        raise NotImplementedError

    def _batch_order(self, items: Any) -> npt.NDArray[np.intp] | None:
        """The order :meth:`embed` batches ``items`` in (``None``: as given); results come back in input order."""
        return None

    def _check_items(self, items: Any) -> Any:
        if self.modality == "text":
            if isinstance(items, str) or not isinstance(items, Sequence):
                raise TypeError(f"`items` must be a list of strings; got {type(items).__name__}.")
            bad = next((i for i, t in enumerate(items) if not isinstance(t, str)), None)
            if bad is not None:
                raise TypeError(
                    f"`items[{bad}]` must be a string; got {type(items[bad]).__name__}."
                )
            return items
        if isinstance(items, np.ndarray):
            if items.ndim not in (3, 4):
                raise ValueError(
                    f"`items` array must have shape (n, H, W) or (n, H, W, C); got {items.shape}."
                )
            return items
        if not isinstance(items, Sequence):
            raise TypeError(
                f"`items` must be a list of PIL images or an array; got {type(items).__name__}."
            )
        return items

    def embed(
        self, items: Any, *, batch_size: int | None = None, progress: bool = False
    ) -> npt.NDArray[np.float32]:
        """Embed ``items`` in batches.

        Parameters
        ----------
        items : list of str, list of PIL.Image.Image, or array ``(n, H, W[, C])``
            Texts for a text embedder; images (any mode and size; uint8 arrays in 0-255,
            float arrays in [0, 1]) for an image embedder.
        batch_size : int, optional
            Items per forward pass (default: the embedder's ``batch_size``).
        progress : bool
            Show a tqdm bar on stderr.

        Returns
        -------
        ndarray, float32, shape ``(n, dim)``
        """
        from tqdm.auto import tqdm

        from deltahall._validation import check_int

        items = self._check_items(items)
        bs = check_int(self.batch_size if batch_size is None else batch_size, "batch_size", low=1)
        n = len(items)
        order = self._batch_order(items)
        if order is not None:
            items = [items[j] for j in order.tolist()]
        out = [np.zeros((0, self.dim), dtype=np.float32)]
        with tqdm(
            total=n,
            desc=f"embed {self.name}",
            unit=self.modality,
            disable=not progress,
            leave=False,
        ) as bar:
            for i in range(0, n, bs):
                chunk = np.asarray(self._embed_batch(items[i : i + bs]), dtype=np.float32)
                out.append(chunk.reshape(chunk.shape[0], self.dim))
                bar.update(chunk.shape[0])
        E = np.concatenate(out)
        if order is None:
            return E
        restored = np.empty_like(E)
        restored[order] = E
        return restored

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, modality={self.modality!r}, dim={self.dim})"
        )


def images_to_tensors(items: Any, *, mode: Literal["RGB", "L"]) -> list[Any]:
    """Images -> list of float tensors ``(C, H, W)`` in [0, 1] (C = 3 for RGB, 1 for L).

    ``items``: PIL images (any mode) or an array ``(n, H, W)`` / ``(n, H, W, C)`` with C in
    {1, 3, 4}: uint8 in 0-255, or floats in [0, 1]. Alpha is dropped.
    """
    import torch

    out = []
    if isinstance(items, np.ndarray):
        arr = items
        if arr.ndim == 3:
            arr = arr[..., None]
        if arr.shape[-1] not in (1, 3, 4):
            raise ValueError(
                f"image array must have 1, 3 or 4 channels last; got shape {items.shape}."
            )
        if arr.dtype == np.uint8:
            x = torch.from_numpy(np.ascontiguousarray(arr)).float() / 255.0
        elif np.issubdtype(arr.dtype, np.floating):
            if not np.isfinite(arr).all():
                raise ValueError("image array must be finite; found NaN/inf.")
            x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
        else:
            raise TypeError(f"image array must be uint8 or float; got dtype {arr.dtype}.")
        x = x[..., :3].permute(0, 3, 1, 2)
        for img in x:
            out.append(_to_mode(img, mode))
        return out
    from PIL import Image

    for i, img in enumerate(items):
        if not isinstance(img, Image.Image):
            raise TypeError(f"`items[{i}]` must be a PIL image; got {type(img).__name__}.")
        conv = img.convert(mode)
        a = np.asarray(conv, dtype=np.uint8)
        t = torch.from_numpy(a.copy()).float() / 255.0
        out.append(t[None] if a.ndim == 2 else t.permute(2, 0, 1))
    return out


def _to_mode(x: Any, mode: str) -> Any:
    c = x.shape[0]
    if mode == "RGB":
        return x.expand(3, -1, -1) if c == 1 else x
    if c == 1:
        return x
    w = x.new_tensor(_LUMA).view(3, 1, 1)
    return (x * w).sum(0, keepdim=True)


def resize_center_crop(x: Any, *, resize: int, crop: int) -> Any:
    """``(C, H, W)`` -> shortest side to ``resize`` (bicubic, antialiased), centre crop ``crop``."""
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    s = resize / min(h, w)
    nh, nw = max(resize, round(h * s)), max(resize, round(w * s))
    y = F.interpolate(x[None], size=(nh, nw), mode="bicubic", align_corners=False, antialias=True)[
        0
    ]
    top, left = (nh - crop) // 2, (nw - crop) // 2
    return y[..., top : top + crop, left : left + crop].clamp(0.0, 1.0)
