"""Image grids as PNG (Pillow), for the samples the detector flags."""

from __future__ import annotations

import io
import math
import os
from typing import Any

import numpy as np

from deltahall.io import atomic_write_bytes


def grid_array(
    images: Any, ncol: int | None = None, cell: int | None = None, pad: int = 2
) -> np.ndarray:
    """Tile ``(n, C, H, W)`` images in [0, 1] into one uint8 array ``(rows, cols, 3)``.

    ``cell`` (pixels per tile side) defaults to the image side, but at least 48 (tiny
    images are enlarged with nearest-neighbour so pixels stay visible) and at most 128.
    """
    import torch
    import torch.nn.functional as F

    x = torch.as_tensor(images).float().clamp(0, 1)
    n, c = x.shape[0], x.shape[1]
    if c == 1:
        x = x.expand(-1, 3, -1, -1)
    side = x.shape[-1]
    cell = cell or min(128, max(48, side))
    if cell != side:
        mode = "nearest" if cell > side else "area"
        x = F.interpolate(x, size=(cell, cell), mode=mode)
    ncol = ncol or max(1, math.ceil(math.sqrt(n)))
    nrow = max(1, math.ceil(n / ncol))
    canvas = (
        np.ones((nrow * (cell + pad) + pad, ncol * (cell + pad) + pad, 3), dtype=np.uint8) * 255
    )
    arr = (x.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    for k in range(n):
        r, q = divmod(k, ncol)
        y0, x0 = pad + r * (cell + pad), pad + q * (cell + pad)
        canvas[y0 : y0 + cell, x0 : x0 + cell] = arr[k]
    return canvas


def save_grid(images: Any, path: str | os.PathLike[str], ncol: int | None = None) -> None:
    """Write :func:`grid_array` of ``images`` as a PNG (atomically)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(grid_array(images, ncol)).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
