"""Reading the reference and generated sets: ``.npy`` embeddings, image folders, JSONL texts.

Three input kinds, recognised by the path:

- ``*.npy``: embeddings ``(n, d)`` (``--embedder precomputed``), with the reference's
  state labels and the generated set's prompts in separate ``.npy`` files;
- a folder of images: for the reference, one subfolder per latent state; for the
  generated set, images directly in it (one prompt, ``""``) or one subfolder per prompt;
- ``*.jsonl``: one JSON object per line with ``text`` (and ``state`` for the reference,
  an optional ``prompt`` and ``id`` for the generated set).

Images and texts are embedded with :func:`deltahall.models.load_embedder`; each input's
embeddings are cached under a key made of the input's content hash and the embedder's
fingerprint, so re-measuring (another α, another split) does not embed again.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

__all__ = [
    "IMAGE_SUFFIXES",
    "Samples",
    "content_hash",
    "embed_samples",
    "input_kind",
    "load_generated",
    "load_reference",
    "read_calibration_samples",
    "read_generated",
    "read_reference",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
PRECOMPUTED = "precomputed"
_LOAD_BATCH = 256  # images opened at once


@dataclass
class Samples:
    """One input set, embedded.

    Attributes
    ----------
    embeddings : ndarray of shape (n, d)
    ids : list of str
        Row index (``.npy``), image path relative to the input folder, or JSONL ``id`` / line number.
    labels : ndarray of shape (n,) or None
        Latent state of each row (reference only; ``None`` when unlabelled).
    prompts : list of str or None
        Prompt of each row (generated only).
    texts : list of str or None
        The texts (JSONL inputs).
    image_paths : list of Path or None
        The image files (folder inputs).
    kind : {"npy", "images", "jsonl"}
    """

    embeddings: npt.NDArray[Any]
    ids: list[str]
    labels: npt.NDArray[Any] | None = None
    prompts: list[str] | None = None
    texts: list[str] | None = None
    image_paths: list[Path] | None = None
    kind: str = "npy"
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])


def input_kind(path: str | os.PathLike[str], name: str) -> str:
    """``"npy"``, ``"jsonl"`` or ``"images"``; FileNotFoundError / ValueError otherwise."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"`{name}` not found: {os.fspath(p)!r}.")
    if p.is_dir():
        return "images"
    suffix = p.suffix.lower()
    if suffix == ".npy":
        return "npy"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    raise ValueError(
        f"`{name}` must be a .npy file, a .jsonl file or a folder of images; got {os.fspath(p)!r}."
    )


def _load_npy(path: Path, name: str, ndim: int, *, mmap: bool = False) -> npt.NDArray[Any]:
    try:
        arr = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except ValueError as exc:
        raise ValueError(
            f"`{name}` {os.fspath(path)!r} cannot be read without pickle ({exc}); save a plain .npy."
        ) from None
    if arr.ndim != ndim:
        shape = "(n_samples, n_features)" if ndim == 2 else "(n_samples,)"
        raise ValueError(f"`{name}` {os.fspath(path)!r} must have shape {shape}; got {arr.shape}.")
    if ndim == 2 and arr.dtype.kind not in "fiu":
        raise ValueError(f"`{name}` {os.fspath(path)!r} must be numeric; got dtype {arr.dtype}.")
    return arr


