"""Atomic writes: build under a temporary name in the target's folder, then rename.

An interrupted run (an exception, Ctrl-C, SIGKILL at any instant) never leaves a half-written
file or folder under the final name: the final path holds either the old content (or nothing)
or the complete new one. A kill can leave a hidden ``.<name>.*.tmp`` sibling behind; it is never
mistaken for the artefact (see :func:`stale_temps`).

Every OS error names the destination (not the temporary name), e.g.
``OSError(13, "Permission denied", "out/det.safetensors")``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = ["atomic_dir", "atomic_write_bytes", "atomic_write_text", "stale_temps"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _named(exc: OSError, path: Path) -> OSError:
    """The same OS error (same errno, same subclass) naming the destination ``path``."""
    if exc.errno is None:
        return exc
    return OSError(exc.errno, exc.strerror or str(exc), os.fspath(path))


def _make_parent(path: Path) -> None:
    """Create ``path``'s folder; a file in the way is ENOTDIR for ``path`` (not "File exists")."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise NotADirectoryError(errno.ENOTDIR, "Not a directory", os.fspath(path)) from None


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes | Iterable[bytes]) -> Path:
    """Write ``data`` to ``path`` atomically and return the path.

    ``data`` is the content, or an iterable of its consecutive chunks, written as they come
    (so a large file need not be held in memory whole); an exception raised while producing
    them leaves nothing behind, like any other.

    Raises
    ------
    OSError
        Naming ``path`` (read-only folder, disk full, ...); nothing is left behind.
    """
    path = Path(path)
    tmp: str | None = None
    try:
        _make_parent(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        # mkstemp creates 0600 files; give results the usual permissions (0666 & ~umask).
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            if isinstance(data, (bytes, bytearray, memoryview)):
                fh.write(data)
            else:
                for chunk in data:
                    fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _named(exc, path) from None
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically and return the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def stale_temps(path: str | os.PathLike[str]) -> list[Path]:
    """Temporaries a killed :func:`atomic_dir` / :func:`atomic_write_bytes` left for ``path``."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    return sorted(path.parent.glob(f".{path.name}.*.tmp"))


@contextlib.contextmanager
def atomic_dir(
    path: str | os.PathLike[str], *, remove_stale: bool = False, fsync: bool = True
) -> Iterator[Path]:
    """Build a folder atomically: yield a temporary folder, then rename it to ``path``.

    The temporary folder is a hidden sibling of ``path`` (same filesystem, so the final
    rename is atomic). If the block raises, it is removed and ``path`` is not created; if the
    process is killed at any instant, ``path`` either does not exist or is complete, so
    "``path`` exists" can serve as "the artefact is done".

    Parameters
    ----------
    path : path
        The final folder. It must not exist yet (an existing artefact is never replaced).
    remove_stale : bool, default=False
        First delete temporaries that killed earlier builds of ``path`` left (see
        :func:`stale_temps`). Only safe when no other process is building ``path`` now.
    fsync : bool, default=True
        Flush every file and the folder to disk before the rename, so the artefact also
        survives a power loss, not only a killed process.

    Yields
    ------
    pathlib.Path
        The temporary folder to write into.

    Raises
    ------
    FileExistsError
        If ``path`` already exists (before the block runs or when it is renamed into place).
    OSError
        Naming ``path`` when the temporary folder cannot be created or renamed.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_dir(root / "model") as tmp:
    ...     _ = (tmp / "config.json").write_text("{}")
    >>> sorted(p.name for p in (root / "model").iterdir())
    ['config.json']
    """
    path = Path(path)
    if path.exists() or path.is_symlink():
        raise FileExistsError(17, "cannot build it atomically: it already exists", os.fspath(path))
    if remove_stale:
        for old in stale_temps(path):
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)
    try:
        _make_parent(path)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700 folders
    except OSError as exc:
        raise _named(exc, path) from None
    try:
        yield tmp
        if fsync:
            for root, _dirs, files in os.walk(tmp):
                for name in files:
                    f = Path(root, name)
                    if f.is_file() and not f.is_symlink():
                        with open(f, "rb") as fh:
                            os.fsync(fh.fileno())
                _fsync_dir(Path(root))
        if (
            path.exists() or path.is_symlink()
        ):  # created meanwhile: rename() would merge into an empty dir
            raise FileExistsError(
                17, "cannot build it atomically: it appeared while building", os.fspath(path)
            )
        try:
            os.rename(tmp, path)
        except OSError as exc:
            raise _named(exc, path) from None
        if fsync:
            _fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
