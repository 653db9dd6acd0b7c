"""Atomic file and folder writes: nothing half-written, errors name the destination."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys

import pytest

import deltahall.io.atomic as atomic_mod
from deltahall.io import atomic_dir, atomic_write_bytes, atomic_write_text
from deltahall.io.atomic import stale_temps


def _tree(root):
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_atomic_dir_builds_and_leaves_no_temp(tmp_path):
    final = tmp_path / "sub" / "model"
    with atomic_dir(final) as tmp:
        assert tmp.parent == final.parent and tmp.name.startswith(".model.") and not final.exists()
        (tmp / "config.json").write_text("{}")
        (tmp / "w").mkdir()
        (tmp / "w" / "weights.bin").write_bytes(b"\x00" * 10)
    assert _tree(final) == {"config.json": b"{}", "w/weights.bin": b"\x00" * 10}
    assert [p.name for p in final.parent.iterdir()] == ["model"]
    assert (final.stat().st_mode & 0o777) == (0o777 & ~atomic_mod._umask())


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_atomic_dir_exception_leaves_nothing(tmp_path, exc):
    final = tmp_path / "model"
    with pytest.raises(type(exc)):
        with atomic_dir(final) as tmp:
            (tmp / "config.json").write_text("{}")  # written first, as the qa tiny-model build did
            raise exc
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_refuses_existing_and_keeps_it(tmp_path):
    final = tmp_path / "model"
    final.mkdir()
    (final / "config.json").write_text("old")
    with pytest.raises(FileExistsError, match="already exists: .*model"):
        with atomic_dir(final):
            pytest.fail("the block must not run")
    assert _tree(final) == {"config.json": b"old"}
    assert stale_temps(final) == []


def test_atomic_dir_refuses_a_path_that_appears_while_building(tmp_path):
    final = tmp_path / "model"
    with pytest.raises(FileExistsError, match="appeared while building"):
        with atomic_dir(final, fsync=False) as tmp:
            (tmp / "a").write_text("new")
            final.mkdir()  # another process won the race (rename would merge into an empty dir)
    assert list(final.iterdir()) == [] and stale_temps(final) == []


def test_atomic_dir_os_error_names_destination(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError, match=r"file/model") as info:
        with atomic_dir(blocker / "model"):
            pass
    assert info.value.filename == str(blocker / "model")


_CHILD = """
import sys, time
from pathlib import Path
from deltahall.io import atomic_dir
final = Path(sys.argv[1])
print("ready", flush=True)
with atomic_dir(final) as tmp:
    for i in range(400):
        (tmp / f"part-{i:03d}.bin").write_bytes(bytes([i % 256]) * 2048)
        print(f"wrote {i}", flush=True)
        sys.stdin.readline()  # the parent lets each part through, or kills the child here
print("done", flush=True)
time.sleep(30)
"""


def test_atomic_dir_sigkill_at_any_instant_leaves_nothing_or_complete(tmp_path):
    outcomes = []
    # Kills on events, not at wall-clock instants: after the k-th part is written (the child waits
    # for the parent between parts), and once after the build has finished.
    for k, kill_after in enumerate([0, 1, 150, 399, None]):
        final = tmp_path / f"run{k}" / "artefact"
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(final)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "ready"
        for i in range(400):
            assert proc.stdout.readline().strip() == f"wrote {i}"
            if i == kill_after:
                break
            proc.stdin.write("\n")
            proc.stdin.flush()
        if kill_after is None:
            assert proc.stdout.readline().strip() == "done"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if final.exists():
            tree = _tree(final)
            assert sorted(tree) == [f"part-{i:03d}.bin" for i in range(400)]
            assert all(v == bytes([int(n[5:8]) % 256]) * 2048 for n, v in tree.items())
            outcomes.append("complete")
        else:
            outcomes.append("nothing")
        with atomic_dir(final, remove_stale=True) if not final.exists() else _noop():
            pass
        assert stale_temps(final) == []
    assert "nothing" in outcomes and "complete" in outcomes, outcomes


class _noop:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def test_atomic_write_os_errors_name_destination_and_keep_old(tmp_path, monkeypatch):
    target = tmp_path / "metrics.csv"
    atomic_write_text(target, "old\n")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic_mod.os, "fsync", full)
    with pytest.raises(OSError, match="No space left on device") as info:
        atomic_write_bytes(target, b"new")
    assert info.value.filename == str(target) and info.value.errno == errno.ENOSPC
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]


def test_atomic_write_into_a_file_parent_names_destination(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OSError) as info:
        atomic_write_text(tmp_path / "f" / "out.json", "{}")
    assert info.value.filename == str(tmp_path / "f" / "out.json")
