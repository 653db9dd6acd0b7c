"""Run the ``deltahall`` command and SIGKILL it at its k-th commit event (a test helper).

A *commit event* is every ``os.replace`` / ``os.rename`` whose destination lies under
``$DELTAHALL_EVENT_SCOPE`` (the run directory): the instants at which a file or folder of the
run is published (``io.atomic``'s writes, checkpoint folders, built artefacts). Between two
commit events a run changes nothing on disk under its final names, so the files a kill leaves
behind are those of a kill just before or just after one of these events.

Environment:

- ``DELTAHALL_KILL_AT``: ``"<k>:before"`` (tear the temporary being published -- a file is
  truncated to half its length, a folder's largest file likewise -- then SIGKILL, as if the
  process died mid-write) or ``"<k>:after"`` (SIGKILL right after the rename); unset: no kill.
- ``DELTAHALL_EVENT_LOG``: a file that gets one line ``<k> <destination relative to the scope>``
  per event, written before the event happens.

Usage: ``python _kill_at_event.py <deltahall arguments...>``. The whole process group is killed.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
from pathlib import Path


def _tear(src: str) -> None:
    p = Path(src)
    files = (
        [p]
        if p.is_file()
        else sorted((f for f in p.rglob("*") if f.is_file()), key=lambda f: f.stat().st_size)
    )
    if files:
        target = files[-1]
        with open(target, "r+b") as fh:
            fh.truncate(target.stat().st_size // 2)


def _install() -> None:
    scope = os.path.abspath(os.environ["DELTAHALL_EVENT_SCOPE"])
    k_str, _, phase = os.environ.get("DELTAHALL_KILL_AT", "0:after").partition(":")
    kill_at = int(k_str)
    log = os.environ.get("DELTAHALL_EVENT_LOG")
    count = 0

    def _kill() -> None:
        os.killpg(os.getpgid(0), signal.SIGKILL)

    def hooked(real):  # type: ignore[no-untyped-def]
        def commit(src, dst, *args, **kwargs):  # type: ignore[no-untyped-def]
            nonlocal count
            d = os.path.abspath(os.fspath(dst))
            if not d.startswith(scope + os.sep):
                return real(src, dst, *args, **kwargs)
            count += 1
            if log:
                with open(log, "a", encoding="utf-8") as fh:
                    fh.write(f"{count} {os.path.relpath(d, scope)}\n")
            if count == kill_at and phase == "before":
                _tear(os.fspath(src))
                _kill()
            out = real(src, dst, *args, **kwargs)
            if count == kill_at:
                _kill()
            return out

        return commit

    os.replace = hooked(os.replace)
    os.rename = hooked(os.rename)


if __name__ == "__main__":
    _install()
    sys.argv = ["deltahall", *sys.argv[1:]]
    runpy.run_module("deltahall.cli.main", run_name="__main__", alter_sys=True)
