"""``deltahall embed``: texts (JSONL) or images (a folder) -> a float32 ``.npy`` + JSON sidecar.

Everything is checked before the first write: the output is not an input (nor inside the
image folder) and not a directory, every JSONL line parses and has a string ``text``, every
image file opens. The ``.npy`` (pickle-free) and its sidecar ``E.json`` are written
atomically; the sidecar names the embedder (spec + fingerprint with its weights' SHA-256),
the input's SHA-256, ``n``, ``dim`` and the item ids (JSONL line numbers, or image paths
relative to the folder), in the order of the rows.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

#: File suffixes read as images (case-insensitive).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def register(sub: argparse._SubParsersAction, name: str, summary: str) -> None:
    from deltahall.models import ALIASES
    from deltahall.models.embedders import EMBEDDERS

    known = ", ".join(f"'{a}' ({ALIASES.get(a).kind.split('-')[0]})" for a in EMBEDDERS)
    p = sub.add_parser(
        name,
        help=summary,
        description=(
            "Embed texts or images with a registry model and write a float32 .npy (rows in input "
            "order) plus a JSON sidecar (same name, .json) naming the embedder, its weights' "
            f"SHA-256, the input's SHA-256 and the item ids. Models: {known}, or a local folder / "
            "hub id of a sentence-transformers or CLIP vision model."
        ),
    )
    p.add_argument(
        "--embedder",
        required=True,
        metavar="SPEC",
        help=f"an embedder alias ({', '.join(EMBEDDERS)}), a model folder or a hub id",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--texts",
        metavar="FILE.jsonl",
        help="JSON Lines, one object per line with a string field 'text'",
    )
    src.add_argument(
        "--images", metavar="DIR", help="folder; every image file under it (recursive, sorted)"
    )
    p.add_argument(
        "--out", required=True, metavar="E.npy", help="output .npy; the sidecar is E.json beside it"
    )
    p.add_argument("--batch-size", type=int, default=64, help="items per forward pass (default 64)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--json", action="store_true", help="print the sidecar (without ids) as JSON")
    p.set_defaults(handler=run_embed)


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_texts_jsonl(path: Path) -> tuple[list[str], list[int], str]:
    """``(texts, line_numbers, sha256)`` of a JSONL file; lines split on ``\\n`` only.

    Blank lines are skipped. Errors name the file and the 1-based line.
    """
    if not path.is_file():
        if path.exists():
            raise ValueError(f"`--texts` must be a JSONL file; got the folder {os.fspath(path)!r}.")
        raise FileNotFoundError(f"`--texts` file not found: {os.fspath(path)!r}.")
    from deltahall.io.jsonl import iter_jsonl

    texts: list[str] = []
    ids: list[int] = []
    for i, obj in iter_jsonl(path):  # "\n"-only lines; bad UTF-8 / JSON name the file and line
        if not isinstance(obj, dict):
            raise ValueError(
                f"{os.fspath(path)}:{i}: must be a JSON object with a 'text' field; got {type(obj).__name__}."
            )
        if "text" not in obj:
            raise ValueError(
                f"{os.fspath(path)}:{i}: has no 'text' field (fields: {', '.join(map(str, obj)) or 'none'})."
            )
        if not isinstance(obj["text"], str):
            raise ValueError(
                f"{os.fspath(path)}:{i}: 'text' must be a string; got {type(obj['text']).__name__}."
            )
        texts.append(obj["text"])
        ids.append(i)
    data = path.read_bytes()
    if not texts:
        raise ValueError(f"`--texts` {os.fspath(path)!r} has no records (it is empty or blank).")
    return texts, ids, _sha256_bytes(data)


def list_images(folder: Path) -> tuple[list[Path], list[str], str]:
    """``(files, relative ids, sha256)`` of every image file under ``folder``, sorted; each must open.

    The hash covers each file's relative path and bytes, in order.
    """
    if not folder.is_dir():
        if folder.exists():
            raise ValueError(f"`--images` must be a folder; got the file {os.fspath(folder)!r}.")
        raise FileNotFoundError(f"`--images` folder not found: {os.fspath(folder)!r}.")
    files = sorted(
        (p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
        key=lambda p: p.relative_to(folder).as_posix(),
    )
    if not files:
        raise ValueError(
            f"`--images` folder {os.fspath(folder)!r} contains no image files ({', '.join(IMAGE_SUFFIXES)})."
        )
    digest = hashlib.sha256()
    ids = []
    for f in files:
        rel = f.relative_to(folder).as_posix()
        data = f.read_bytes()
        _check_image(f, data)
        digest.update(rel.encode("utf-8") + b"\0" + hashlib.sha256(data).digest())
        ids.append(rel)
    return files, ids, digest.hexdigest()


def _check_image(path: Path, data: bytes) -> None:
    """``data`` (the bytes of ``path``) must decode as an image of a sane size; errors name ``path``."""
    from deltahall._validation import BadInput
    from deltahall.models.base import open_image

    try:
        open_image(io.BytesIO(data))
    except BadInput as exc:  # the message names "<_io.BytesIO ...>": name the file instead
        raise BadInput(f"{os.fspath(path)}: {str(exc).split(': ', 1)[1]}") from None


def _load_images(files: list[Path]) -> list[Any]:
    from deltahall.models.base import open_image

    return [open_image(f) for f in files]


def run_embed(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from deltahall import __version__
    from deltahall._validation import RunFailure, check_int, check_output_path
    from deltahall.io.atomic import atomic_write_bytes, atomic_write_text
    from deltahall.models import ALIASES, load_embedder

    batch_size = check_int(args.batch_size, "--batch-size", low=1)
    out = Path(args.out)
    if out.suffix != ".npy":
        raise ValueError(f"`--out` must end in .npy; got {args.out!r}.")
    sidecar = out.with_suffix(".json")
    modality = "text" if args.texts is not None else "image"
    in_name, in_path = ("--texts", args.texts) if modality == "text" else ("--images", args.images)
    check_output_path(out, "--out", inputs=[(in_name, in_path)])
    check_output_path(sidecar, "--out's sidecar", inputs=[(in_name, in_path)])
    alias = ALIASES.get(args.embedder, None)
    if alias is not None and alias.kind != f"{modality}-embedder":
        raise ValueError(
            f"`--embedder` {args.embedder!r} ({alias.kind}) cannot embed {in_name} input."
        )

    ids: list[Any]
    texts: list[str] = []
    files: list[Path] = []
    if modality == "text":
        texts, line_numbers, in_sha = read_texts_jsonl(Path(args.texts))
        ids, n = list(line_numbers), len(texts)
    else:
        files, rel_paths, in_sha = list_images(Path(args.images))
        ids, n = list(rel_paths), len(files)

    embedder = load_embedder(args.embedder, device=args.device, batch_size=batch_size)
    if embedder.modality != modality:
        raise ValueError(
            f"`--embedder` {args.embedder!r} embeds {embedder.modality}s; it cannot embed {in_name} input."
        )
    chunks = []
    with tqdm(
        total=n,
        desc=f"embed {args.embedder}",
        unit=modality,
        disable=args.no_progress,
        file=sys.stderr,
    ) as bar:
        for i in range(0, n, batch_size):
            batch = (
                texts[i : i + batch_size]
                if modality == "text"
                else _load_images(files[i : i + batch_size])
            )
            chunks.append(embedder.embed(batch, batch_size=batch_size))
            bar.update(len(batch))
    emb = np.ascontiguousarray(np.concatenate(chunks), dtype=np.float32)
    if emb.shape != (n, embedder.dim):
        raise RunFailure(
            f"embedder {args.embedder!r} returned shape {emb.shape}; expected {(n, embedder.dim)}."
        )
    if not np.isfinite(emb).all():
        bad = int((~np.isfinite(emb)).any(axis=1).sum())
        raise RunFailure(
            f"embedder {args.embedder!r} returned NaN/inf for {bad} of {n} items; nothing written."
        )

    meta = {
        "embedder": {"spec": args.embedder, "fingerprint": embedder.fingerprint},
        "input": {
            "kind": "texts" if modality == "text" else "images",
            "path": os.fspath(in_path),
            "sha256": in_sha,
        },
        "n": n,
        "dim": int(embedder.dim),
        "dtype": "float32",
        "npy": out.name,
        "deltahall": __version__,
        "ids": ids,
    }
    buf = io.BytesIO()
    np.save(buf, emb, allow_pickle=False)
    text = json.dumps(meta, indent=2, allow_nan=False)
    atomic_write_bytes(out, buf.getvalue())
    atomic_write_text(sidecar, text + "\n")
    if args.json:
        print(
            json.dumps(
                {k: v for k, v in meta.items() if k != "ids"}
                | {"out": os.fspath(out), "sidecar": os.fspath(sidecar)},
                allow_nan=False,
            )
        )
    else:
        print(f"wrote {os.fspath(out)} ({n} x {embedder.dim} float32) and {os.fspath(sidecar)}")
    return 0
