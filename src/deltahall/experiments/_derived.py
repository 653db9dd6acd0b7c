"""Derived files in a run folder that already exists: the one way a command rebuilds them.

A command that *starts* a folder goes through :func:`deltahall.experiments._run.execute`. A
command that redraws tables, figures or a report *into an existing run* (``qa table``,
``t2i report``, ``modes report``) goes through :func:`rewrite`::

    check (read-only) -> write(rd, manifest) -> derived.json

1. ``run_dir`` is an existing, writable folder holding a readable ``manifest.json`` whose
   ``experiment`` is one of those expected (``execute`` records the name there), and every file
   of ``requires``; a ``derived.json`` already there is readable;
2. every declared output path (``outputs``: a report written elsewhere) can be written, is no
   folder and is not the run's ``manifest.json`` or ``derived.json``;
3. only then ``write(rd, manifest)`` runs. ``rd`` is a :class:`~deltahall.io.rundir.RunDir` of the
   folder that writes every file atomically (temporary file, then rename) and notes its name;
   it refuses to write ``manifest.json`` (``resume`` compares it) or ``derived.json``. The writer
   computes what it can before its first write, so a failure leaves each file either old or new,
   never half written;
4. the rebuild is recorded, atomically, in ``derived.json`` beside the manifest: one entry per
   rebuild with the command, ``argv``, the deltahall version, the UTC time and the files written.

A refused rewrite (any of 1-2) writes nothing. ``manifest.json`` is never modified.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from deltahall._validation import BadInput
from deltahall.experiments._run import MANIFEST, read_json_object
from deltahall.io.rundir import RunDir

__all__ = ["DERIVED", "rewrite"]

#: The record of the rebuilds of a run's derived files, beside its manifest.
DERIVED = "derived.json"

T = TypeVar("T")


class _RecordingRunDir(RunDir):
    """A :class:`RunDir` of an existing run that notes every file it writes and never writes
    the run's ``manifest.json`` or ``derived.json``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        super().__init__(root)
        self.written: list[Path] = []

    def _guard(self, *parts: str) -> None:
        if Path(*parts).as_posix() in (MANIFEST, DERIVED):
            raise BadInput(
                f"a rebuild must not write {Path(*parts).as_posix()} of the run in "
                f"{os.fspath(self.root)!r} (only the runner writes it)."
            )

    def _noted(self, p: Path) -> Path:
        self.written.append(p)
        return p

    def write_json(self, name: str, obj: Any) -> Path:
        self._guard(name)
        return self._noted(super().write_json(name, obj))

    def write_text(self, name: str, text: str) -> Path:
        self._guard(name)
        return self._noted(super().write_text(name, text))

    def write_bytes(self, name: str, data: bytes) -> Path:
        self._guard(name)
        return self._noted(super().write_bytes(name, data))

    def write_csv(
        self, name: str, rows: Sequence[Any], fieldnames: Sequence[str] | None = None
    ) -> Path:
        self._guard(name)
        return self._noted(super().write_csv(name, rows, fieldnames))

    def save_figure(
        self, fig: Any, name: str, formats: Sequence[str] = ("png", "svg"), dpi: int = 120
    ) -> list[Path]:
        paths = super().save_figure(fig, name, formats, dpi)
        self.written += paths
        return paths


def _expected(experiment: str | tuple[str, ...]) -> tuple[str, ...]:
    names = (experiment,) if isinstance(experiment, str) else tuple(experiment)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"`experiment` must name one or more experiments; got {experiment!r}.")
    return names


def _read_object(path: Path, run_dir: Path) -> dict[str, Any]:
    return read_json_object(
        path, holder=f"`run_dir` {os.fspath(run_dir)!r}", hint="nothing was rewritten."
    )


def _check_run_dir(
    root: Path, names: tuple[str, ...], command: str, requires: Iterable[str]
) -> dict[str, Any]:
    shown = " or ".join(repr(n) for n in names)
    if not root.exists():
        raise FileNotFoundError(
            f"`run_dir` {os.fspath(root)!r} does not exist; `{command}` rebuilds files of an "
            f"existing {shown} run."
        )
    if not root.is_dir():
        raise BadInput(f"`run_dir` must be a run folder; got the file {os.fspath(root)!r}.")
    if not (root / MANIFEST).is_file():
        raise FileNotFoundError(
            f"`run_dir` {os.fspath(root)!r} holds no {MANIFEST}, so it is no {shown} run; "
            f"`{command}` rebuilds files of an existing run."
        )
    manifest = _read_object(root / MANIFEST, root)
    held = manifest.get("experiment")
    if held is None:
        raise BadInput(
            f"`run_dir` {os.fspath(root)!r} holds a {MANIFEST} that names no experiment (written by "
            f"an older deltahall?), so it cannot be checked to be a {shown} run."
        )
    if held not in names:
        raise BadInput(
            f"`run_dir` {os.fspath(root)!r} holds a {held!r} run, not {shown}; `{command}` "
            "rebuilds only those."
        )
    missing = [n for n in requires if not (root / n).exists()]
    if missing:
        raise FileNotFoundError(
            f"`run_dir` {os.fspath(root)!r} holds no {', '.join(missing)} (the {held!r} run has "
            "not written it yet?)."
        )
    if not os.access(root, os.W_OK | os.X_OK):
        raise PermissionError(
            13, "Permission denied (the run folder cannot be rewritten)", os.fspath(root)
        )
    if (root / DERIVED).exists():
        record = _read_object(root / DERIVED, root)
        if not isinstance(record.get("rebuilds"), list):
            raise BadInput(
                f"`run_dir` {os.fspath(root)!r} holds a {DERIVED} without a `rebuilds` list; "
                "nothing was rewritten."
            )
    return manifest


