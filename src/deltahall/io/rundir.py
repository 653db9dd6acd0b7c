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

    Non-finite floats (NaN, +inf, -inf) become ``None`` (JSON ``null``), so the result is
    strict JSON; :func:`nonfinite_fields` says where they were, and :func:`dumps_json`
    records that (or the caller's reason) in a ``null_reasons`` field.
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
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    return str(obj)


def _pointer_token(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def nonfinite_fields(obj: Any, _at: str = "") -> dict[str, str]:
    """Where :func:`to_jsonable` turns a non-finite float into ``null``.

    Returns
    -------
    dict
        JSON Pointer (RFC 6901, e.g. ``"/metrics/rate"``, ``"/rows/3/x"``) of each such value
        -> ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``.

    Examples
    --------
    >>> nonfinite_fields({"rate": float("nan"), "xs": [1.0, float("-inf")]})
    {'/rate': 'NaN', '/xs/1': '-Infinity'}
    """
    out: dict[str, str] = {}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            out.update(nonfinite_fields(v, f"{_at}/{_pointer_token(str(k))}"))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(nonfinite_fields(v, f"{_at}/{i}"))
    elif hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
        out.update(nonfinite_fields(obj.tolist(), _at))
    elif isinstance(obj, float) and not math.isfinite(obj):
        out[_at] = "NaN" if math.isnan(obj) else ("Infinity" if obj > 0 else "-Infinity")
    return out


NULL_REASONS_KEY = "null_reasons"


def dumps_json(
    obj: Any, *, null_reasons: Mapping[str, str] | None = None, indent: int | None = 2
) -> str:
    """Strict JSON of :func:`to_jsonable` ``(obj)``, ending in a newline.

    No ``NaN``/``Infinity`` is ever written (strict parsers reject them): each non-finite
    float becomes ``null``. When ``obj`` is a mapping and some value is null for that reason,
    or ``null_reasons`` is given, a top-level field ``"null_reasons"`` says why: it maps the
    JSON Pointer of each such value to the caller's reason (``null_reasons``, keyed by
    pointer, e.g. ``{"/hallucination_rate": "no rows to score"}``) or, failing one, to the
    value that could not be written (``"NaN"``, ``"Infinity"``, ``"-Infinity"``). A
    ``null_reasons`` already in ``obj`` is kept and extended. For a top-level list or scalar
    the values are still null; wrap it in a dict to carry reasons.

    Examples
    --------
    >>> print(dumps_json({"rate": float("nan"), "n": 0}, indent=None), end="")
    {"rate": null, "n": 0, "null_reasons": {"/rate": "NaN"}}
    """
    data = to_jsonable(obj)
    if isinstance(data, dict):
        reasons = dict(nonfinite_fields(obj))
        reasons.update(null_reasons or {})
        if reasons:
            old = data.get(NULL_REASONS_KEY)
            data[NULL_REASONS_KEY] = {**(old if isinstance(old, dict) else {}), **reasons}
    elif null_reasons:
        raise TypeError(
            f"`null_reasons` needs a mapping at the top level to live in; got {type(obj).__name__}."
        )
    return json.dumps(data, indent=indent, sort_keys=False, allow_nan=False) + "\n"


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


def read_run_json(root: str | os.PathLike[str], name: str, *, missing_ok: bool = False) -> Any:
    """The JSON file ``name`` of the run folder ``root`` (``manifest.json``, ``result.json``, ...).

    For an experiment's results module, which is the one place that reads its run folder back
    (``tests/test_layers.py``). Nothing is created: a reader never makes the folder it reads.

    Parameters
    ----------
    root : path
        The run folder.
    name : str
        The file inside it.
    missing_ok : bool
        Return ``{}`` when the file does not exist (a run that has not written it yet).

    Returns
    -------
    any
        The parsed JSON.

    Raises
    ------
    FileNotFoundError
        The file does not exist (and ``missing_ok`` is False); the message names it.
    ValueError
        The file is not JSON; the message names the file.

    Examples
    --------
    >>> import tempfile
    >>> rd = RunDir(tempfile.mkdtemp())
    >>> _ = rd.write_json("result.json", {"rate": 0.5})
    >>> read_run_json(rd.root, "result.json"), read_run_json(rd.root, "absent.json", missing_ok=True)
    ({'rate': 0.5}, {})
    """
    path = Path(root) / name
    if not path.is_file():
        if missing_ok:
            return {}
        raise FileNotFoundError(f"no {name} in the run folder {root}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a JSON file: {exc}") from exc


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

    def save_figure(
        self, fig: Any, name: str, formats: Sequence[str] = ("png", "svg"), dpi: int = 120
    ) -> list[Path]:
        """Save a matplotlib figure under ``figures/`` in each format (atomic)."""
        out = []
        for fmt in formats:
            buf = io.BytesIO()
            fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight")
            out.append(atomic_write_bytes(self.path("figures", f"{name}.{fmt}"), buf.getvalue()))
        return out
