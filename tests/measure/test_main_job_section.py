"""The main job's measure step: reads a t2i run's saved embeddings; says plainly when the run is missing."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

import deltahall.experiments.measure_digits as md


def _fake_t2i(root: Path) -> None:
    rng = np.random.default_rng(0)
    means = np.array([[3.0] * 8, [-3.0] * 8])
    y = np.repeat([0, 1], 100)
    (root / "samples").mkdir(parents=True)
    buf = io.BytesIO()
    np.savez(buf, embeddings=(means[y] + rng.normal(size=(200, 8))).astype(np.float32), labels=y)
    (root / "real_embeddings.npz").write_bytes(buf.getvalue())
    for step in (0, 100):
        arrays = {f"embeddings_p{p}": (means[p % 2] * (0 if p == 2 else 1) + rng.normal(size=(20, 8))).astype(np.float32)
                  for p in range(3)}
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        (root / "samples" / f"step-{step:06d}.npz").write_bytes(buf.getvalue())
    (root / "manifest.json").write_text(json.dumps({"config": {
        "classes": ["0", "1"], "prompts": ["zero", "one", "blend"], "pca_dim": 4, "n_components": 1}}))


@pytest.fixture()
def no_known_truth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(md, "known_truth_rows", lambda seed=0: {"synthetic": [{"method": "x", "precision": 1.0}]})


def test_measures_the_final_checkpoint(tmp_path: Path, no_known_truth: None) -> None:
    _fake_t2i(tmp_path / "t2i")
    sec = md.main_job_section(tmp_path / "measure", seed=0)
    html = "".join(sec.parts)
    assert "final checkpoint (step 100)" in html and "Selection (keep inside the HCDR)" in html
    s = json.loads((tmp_path / "measure" / "measure.json").read_text())
    pp = {r["prompt"]: r for r in s["per_prompt"]}
    assert pp["blend"]["rate"] > 0.9 and pp["zero"]["rate"] < 0.3 and s["step"] == 100
    assert [st["name"] for st in s["states"]] == ["digit 0", "digit 1"]
    assert {b["method"] for b in s["baselines"]} >= {"mahalanobis", "lof"}


def test_missing_run_is_said_plainly(tmp_path: Path, no_known_truth: None) -> None:
    html = "".join(md.main_job_section(tmp_path / "measure", seed=0).parts)
    assert "is missing" in html and "deltahall report" in html


def test_measure_t2i_run_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no real_embeddings.npz"):
        md.measure_t2i_run(tmp_path)
