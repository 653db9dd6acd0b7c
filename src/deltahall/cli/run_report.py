"""Shared by the ``report`` sub-commands that rebuild an experiment's HTML report from its run folder."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_run_report(
    args: argparse.Namespace,
    *,
    experiment: str,
    marker: str,
    build_section: Callable[[Path], Any],
    save_figures: Callable[[Any], Any],
) -> int:
    """Redraw the figures of the ``experiment`` run in ``--run-dir`` and write its report.

    Goes through :func:`deltahall.experiments._derived.rewrite`: the folder must hold a
    manifest of ``experiment`` and ``marker``; ``--out`` (default ``<run-dir>/report.html``) must
    be an .html file that can be written; the rebuild is recorded in ``derived.json``.
    ``save_figures`` is given the run's :class:`~deltahall.io.rundir.RunDir`.
    """
    from deltahall.experiments._derived import rewrite
    from deltahall.io import Report, atomic_write_text

    run_dir = Path(args.run_dir)
    out = Path(args.out) if args.out else run_dir / "report.html"
    if out.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"`out` must be an .html file (the report); got {str(out)!r}.")
    inside = Path(os.path.abspath(run_dir)) in Path(os.path.abspath(out)).parents

    def write(rd: Any, manifest: dict[str, Any]) -> Path:
        save_figures(rd)  # first: the report inlines them
        report = Report(f"deltahall {experiment}: {run_dir}")
        report.add(build_section(run_dir))
        html = report.render()
        if inside:
            return Path(rd.write_text(Path(os.path.relpath(out, run_dir)).as_posix(), html))
        return atomic_write_text(out, html)

    path = rewrite(
        run_dir,
        experiment=experiment,
        write=write,
        command=f"{experiment} report",
        requires=(marker,),
        outputs=[("out", out)],
    )
    print(f"report: {path}")
    return 0
