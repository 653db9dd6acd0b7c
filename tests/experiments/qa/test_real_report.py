"""The main job's real-weights section: MiniLM on the packaged dataset (a subset here, for speed)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest


def test_section_is_labelled_real_and_separates_known_truth(tmp_path: Path) -> None:
    pytest.importorskip("sentence_transformers")
    from deltahall.experiments.qa.real_report import main_job_section

    sec = main_job_section(tmp_path / "real", seed=0, limit=24)
    html = "".join(sec.parts)
    assert "real pretrained weights" in sec.title + html
    assert "all-MiniLM-L6-v2" in html
    rows = {r["text"]: r for r in csv.DictReader(open(tmp_path / "real" / "known_truth.csv", encoding="utf-8"))}

    def rate(kind: str, rule: str = "flagged (blend-aware)") -> float:
        return float(rows[kind][rule].split()[0])

    assert rate("reference a1") <= 0.05 and rate("reference a2") <= 0.05
    assert rate("joined blend") > 0.5 and rate("interleaved blend") > 0.5
    assert rate("off-topic answer") >= 0.95
    meta = json.loads((tmp_path / "real" / "known_truth.json").read_text(encoding="utf-8"))
    assert meta["embedder"]["sha256"].startswith("53aa5117") and meta["n_questions"] == 24
