"""Run directories, atomic file and folder writes, strict JSON / JSON Lines and the HTML report."""

from deltahall.io.atomic import atomic_dir, atomic_write_bytes, atomic_write_text
from deltahall.io.jsonl import iter_jsonl, read_jsonl
from deltahall.io.report import Report, Section
from deltahall.io.rundir import RunDir, dumps_json, package_versions

__all__ = [
    "RunDir",
    "Report",
    "Section",
    "atomic_dir",
    "atomic_write_bytes",
    "atomic_write_text",
    "dumps_json",
    "iter_jsonl",
    "package_versions",
    "read_jsonl",
]
