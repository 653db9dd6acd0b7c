"""The main job's real-weights section: MiniLM on the packaged dataset (a subset here, for speed)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest


def test_section_is_labelled_real_and_separates_known_truth(tmp_path: Path) -> None:
    pytest.importorskip("sentence_transformers")
    from deltahall.experiments.qa.real_report import main_job_section

    sec = main_job_section(
        tmp_path / "real", seed=0, limit=60
    )  # 30 calibrate: the margin rule needs 19 at alpha 0.1
    html = "".join(sec.parts)
    assert "real pretrained weights" in sec.title + html
    assert "all-MiniLM-L6-v2" in html
    rows = {
        r["text"]: r
        for r in csv.DictReader(open(tmp_path / "real" / "known_truth.csv", encoding="utf-8"))
    }

    def rate(kind: str, rule: str = "flagged (blend-aware)") -> float:
        return float(rows[kind][rule].split()[0])

    assert rate("reference a1") <= 0.05 and rate("reference a2") <= 0.05
    assert rate("joined blend") > 0.5 and rate("interleaved blend") > 0.5
    assert rate("off-topic answer") >= 0.95
    # the plain max-cosine rule does not see joined blends: they are close to both answers
    assert rate("joined blend", "flagged (plain max-cos)") < 0.1
    assert float(rows["joined blend"]["excess p (blend-aware)"]) < 1e-3
    meta = json.loads((tmp_path / "real" / "known_truth.json").read_text(encoding="utf-8"))
    assert meta["embedder"]["sha256"].startswith("53aa5117") and meta["n_questions"] == 60
    assert meta["alpha"] == 0.1 and meta["n_calibration"] == 30
    held = meta["per_kind"]["held-out in-state draw"]["blend-aware"]
    assert (
        held["rate"] == meta["floor"]["blend-aware"]["rate"]
    )  # the held-out draws *are* the floor
    assert "instrument" in html


def test_blends_and_dropout() -> None:
    from deltahall.experiments.qa.real_report import interleaved_blend, joined_blend, word_dropout

    assert joined_blend("a b.", "c d") == "a b. c d"
    assert interleaved_blend("a b c", "x y") == "a x b y c"
    kept = word_dropout("one two three four five six", rate=0.5, rng=0).split()
    assert 1 <= len(kept) <= 6 and all(w in "one two three four five six".split() for w in kept)
    assert word_dropout("one", rate=0.99, rng=0) == "one"