def _check_output(root: Path, name: str, path: Path) -> None:
    real, rroot = Path(os.path.realpath(path)), Path(os.path.realpath(root))
    if real in (rroot / MANIFEST, rroot / DERIVED):
        raise BadInput(f"`{name}` must not be the run's {real.name}; got {os.fspath(path)!r}.")
    if path.is_dir():
        raise BadInput(
            f"`{name}` must be a file path; got the existing folder {os.fspath(path)!r}."
        )
    probe = path.parent
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise BadInput(
            f"`{name}` {os.fspath(path)!r} cannot be created: {os.fspath(probe)!r} is a file."
        )
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):  # the rename needs the folder
        raise PermissionError(
            13, f"Permission denied (`{name}` cannot be written)", os.fspath(probe)
        )


def _shown(root: Path, p: Path) -> str:
    """``p`` relative to the run folder when it lies inside, else as given."""
    try:
        return Path(os.path.abspath(p)).relative_to(Path(os.path.abspath(root))).as_posix()
    except ValueError:
        return os.fspath(p)


def rewrite(
    run_dir: str | os.PathLike[str],
    *,
    experiment: str | tuple[str, ...],
    write: Callable[[RunDir, dict[str, Any]], T],
    command: str,
    requires: Iterable[str] = (),
    outputs: Iterable[tuple[str, str | os.PathLike[str]]] = (),
) -> T:
    """Rebuild derived files of the existing run in ``run_dir``; the one entry for such writes.

    Parameters
    ----------
    run_dir : path
        The run folder; it must hold a readable ``manifest.json`` of ``experiment``.
    experiment : str or tuple of str
        The experiment name(s) the manifest may record (``"t2i"``; ``("qa-arms",
        "qa-arms-merge")``), as :class:`~deltahall.experiments._run.Experiment` ``name``.
    write : callable ``(rd, manifest) -> T``
        Does the work: reads what it needs, computes, then writes every file in the folder
        through ``rd`` (atomic, and noted in ``derived.json``). It writes each of ``outputs``
        itself (atomically, e.g. ``deltahall.io.atomic_write_text``). Its value is returned.
    command : str
        The command, as recorded and named in refusals (``"t2i report"``).
    requires : iterable of str
        Files (relative to ``run_dir``) the run must hold already (``"metrics.csv"``).
    outputs : iterable of (name, path)
        Paths ``write`` writes outside ``rd`` (a report elsewhere), by parameter name; each is
        checked before anything is written and listed in ``derived.json``.

    Returns
    -------
    T
        What ``write`` returned.

    Raises
    ------
    FileNotFoundError
        ``run_dir`` does not exist, holds no ``manifest.json`` or lacks a required file.
    ValueError
        ``run_dir`` is a file, its manifest or ``derived.json`` is unreadable, it holds another
        experiment's run, or an output is a folder, the manifest or ``derived.json``.
    PermissionError
        The folder or an output cannot be written.

    Examples
    --------
    >>> import json, tempfile
    >>> from deltahall.io.rundir import RunDir
    >>> root = RunDir(tempfile.mkdtemp())
    >>> _ = root.write_json("manifest.json", {"experiment": "demo"})
    >>> rewrite(root.root, experiment="demo", command="demo table",
    ...         write=lambda rd, manifest: rd.write_text("table.md", "| a |\\n").name)
    'table.md'
    >>> json.loads((root.root / "derived.json").read_text())["rebuilds"][0]["files"]
    ['table.md']
    """
    from deltahall import __version__

    names = _expected(experiment)
    root = Path(run_dir)
    manifest = _check_run_dir(root, names, command, requires)
    declared = [(n, Path(p)) for n, p in outputs]
    for name, path in declared:
        _check_output(root, name, path)
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    rd = _RecordingRunDir(root)
    value = write(rd, manifest)
    files = dict.fromkeys(_shown(root, p) for p in [*rd.written, *(p for _, p in declared)])
    previous = _read_object(root / DERIVED, root)["rebuilds"] if (root / DERIVED).exists() else []
    entry = {
        "command": command,
        "argv": list(sys.argv),
        "deltahall": __version__,
        "started_at": started,
        "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "files": list(files),
    }
    RunDir.write_json(rd, DERIVED, {"rebuilds": [*previous, entry]})  # temp file + rename
    return value
