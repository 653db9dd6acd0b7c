"""Pickle-free save/load of HCDRDetector: round trip, tampering, pickles."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from deltahall.detectors import HCDRDetector


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (200, 10)), rng.normal(2, 1, (200, 10))]) + 3.0
    return X, np.repeat([3, 7], 200)


@pytest.mark.parametrize(
    ("ct", "pca_dim", "labels", "calibration"),
    [
        ("diag", 6, None, "conformal"),
        ("full", None, ["a", "b"], "percentile"),
        ("tied", 4, None, "conformal"),
        ("spherical", None, [0.5, 1.5], "percentile"),
        ("auto", "auto", None, "conformal"),
    ],
)
def test_round_trip_identical(tmp_path, data, ct, pca_dim, labels, calibration):
    X, y = data
    if labels is not None:
        y = np.where(y == 3, labels[0], labels[1])
    det = HCDRDetector(
        pca_dim=pca_dim, n_components=2, covariance_type=ct, calibration=calibration, random_state=1
    ).fit(X, y)
    path = tmp_path / "det.safetensors"
    det.save(path)
    back = HCDRDetector.load(path)
    assert back.get_params() == det.get_params()
    np.testing.assert_array_equal(back.classes_, det.classes_)
    assert back.classes_.dtype == det.classes_.dtype
    np.testing.assert_array_equal(back.score_samples(X), det.score_samples(X))
    np.testing.assert_array_equal(back.state_log_densities(X), det.state_log_densities(X))
    np.testing.assert_array_equal(back.thresholds_, det.thresholds_)
    np.testing.assert_array_equal(back.holdout_coverage_, det.holdout_coverage_)
    assert back.offset_ == det.offset_
    assert back.densities_.summary() == det.densities_.summary()
    for a, b in zip(back.calibration_scores_, det.calibration_scores_, strict=True):
        np.testing.assert_array_equal(a, b)
    T = np.random.default_rng(2).normal(3, 2, (50, 10))
    np.testing.assert_array_equal(back.rate_curve(T, [5, 10, 20]), det.rate_curve(T, [5, 10, 20]))


def test_tampered_array_rejected(tmp_path, data):
    X, y = data
    path = tmp_path / "det.safetensors"
    HCDRDetector(pca_dim=4, n_components=2, random_state=0).fit(X, y).save(path)
    with safe_open(str(path), framework="numpy") as fh:
        meta = fh.metadata()
    arrays = load_file(str(path))
    arrays["state0.calibration_scores"] = (
        arrays["state0.calibration_scores"] - 5.0
    )  # silently widen a region
    save_file(arrays, str(path), metadata=meta)
    with pytest.raises(ValueError, match="failed its SHA-256 check"):
        HCDRDetector.load(path)


def test_tampered_metadata_rejected(tmp_path, data):
    X, y = data
    path = tmp_path / "det.safetensors"
    HCDRDetector(pca_dim=4, n_components=2, random_state=0).fit(X, y).save(path)
    with safe_open(str(path), framework="numpy") as fh:
        meta = dict(fh.metadata())
    assert '"alpha": 0.1' in meta["params"]
    meta["params"] = meta["params"].replace('"alpha": 0.1', '"alpha": 0.5')
    save_file(load_file(str(path)), str(path), metadata=meta)
    with pytest.raises(ValueError, match="failed its SHA-256 check"):
        HCDRDetector.load(path)


def test_flipped_byte_rejected(tmp_path, data):
    X, y = data
    path = tmp_path / "det.safetensors"
    HCDRDetector(pca_dim=4, n_components=2, random_state=0).fit(X, y).save(path)
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="SHA-256"):
        HCDRDetector.load(path)


def test_pickle_and_foreign_files_rejected(tmp_path, data):
    X, y = data
    det = HCDRDetector(pca_dim=4, n_components=2, random_state=0).fit(X, y)
    pkl = tmp_path / "det.safetensors"
    pkl.write_bytes(pickle.dumps(det))
    with pytest.raises(ValueError, match="looks like a Python pickle"):
        HCDRDetector.load(pkl)
    npz = tmp_path / "det.npz"
    np.savez(npz, a=np.ones(3))
    with pytest.raises(ValueError, match="zip archive"):
        HCDRDetector.load(npz)
    other = tmp_path / "other.safetensors"
    save_file({"w": np.ones(3)}, str(other), metadata={"format": "something-else"})
    with pytest.raises(ValueError, match="not an HCDR detector file"):
        HCDRDetector.load(other)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"hello world, not a tensor file")
    with pytest.raises(ValueError, match="bad header"):
        HCDRDetector.load(junk)
    with pytest.raises(FileNotFoundError, match="not found"):
        HCDRDetector.load(tmp_path / "missing.safetensors")


def _rewrite(path, edit):
    """Edit a saved file's arrays/metadata and re-sign it (a forged but well-formed file)."""
    from deltahall.detectors._format import _digest

    with safe_open(str(path), framework="numpy") as fh:
        meta = dict(fh.metadata())
    arrays = load_file(str(path))
    edit(arrays, meta)
    meta["sha256"] = _digest(meta, arrays)
    save_file(arrays, str(path), metadata=meta)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (
            lambda a, m: a.__setitem__(
                "state0.calibration_scores", a["state0.calibration_scores"] * np.nan
            ),
            r"`state0.calibration_scores` must be finite",
        ),
        (
            lambda a, m: a.__setitem__("state1.means", a["state1.means"].astype(np.float32)),
            r"`state1.means` must be float64; got float32",
        ),
        (
            lambda a, m: a.__setitem__("state_sigma2", -a["state_sigma2"]),
            r"`state_sigma2` must be finite and > 0",
        ),
        (
            lambda a, m: a.__setitem__("state_pca_dim", a["state_pca_dim"] + 100),
            r"`state_pca_dim` must be int64",
        ),
        (lambda a, m: a.pop("densities.components"), r"densities.components"),
        (
            lambda a, m: m.__setitem__("format_version", "1"),
            r"has HCDR format version '1'; this deltahall reads version '2'",
        ),
    ],
)
def test_forged_files_are_validated(tmp_path, data, edit, match):
    X, y = data
    path = tmp_path / "det.safetensors"
    HCDRDetector(pca_dim=4, n_components=2, random_state=0).fit(X, y).save(path)
    _rewrite(path, edit)
    with pytest.raises(ValueError, match=match):
        HCDRDetector.load(path)
