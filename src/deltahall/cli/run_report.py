"""Shared by the ``report`` sub-commands that rebuild an experiment's HTML report from its run folder."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_run_report(
    args: argparse.Namespace,
    *,
    experiment: str,
    marker: str,
    build_section: Callable[[Path], Any],
    save_figures: Callable[[Path], Any],
) -> int:
    """Check ``--run-dir`` (it must hold ``marker``) and ``--out`` (an .html file), redraw, write, print."""
    from deltahall._validation import check_output_path
    from deltahall.io import Report

    run_dir = Path(args.run_dir)
    out = Path(args.out) if args.out else run_dir / "report.html"
    if out.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"`out` must be an .html file (the report); got {str(out)!r}.")
    check_output_path(out, "out")
    if not (run_dir / marker).is_file():
        raise FileNotFoundError(
            f"`run_dir` {str(run_dir)!r} holds no {marker}; is it a `{experiment} run` directory?"
        )
    save_figures(run_dir)
    report = Report(f"deltahall {experiment}: {run_dir}")
    report.add(build_section(run_dir))
    print(f"report: {report.write(out)}")
    return 0
