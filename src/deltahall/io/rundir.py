"""A run directory: every result beside the config, seed and package versions.

Layout written by :class:`RunDir`::

    <root>/
      manifest.json     # config, seed, command, package versions, start time
      *.csv / *.json    # results (atomic writes)
      figures/*.png|svg
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import io
import json
import logging
import math
import os
import platform
import sys
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from deltahall.io.atomic import atomic_write_bytes, atomic_write_text

logger = logging.getLogger(__name__)

_TRACKED_PACKAGES = (
    "deltahall",
    "numpy",
    "scipy",
    "scikit-learn",
    "matplotlib",
    "torch",
    "transformers",
    "diffusers",
    "peft",
    "accelerate",
    "safetensors",
    "tokenizers",
    "datasets",
)


def package_versions(extra: Iterable[str] = ()) -> dict[str, str | None]:
    """Versions of the packages that matter for reproducing a run (``None`` if absent)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in (*_TRACKED_PACKAGES, *extra):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def to_jsonable(obj: Any) -> Any:
    """Convert dataclasses, paths, numpy scalars/arrays, tuples to JSON-friendly values.

    Non-finite floats become the strings ``"nan"``, ``"inf"``, ``"-inf"`` so the
    output is strict JSON.
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
        return to_jsonable(obj.tolist())
    if isinstance(obj, float):
        if math.isnan(obj):
            return "nan"
        if math.isinf(obj):
            return "inf" if obj > 0 else "-inf"
        return obj
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    return str(obj)


def dumps_json(obj: Any) -> str:
    """Strict, indented JSON of :func:`to_jsonable` ``(obj)``."""
    return json.dumps(to_jsonable(obj), indent=2, sort_keys=False, allow_nan=False) + "\n"


def union_keys(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every key of ``rows``, in first-seen order (the columns of a table of dicts)."""
    seen: dict[str, None] = {}
    for r in rows:
        for k in r:
            seen.setdefault(k, None)
    return list(seen)


def rows_to_csv(rows: Sequence[Mapping[str, Any]], fieldnames: Sequence[str] | None = None) -> str:
    """Render dict rows as CSV text (columns: ``fieldnames`` or the union in first-seen order)."""
    if fieldnames is None:
        fieldnames = union_keys(rows)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(fieldnames), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _csv_cell(r.get(k)) for k in fieldnames})
    return buf.getvalue()


def _csv_cell(v: Any) -> Any:
    if isinstance(v, float):
        return repr(v)  # round-trips exactly
    if v is None:
        return ""
    return v


def read_csv(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """Read a CSV written by :meth:`RunDir.write_csv` as a list of string dicts."""
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


class RunDir:
    """A folder holding one run's outputs.

    Parameters
    ----------
    root : path
        The folder; created if missing.

    Examples
    --------
    >>> import tempfile
    >>> rd = RunDir(tempfile.mkdtemp())
    >>> p = rd.write_json("result.json", {"rate": 0.5})
    >>> p.name
    'result.json'
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, *parts: str) -> Path:
        """A path inside the run directory (parent folders are created)."""
        p = self.root.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def write_manifest(
        self, config: Any, *, seed: int | None = None, extra: Mapping[str, Any] | None = None
    ) -> Path:
        """Write ``manifest.json``: resolved config, seed, argv, versions, time."""
        manifest = {
            "config": to_jsonable(config),
            "config_type": f"{type(config).__module__}.{type(config).__qualname__}",
            "seed": seed,
            "argv": sys.argv,
            "versions": package_versions(),
            "platform": platform.platform(),
            "written_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        if extra:
            manifest.update(to_jsonable(dict(extra)))
        return self.write_json("manifest.json", manifest)

    def write_json(self, name: str, obj: Any) -> Path:
        return atomic_write_text(self.path(name), dumps_json(obj))

    def read_json(self, name: str) -> Any:
        with open(self.path(name), encoding="utf-8") as fh:
            return json.load(fh)

    def write_text(self, name: str, text: str) -> Path:
        return atomic_write_text(self.path(name), text)

    def write_bytes(self, name: str, data: bytes) -> Path:
        return atomic_write_bytes(self.path(name), data)

    def write_csv(
        self, name: str, rows: Sequence[Mapping[str, Any]], fieldnames: Sequence[str] | None = None
    ) -> Path:
        return atomic_write_text(self.path(name), rows_to_csv(rows, fieldnames))

    def save_figure(self, fig: Any, name: str, formats: Sequence[str] = ("png", "svg"), dpi: int = 120) -> list[Path]:
        """Save a matplotlib figure under ``figures/`` in each format (atomic)."""
        out = []
        for fmt in formats:
            buf = io.BytesIO()
            fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight")
            out.append(atomic_write_bytes(self.path("figures", f"{name}.{fmt}"), buf.getvalue()))
        return out
