"""Run directories, atomic file writes and the self-contained HTML report."""

from deltahall.io.atomic import atomic_write_bytes, atomic_write_text
from deltahall.io.report import Report, Section
from deltahall.io.rundir import RunDir, package_versions

__all__ = [
    "RunDir",
    "Report",
    "Section",
    "atomic_write_bytes",
    "atomic_write_text",
    "package_versions",
]