def content_hash(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file, or of a folder's image files (relative paths and bytes, sorted)."""
    p = Path(path)
    h = hashlib.sha256()
    files = [p] if p.is_file() else _image_files(p, recursive=True)
    for f in files:
        if p.is_dir():
            h.update(f.relative_to(p).as_posix().encode("utf-8") + b"\0")
        with open(f, "rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
    return h.hexdigest()


def _image_files(folder: Path, *, recursive: bool) -> list[Path]:
    """Image files under ``folder``, sorted; symbolic links (files and folders) are never followed.

    A link inside an input folder is skipped with one warning: following links can loop or
    reach outside the folder (and silently multiply the rows).
    """
    out: list[Path] = []
    skipped = 0
    if recursive:
        for root, dirs, files in os.walk(folder, followlinks=False):
            r = Path(root)
            keep = []
            for d in dirs:
                if (r / d).is_symlink():
                    skipped += 1
                elif not d.startswith("."):
                    keep.append(d)
            dirs[:] = keep
            for f in files:
                fp = r / f
                if fp.is_symlink():
                    skipped += 1
                elif fp.suffix.lower() in IMAGE_SUFFIXES and not f.startswith("."):
                    out.append(fp)
    else:
        for fp in folder.iterdir():
            if fp.is_symlink():
                skipped += 1 if fp.suffix.lower() in IMAGE_SUFFIXES or fp.is_dir() else 0
            elif (
                fp.is_file() and fp.suffix.lower() in IMAGE_SUFFIXES and not fp.name.startswith(".")
            ):
                out.append(fp)
    if skipped:
        logger.warning(
            "%s: skipped %d symbolic link(s); links inside input folders are not followed.",
            os.fspath(folder),
            skipped,
        )
    return sorted(out)


def _subfolders(folder: Path) -> list[Path]:
    return sorted(
        d
        for d in folder.iterdir()
        if d.is_dir() and not d.is_symlink() and not d.name.startswith(".")
    )


#: Keys a JSONL row may carry, per input.
REFERENCE_KEYS = ("text", "state", "prompt", "id")
GENERATED_KEYS = ("text", "prompt", "id")


def _read_jsonl(
    path: Path, name: str, required: tuple[str, ...], allowed: tuple[str, ...] = REFERENCE_KEYS
) -> list[dict[str, Any]]:
    """Rows of a JSON Lines file (:func:`deltahall.io.jsonl.iter_jsonl`): objects with ``required`` strings.

    A key outside ``allowed`` is an error naming the file, line and key (a misspelt ``prompt``
    must not be silently ignored); ``prompt``, ``state`` and ``id``, when present, must be strings.
    """
    from deltahall.io.jsonl import iter_jsonl

    rows: list[dict[str, Any]] = []
    for i, obj in iter_jsonl(path):
        if not isinstance(obj, dict):
            raise ValueError(
                f"`{name}` {os.fspath(path)}:{i}: each line must be a JSON object; got {type(obj).__name__}."
            )
        unknown = sorted(k for k in obj if k not in allowed)
        if unknown:
            raise ValueError(
                f"`{name}` {os.fspath(path)}:{i}: unknown key(s) {unknown}; a row may hold "
                f"{', '.join(repr(k) for k in allowed)}."
            )
        for key in required:
            if not isinstance(obj.get(key), str):
                raise ValueError(
                    f"`{name}` {os.fspath(path)}:{i}: needs a string {key!r} field; got {obj.get(key)!r}."
                )
        for key in ("prompt", "state", "id"):
            if key in obj and not isinstance(obj[key], str):
                raise ValueError(
                    f"`{name}` {os.fspath(path)}:{i}: {key!r} must be a string; got {obj[key]!r}."
                )
        obj["_line"] = i
        rows.append(obj)
    return rows


# --------------------------------------------------------------------- embedding
def _embed_cached(
    embedder: Any, items: list[Any], *, key_source: str, cache_dir: Path | None, loader: Any = None
) -> npt.NDArray[np.float32]:
    """Embed ``items`` unless the cache holds them; atomic cache writes.

    ``loader(batch)`` turns a batch of ``items`` into what the embedder takes (e.g. image
    paths into opened images), so only one batch of images is in memory at a time.
    """
    from deltahall.io import atomic_write_bytes

    fp = json.dumps(
        getattr(embedder, "fingerprint", {"name": getattr(embedder, "name", "?")}),
        sort_keys=True,
        default=str,
    )
    # The key names the rows in their order too: the same content read in another order is another entry.
    order = hashlib.sha256("\0".join(map(str, items)).encode("utf-8")).hexdigest()
    key = hashlib.sha256((key_source + "\0" + order + "\0" + fp).encode("utf-8")).hexdigest()[:32]
    path = None if cache_dir is None else Path(cache_dir) / f"emb-{key}.npy"
    if path is not None and path.is_file():
        try:
            arr = np.load(path, allow_pickle=False)
            if arr.ndim == 2 and arr.shape[0] == len(items):
                logger.info("embeddings from cache %s", path)
                return np.asarray(arr, dtype=np.float32)
        except (ValueError, OSError) as exc:  # a damaged cache entry is recomputed
            logger.warning("ignoring unreadable cache file %s (%s)", path, exc)
    if loader is None:
        E = np.asarray(embedder.embed(items), dtype=np.float32)
    else:
        parts = [
            np.asarray(embedder.embed(loader(items[s : s + _LOAD_BATCH])), dtype=np.float32)
            for s in range(0, len(items), _LOAD_BATCH)
        ]
        E = np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)
    if E.ndim != 2 or E.shape[0] != len(items):
        from deltahall._validation import RunFailure

        raise RunFailure(
            f"embedder {getattr(embedder, 'name', '?')!r} returned shape {E.shape} for {len(items)} inputs."
        )
    if path is not None:
        buf = io.BytesIO()
        np.save(buf, E, allow_pickle=False)
        atomic_write_bytes(path, buf.getvalue())
    return E


def _check_modality(embedder: Any, want: str, name: str, path: Path) -> None:
    got = getattr(embedder, "modality", want)
    if got != want:
        raise ValueError(
            f"`{name}` {os.fspath(path)!r} holds {want}s but the embedder {getattr(embedder, 'name', '?')!r} "
            f"embeds {got}s; pass a {want} embedder."
        )


def _open_images(paths: list[Path]) -> list[Any]:
    """Opened images, one line naming the file for any unreadable one (a decompression bomb included)."""
    from deltahall._validation import require

    require("PIL.Image", "t2i", what="reading image folders")
    from deltahall.models.base import open_image

    return [open_image(p) for p in paths]


def _embed_images(
    embedder: Any, paths: list[Path], root: Path, name: str, cache_dir: Path | None
) -> npt.NDArray[np.float32]:
    _check_modality(embedder, "image", name, root)
    return _embed_cached(
        embedder,
        paths,
        key_source="images:" + content_hash(root),
        cache_dir=cache_dir,
        loader=_open_images,
    )


def _embed_texts(
    embedder: Any, texts: list[str], path: Path, name: str, cache_dir: Path | None
) -> npt.NDArray[np.float32]:
    _check_modality(embedder, "text", name, path)
    return _embed_cached(
        embedder, texts, key_source="jsonl:" + content_hash(path), cache_dir=cache_dir
    )


def _need_embedder(embedder: Any, kind: str, name: str, path: Path) -> Any:
    if embedder is None or embedder == PRECOMPUTED:
        raise ValueError(
            f"`{name}` {os.fspath(path)!r} is {'an image folder' if kind == 'images' else 'a JSONL file'}; "
            "pass `--embedder` (an alias such as @minilm / @digits-cnn, a hub id or a model folder), "
            "or give .npy embeddings with `--embedder precomputed`."
        )
    return embedder


# --------------------------------------------------------------------- readers
def _pending(samples: Samples, kind: str, name: str, path: Path, items: list[Any]) -> Samples:
    samples.meta.update({"pending": (kind, name, path, items)})
    return samples


def embed_samples(
    samples: Samples, embedder: Any, cache_dir: str | os.PathLike[str] | None
) -> Samples:
    """Embed what :func:`read_reference` / :func:`read_generated` left pending (a no-op for ``.npy``)."""
    pend = samples.meta.pop("pending", None)
    if pend is None:
        return samples
    kind, name, path, items = pend
    emb = _need_embedder(embedder, kind, name, path)
    cd = None if cache_dir is None else Path(cache_dir)
    if kind == "images":
        samples.embeddings = _embed_images(emb, items, path, name, cd)
    else:
        samples.embeddings = _embed_texts(emb, items, path, name, cd)
    return samples


def _no_embeddings() -> npt.NDArray[np.float32]:
    return np.zeros((0, 0), dtype=np.float32)


def read_reference(
    path: str | os.PathLike[str],
    *,
    labels: str | os.PathLike[str] | None = None,
    require_labels: bool = True,
) -> Samples:
    """Read the real samples and their states **without embedding** them (cheap; validate first).

    ``.npy`` inputs are loaded (memory-mapped); folders and JSONL files are listed and their
    rows checked, and the embedding is left to :func:`embed_samples`. JSONL rows may carry a
    ``prompt``: then states are scoped to their prompt (``Samples.prompts``), and every row
    must carry one (mixing scoped and global states is refused).
    """
    p = Path(path)
    kind = input_kind(p, "reference")
    if kind == "npy":
        X = _load_npy(p, "reference", 2, mmap=True)
        y = None
        if labels is not None:
            lp = Path(labels)
            if not lp.is_file():
                raise FileNotFoundError(f"`reference_labels` not found: {os.fspath(lp)!r}.")
            y = _load_npy(lp, "reference_labels", 1)
            if y.shape[0] != X.shape[0]:
                raise ValueError(
                    f"`reference_labels` must have one label per reference row; got {y.shape[0]} labels "
                    f"for {X.shape[0]} rows."
                )
        elif require_labels:
            raise ValueError(
                "`reference_labels` is required with .npy reference embeddings (one state per row), "
                "or pass `--states auto` to discover the states."
            )
        return Samples(embeddings=X, ids=[str(i) for i in range(X.shape[0])], labels=y, kind="npy")
    if labels is not None:
        raise ValueError(
            "`reference_labels` applies only to .npy reference embeddings; folders and JSONL carry their states."
        )
    if kind == "images":
        subdirs = _subfolders(p)
        loose = _image_files(p, recursive=False)
        if require_labels and loose:
            raise ValueError(
                f"`reference` folder {os.fspath(p)!r} must hold one subfolder of images per state; found "
                f"{len(loose)} image(s) at its top level (e.g. {loose[0].name!r})."
            )
        files: list[Path] = []
        ys: list[str] = []
        for d in subdirs:
            fs = _image_files(d, recursive=True)
            files += fs
            ys += [d.name] * len(fs)
        if not require_labels:
            files += loose
            ys += [""] * len(loose)
        if not files:
            raise ValueError(
                f"`reference` folder {os.fspath(p)!r} holds no images ({', '.join(IMAGE_SUFFIXES)})."
            )
        if require_labels and len(set(ys)) < 2:
            raise ValueError(
                f"`reference` folder {os.fspath(p)!r} must hold at least two state subfolders with images; "
                f"got {sorted(set(ys))}."
            )
        s = Samples(
            embeddings=_no_embeddings(),
            ids=[f.relative_to(p).as_posix() for f in files],
            labels=np.asarray(ys) if require_labels else None,
            image_paths=files,
            kind="images",
        )
        return _pending(s, "images", "reference", p, files)
    rows = _read_jsonl(p, "reference", ("text", "state") if require_labels else ("text",))
    if not rows:
        raise ValueError(f"`reference` {os.fspath(p)!r} holds no rows.")
    scoped = ["prompt" in r for r in rows]
    if any(scoped) and not all(scoped):
        first = rows[scoped.index(False)]["_line"] if any(scoped) else 0
        raise ValueError(
            f"`reference` {os.fspath(p)}: {sum(scoped)} row(s) carry a 'prompt' (states scoped to their prompt) "
            f"and {len(rows) - sum(scoped)} do not (global states), e.g. line {first}; give every row a "
            "'prompt' or none."
        )
    texts = [r["text"] for r in rows]
    s = Samples(
        embeddings=_no_embeddings(),
        ids=[str(r.get("id", r["_line"])) for r in rows],
        labels=np.asarray([r["state"] for r in rows]) if require_labels else None,
        prompts=[r["prompt"] for r in rows] if all(scoped) else None,
        texts=texts,
        kind="jsonl",
    )
    return _pending(s, "jsonl", "reference", p, texts)


def read_generated(
    path: str | os.PathLike[str],
    *,
    prompts: str | os.PathLike[str] | None = None,
) -> Samples:
    """Read the generated samples and their prompts (``""`` when none) **without embedding** them.

    Two rows with one ``id`` are refused (ids key the per-sample outputs).
    """
    p = Path(path)
    kind = input_kind(p, "generated")
    if kind == "npy":
        X = _load_npy(p, "generated", 2, mmap=True)
        pr: list[str] = [""] * X.shape[0]
        if prompts is not None:
            pp = Path(prompts)
            if not pp.is_file():
                raise FileNotFoundError(f"`generated_prompts` not found: {os.fspath(pp)!r}.")
            parr = _load_npy(pp, "generated_prompts", 1)
            if parr.shape[0] != X.shape[0]:
                raise ValueError(
                    f"`generated_prompts` must have one prompt per generated row; got {parr.shape[0]} for {X.shape[0]} rows."
                )
            pr = [str(v) for v in parr.tolist()]
        if X.shape[0] == 0:
            raise ValueError(
                f"`generated` must contain at least one sample; {os.fspath(p)!r} has none."
            )
        return Samples(
            embeddings=X, ids=[str(i) for i in range(X.shape[0])], prompts=pr, kind="npy"
        )
    if prompts is not None:
        raise ValueError("`generated_prompts` applies only to .npy generated embeddings.")
    if kind == "images":
        files = _image_files(p, recursive=False)
        prs = [""] * len(files)
        for d in _subfolders(p):
            fs = _image_files(d, recursive=True)
            files += fs
            prs += [d.name] * len(fs)
        if not files:
            raise ValueError(
                f"`generated` must contain at least one sample; folder {os.fspath(p)!r} holds no images."
            )
        s = Samples(
            embeddings=_no_embeddings(),
            ids=[f.relative_to(p).as_posix() for f in files],
            prompts=prs,
            image_paths=files,
            kind="images",
        )
        return _pending(s, "images", "generated", p, files)
    rows = _read_jsonl(p, "generated", ("text",), GENERATED_KEYS)
    if not rows:
        raise ValueError(
            f"`generated` must contain at least one sample; {os.fspath(p)!r} holds no rows."
        )
    ids = [str(r.get("id", r["_line"])) for r in rows]
    seen: dict[str, int] = {}
    for r, i in zip(rows, ids, strict=True):
        if i in seen:
            raise ValueError(
                f"`generated` {os.fspath(p)}:{r['_line']}: id {i!r} was already used on line "
                f"{seen[i]}; every row's id must be unique."
            )
        seen[i] = r["_line"]
    texts = [r["text"] for r in rows]
    s = Samples(
        embeddings=_no_embeddings(),
        ids=ids,
        prompts=[str(r.get("prompt", "")) for r in rows],
        texts=texts,
        kind="jsonl",
    )
    return _pending(s, "jsonl", "generated", p, texts)


def read_calibration_samples(path: str | os.PathLike[str]) -> Samples:
    """In-state calibration samples for per-prompt states: JSONL rows ``{"text", "state", "prompt"}``."""
    p = Path(path)
    if input_kind(p, "calibration_samples") != "jsonl":
        raise ValueError(
            f'`calibration_samples` must be a JSONL file of {{"text", "state", "prompt"}} rows; '
            f"got {os.fspath(p)!r}."
        )
    rows = _read_jsonl(p, "calibration_samples", ("text", "state", "prompt"))
    if not rows:
        raise ValueError(f"`calibration_samples` {os.fspath(p)!r} holds no rows.")
    texts = [r["text"] for r in rows]
    s = Samples(
        embeddings=_no_embeddings(),
        ids=[str(r.get("id", r["_line"])) for r in rows],
        labels=np.asarray([r["state"] for r in rows]),
        prompts=[r["prompt"] for r in rows],
        texts=texts,
        kind="jsonl",
    )
    return _pending(s, "jsonl", "calibration_samples", p, texts)


def load_reference(
    path: str | os.PathLike[str],
    *,
    labels: str | os.PathLike[str] | None = None,
    embedder: Any = None,
    cache_dir: str | os.PathLike[str] | None = None,
    require_labels: bool = True,
) -> Samples:
    """:func:`read_reference` then :func:`embed_samples`."""
    return embed_samples(
        read_reference(path, labels=labels, require_labels=require_labels), embedder, cache_dir
    )


def load_generated(
    path: str | os.PathLike[str],
    *,
    prompts: str | os.PathLike[str] | None = None,
    embedder: Any = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Samples:
    """:func:`read_generated` then :func:`embed_samples`."""
    return embed_samples(read_generated(path, prompts=prompts), embedder, cache_dir)
