"""``deltahall hcdr fit / score / curve`` end to end, in process."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest

from deltahall.cli.main import main
from deltahall.detectors import HCDRDetector


@pytest.fixture()
def files(tmp_path):
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (200, 12)), rng.normal(2, 1, (200, 12))]) + 3
    np.save(tmp_path / "E.npy", X)
    np.save(tmp_path / "L.npy", np.repeat(np.array(["cat", "dog"]), 200))
    np.save(tmp_path / "T.npy", np.vstack([X[:20], rng.normal(3, 4, (30, 12))]))
    return tmp_path


def test_fit_score_curve(files, capsys):
    det_path = files / "det.safetensors"
    rc = main(["hcdr", "fit", "--embeddings", str(files / "E.npy"), "--labels", str(files / "L.npy"),
               "--out", str(det_path), "--pca-dim", "6", "--n-components", "2", "--json"])
    assert rc == 0
    fit = json.loads(capsys.readouterr().out)
    assert [s["state"] for s in fit["states"]] == ["cat", "dog"]
    assert all(s["holdout_coverage"] == pytest.approx(0.9) for s in fit["states"])
    det = HCDRDetector.load(det_path)
    assert det.pca_dim == 6 and det.n_components == 2

    out_csv = files / "scores.csv"
    assert main(["hcdr", "score", "--detector", str(det_path), "--embeddings", str(files / "T.npy"),
                 "--out", str(out_csv), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    T = np.load(files / "T.npy")
    assert res["hallucination_rate"] == pytest.approx(det.hallucination_rate(T))
    with out_csv.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 50
    np.testing.assert_allclose([float(r["log_density_dog"]) for r in rows], det.score_samples(T)[:, 1])
    assert [int(r["inside"]) for r in rows] == (det.predict(T) == 1).astype(int).tolist()

    png = files / "curve.png"
    assert main(["hcdr", "curve", "--detector", str(det_path), "--embeddings", str(files / "T.npy"),
                 "--percentiles", "0,10,40", "--png", str(png), "--json"]) == 0
    curve = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose([r["rate"] for r in curve], det.rate_curve(T, [0, 10, 40]))
    assert png.stat().st_size > 1000


def test_errors(files, capsys):
    np.save(files / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    cases = [
        (["hcdr", "fit", "--embeddings", str(files / "missing.npy"), "--labels", str(files / "L.npy"),
          "--out", str(files / "d")], "embeddings file not found"),
        (["hcdr", "fit", "--embeddings", str(files / "obj.npy"), "--labels", str(files / "L.npy"),
          "--out", str(files / "d")], "without pickle"),
        (["hcdr", "fit", "--embeddings", str(files / "L.npy"), "--labels", str(files / "L.npy"),
          "--out", str(files / "d")], r"must have shape \(n_samples, n_features\); got shape \(400,\)"),
        (["hcdr", "fit", "--embeddings", str(files / "E.npy"), "--labels", str(files / "L.npy"),
          "--out", str(files / "d"), "--pca-dim", "40"], "`pca_dim` must be <="),
        (["hcdr", "score", "--detector", str(files / "L.npy"), "--embeddings", str(files / "E.npy")],
         "not a .safetensors file"),
    ]
    for argv, msg in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("deltahall hcdr: error:")
        assert re.search(msg, err), (msg, err)
