"""Training images with their latent state (class), from three sources.

- ``@sklearn-digits``: scikit-learn's bundled 8x8 digits (no download);
- a local folder with one subfolder per class (``cat/``, ``dog/`` for AFHQ);
- a ``datasets`` id (``image_column`` / ``label_column``; labels as names or ``ClassLabel``).

Every source yields images as float tensors ``(C, H, W)`` in [0, 1] at the configured
resolution (shorter side resized, centre-cropped) and integer labels indexing
``config.classes``. Items are addressed by ``(index, flip)`` so that the random
horizontal flip is decided by the caller's seeded RNG, not inside a worker process.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from deltahall.experiments.t2i.config import SKLEARN_DIGITS, T2IConfig
from deltahall.models.digits_cnn import (
    load_digits_arrays,  # one loader for the digits, shared with the embedder
)

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")


class ImageData:
    """Indexable images + labels. ``item((i, flip)) -> (tensor (C,H,W) in [0,1], label)``."""

    def __init__(
        self, labels: npt.NDArray[np.int64], class_names: tuple[str, ...], resolution: int
    ) -> None:
        self.labels = labels
        self.class_names = class_names
        self.resolution = resolution

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, key: tuple[int, bool]) -> tuple[Any, int]:
        i, flip = key
        img = self._image(int(i))
        if flip:
            img = img.flip(-1)
        return img, int(self.labels[i])

    def _image(self, i: int) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def subset(self, index: npt.NDArray[np.int64]) -> ImageData:
        """The items at ``index`` (a view that keeps loading lazily)."""
        return _Subset(self, np.asarray(index, dtype=np.int64))


class _Subset(ImageData):
    def __init__(self, parent: ImageData, index: npt.NDArray[np.int64]) -> None:
        super().__init__(parent.labels[index], parent.class_names, parent.resolution)
        self.parent = parent
        self.index = index

    def _image(self, i: int) -> Any:
        return self.parent._image(int(self.index[i]))


class TensorImages(ImageData):
    """Images already in memory, shape ``(n, C, H, W)`` in [0, 1]."""

    def __init__(
        self, images: Any, labels: npt.NDArray[np.int64], class_names: tuple[str, ...]
    ) -> None:
        super().__init__(labels, class_names, int(images.shape[-1]))
        self.images = images

    def _image(self, i: int) -> Any:
        return self.images[i]


def _pil_to_tensor(img: Any, resolution: int) -> Any:
    """PIL image -> float tensor (3, R, R) in [0, 1]: shorter side to R (bicubic), centre crop."""
    import torch
    from PIL import Image

    img = img.convert("RGB")
    w, h = img.size
    s = resolution / min(w, h)
    nw, nh = max(resolution, round(w * s)), max(resolution, round(h * s))
    img = img.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - resolution) // 2, (nh - resolution) // 2
    img = img.crop((left, top, left + resolution, top + resolution))
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy(arr.transpose(2, 0, 1).copy())


class FolderImages(ImageData):
    """``root/<class>/*.jpg`` images, loaded lazily."""

    def __init__(
        self,
        files: list[Path],
        labels: npt.NDArray[np.int64],
        class_names: tuple[str, ...],
        resolution: int,
    ) -> None:
        super().__init__(labels, class_names, resolution)
        self.files = files

    def _image(self, i: int) -> Any:
        from PIL import Image

        with Image.open(self.files[i]) as im:
            return _pil_to_tensor(im, self.resolution)


class HubImages(ImageData):
    """Rows of a ``datasets.Dataset``, loaded lazily."""

    def __init__(
        self,
        ds: Any,
        rows: npt.NDArray[np.int64],
        labels: npt.NDArray[np.int64],
        class_names: tuple[str, ...],
        resolution: int,
        column: str,
    ) -> None:
        super().__init__(labels, class_names, resolution)
        self.ds, self.rows, self.column = ds, rows, column

    def _image(self, i: int) -> Any:
        return _pil_to_tensor(self.ds[int(self.rows[i])][self.column], self.resolution)


# --------------------------------------------------------------------------- loaders
def _limit(
    labels: npt.NDArray[np.int64], n_classes: int, limit: int | None, rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    """Indices keeping at most ``limit`` items per class (a seeded choice), sorted."""
    keep = []
    for c in range(n_classes):
        idx = np.flatnonzero(labels == c)
        if limit is not None and idx.size > limit:
            idx = np.sort(rng.choice(idx, size=limit, replace=False))
        keep.append(idx)
    return np.sort(np.concatenate(keep)).astype(np.int64)


def _folder(root: Path, config: T2IConfig) -> FolderImages:
    files: list[Path] = []
    labels: list[int] = []
    classes = config.classes
    for k, name in enumerate(classes):
        sub = root / name
        if not sub.is_dir():
            present = sorted(p.name for p in root.iterdir() if p.is_dir())
            raise FileNotFoundError(
                f"`data` folder {root} must hold one subfolder per class {list(classes)}; "
                f"{name!r} is missing (subfolders found: {present})."
            )
        found = sorted(
            p for p in sub.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
        )
        if not found:
            raise ValueError(
                f"`data` class folder {sub} holds no images ({', '.join(IMAGE_EXTENSIONS)})."
            )
        files += found
        labels += [k] * len(found)
    return FolderImages(
        files, np.asarray(labels, dtype=np.int64), tuple(classes), int(config.resolution)
    )


def _hub(name: str, config: T2IConfig) -> HubImages:
    import datasets

    ds = datasets.load_dataset(name, split=config.data_split)
    for col in (config.image_column, config.label_column):
        if col not in ds.column_names:
            raise ValueError(f"dataset {name!r} has no column {col!r}; columns: {ds.column_names}.")
    feat = ds.features[config.label_column]
    raw = ds[config.label_column]
    names = (
        [feat.int2str(int(v)) for v in raw] if hasattr(feat, "int2str") else [str(v) for v in raw]
    )
    classes = tuple(config.classes)
    lookup = {c: k for k, c in enumerate(classes)}
    missing = [c for c in classes if c not in set(names)]
    if missing:
        raise ValueError(
            f"`classes` {missing} do not occur in column {config.label_column!r} of {name!r}; found {sorted(set(names))}."
        )
    rows = np.asarray([i for i, n in enumerate(names) if n in lookup], dtype=np.int64)
    labels = np.asarray([lookup[names[i]] for i in rows], dtype=np.int64)
    return HubImages(ds, rows, labels, classes, int(config.resolution), config.image_column)


def _looks_like_path(s: str) -> bool:
    """Hub ids are ``name`` or ``owner/name``; anything else is meant as a folder."""
    return s.startswith((".", "/", "~")) or s.count("/") >= 2 or os.sep != "/" and os.sep in s


def check_sources(config: T2IConfig) -> None:
    """Refuse, before a run writes anything, data and models that cannot be used.

    Scans a data folder (every class subfolder must hold at least one image) and checks that
    the model and the embedder can be loaded here (:func:`deltahall.models.registry.check_loadable`:
    a local folder of the right kind, or a hub id that is cached or reachable).

    Raises
    ------
    FileNotFoundError, ValueError
        A missing data folder or class subfolder, a class with no images, a model folder of
        the wrong kind.
    deltahall.models.registry.ModelUnavailableError
        A hub id that is neither cached nor reachable.
    """
    from deltahall.experiments.t2i.config import DIGITS_CNN, TINY_MODEL
    from deltahall.models.registry import check_loadable

    config.check_data_given()
    data = str(config.data)
    if data != SKLEARN_DIGITS:
        if Path(data).expanduser().is_dir():
            _folder(Path(data).expanduser(), config)
        elif _looks_like_path(data):
            raise FileNotFoundError(f"`data` folder not found: {data!r}.")
    if config.model != TINY_MODEL:
        check_loadable(
            str(config.model), marker="model_index.json", folder_marker="unet/config.json"
        )
    if config.embedder != DIGITS_CNN:
        check_loadable(str(config.embedder))


def load_training_images(config: T2IConfig) -> ImageData:
    """The training images of ``config.classes`` (at most ``max_train_images`` per class).

    Raises
    ------
    FileNotFoundError
        If ``data`` is a path that does not exist or lacks a class subfolder.
    ValueError
        If a class has no images.
    """
    rng = np.random.default_rng([config.seed, 11])
    classes = config.classes
    config.check_data_given()
    data = str(config.data)
    if data == SKLEARN_DIGITS:
        x, y = load_digits_arrays(int(config.resolution))
        digits = [int(c) for c in classes]
        sel = np.flatnonzero(np.isin(y, digits))
        labels = np.asarray([digits.index(int(v)) for v in y[sel]], dtype=np.int64)
        full: ImageData = TensorImages(x[sel], labels, tuple(classes))
    elif Path(data).expanduser().is_dir():
        full = _folder(Path(data).expanduser(), config)
    elif _looks_like_path(data):
        raise FileNotFoundError(f"`data` folder not found: {data!r}.")
    else:
        full = _hub(data, config)
    keep = _limit(full.labels, len(classes), config.max_train_images, rng)
    out = full if keep.size == len(full) else full.subset(keep)
    counts = np.bincount(out.labels, minlength=len(classes))
    logger.info("training images per class %s: %s", list(classes), counts.tolist())
    return out
