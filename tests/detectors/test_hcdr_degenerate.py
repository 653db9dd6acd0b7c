"""Degenerate embeddings are refused at fit; a non-finite score is an error (issue 8).

Before: a constant or all-zero state fitted a detector that flagged all of its own training
rows; rows of magnitude >= ~1e154 (float32: ~1e19) overflowed the L2 norm and their NaN
log-densities were counted as hallucinations (rate 1.0); boolean embeddings were accepted.
"""

from __future__ import annotations

import numpy as np
import pytest

import deltahall.detectors.hcdr as hcdr_mod
from deltahall.detectors import HCDRDetector
from deltahall.detectors.densities import StateDensities


def _data(n=120, d=6, seed=0):
    rng = np.random.default_rng(seed)
    X = np.vstack([rng.normal(0, 1, (n, d)), rng.normal(0, 1, (n, d)) + 3.0])
    X[:, 0] += 5.0
    return X, np.repeat(np.array(["a", "b"]), n)


def _det(**kw):
    return HCDRDetector(**{"pca_dim": None, "n_components": 2, "random_state": 0, **kw})


@pytest.fixture(scope="module")
def fitted():
    X, y = _data()
    return _det().fit(X, y), X, y


# ----------------------------------------------------------------------------- fit refusals
def test_constant_state_refused():
    X, y = _data()
    X[y == "b"] = X[y == "b"][0]
    with pytest.raises(
        ValueError,
        match=r"state 'b' has zero variance: its 120 rows \(120, 121, .*\) are all identical",
    ):
        _det().fit(X, y)
    with pytest.raises(ValueError, match=r"state 'b' has zero variance.*are all identical"):
        _det(normalize=False).fit(X, y)


def test_all_zero_state_and_rows_refused():
    X, y = _data()
    Xz = X.copy()
    Xz[y == "a"] = 0.0
    with pytest.raises(
        ValueError, match=r"`X` has 120 all-zero row\(s\) \(0, 1, 2, .*L2 normalisation"
    ):
        _det().fit(Xz, y)
    with pytest.raises(ValueError, match=r"state 'a' has zero variance.*all identical"):
        _det(normalize=False).fit(Xz, y)
    Xz = X.copy()
    Xz[[5, 130]] = 0.0
    with pytest.raises(ValueError, match=r"`X` has 2 all-zero row\(s\) \(5, 130\)"):
        _det().fit(Xz, y)
    _det(normalize=False).fit(Xz, y)  # without normalisation a zero row is an ordinary point


def test_multiples_of_one_vector_refused_only_with_normalisation():
    X, y = _data()
    v = X[0]
    X[y == "a"] = np.outer(np.linspace(1.0, 9.0, 120), v)
    with pytest.raises(
        ValueError, match=r"state 'a' has zero variance.*same point after L2 normalisation"
    ):
        _det().fit(X, y)
    _det(normalize=False).fit(X, y)


def test_state_flat_after_pca_refused():
    rng = np.random.default_rng(1)
    X = np.zeros((200, 3))
    X[:100, :2] = 1.0
    X[:100, 2] = np.tile(
        [2.0**-10, -(2.0**-10)], 50
    )  # state 0 varies only along the axis PCA(2) drops
    X[100:, :2] = rng.normal(0, 10, (100, 2))
    y = np.repeat([0, 1], 100)
    with pytest.raises(
        ValueError,
        match=r"state 0 has zero variance.*coincide in the 2 principal coordinates.*pca_dim=2",
    ):
        HCDRDetector(pca_dim=2, n_components=1, normalize=False, random_state=0).fit(X, y)
    HCDRDetector(pca_dim=3, n_components=1, normalize=False, random_state=0).fit(X, y)


def test_one_constant_feature_is_fine():
    X, y = _data()
    X[:, 3] = 2.5  # constant everywhere
    X[y == "a", 4] = -1.0  # constant inside one state
    det = _det().fit(X, y)
    assert 0.0 <= det.hallucination_rate(X) < 0.3


def test_one_feature_with_normalisation_refused():
    X = np.random.default_rng(0).uniform(1, 2, (60, 1))
    with pytest.raises(ValueError, match=r"1 feature\(s\).*normalize=False"):
        _det().fit(X, np.repeat([0, 1], 30))


def _object_with_bool(X):
    Xo = X.astype(object)
    Xo[3, 2] = True
    return Xo


@pytest.mark.parametrize(
    ("make", "exc", "msg"),
    [
        (lambda X: X > 5, TypeError, "boolean dtype bool"),
        (lambda X: (X > 5).tolist(), TypeError, "boolean dtype bool"),
        (_object_with_bool, TypeError, "object array contains bool True"),
        (lambda X: X.astype(np.complex128), ValueError, "complex dtype complex128"),
        (lambda X: X.astype(str), TypeError, "numeric array.*got dtype <U"),
        (lambda X: X.astype("datetime64[s]"), TypeError, "numeric array.*datetime64"),
    ],
    ids=["bool", "bool-list", "object-bool", "complex", "str", "datetime"],
)
def test_bad_dtypes_refused(make, exc, msg, fitted):
    det, X, y = fitted
    bad = make(X)
    with pytest.raises(exc, match=msg):
        _det().fit(bad, y)
    with pytest.raises(exc, match=msg):
        det.score_samples(bad)
    with pytest.raises(exc, match=msg):
        det.state_log_densities(bad)


def test_object_array_of_numbers_accepted(fitted):
    det, X, y = fitted
    np.testing.assert_array_equal(det.score_samples(X.astype(object)), det.score_samples(X))


def test_extreme_magnitudes_refused_without_normalisation():
    X, y = _data()
    with pytest.raises(
        ValueError, match=r"largest \|entry\| 1.03e\+201; with normalize=False.*\[1e-100, 1e\+100\]"
    ):
        _det(normalize=False).fit(X * 1e200, y)
    with pytest.raises(ValueError, match=r"largest \|entry\| 1.03e-199"):
        _det(normalize=False).fit(X * 1e-200, y)


# -------------------------------------------------------------- extremes with normalisation
@pytest.mark.parametrize("scale", [1e-300, 1e-160, 1e155, 1e200, 1e300])
@pytest.mark.parametrize("ct", ["diag", "full"])
def test_normalised_scores_do_not_depend_on_magnitude(scale, ct):
    X, y = _data()
    ref = _det(covariance_type=ct, pca_dim=4).fit(X, y)
    far = _det(covariance_type=ct, pca_dim=4).fit(X * scale, y)
    s = ref.state_log_densities(X)
    np.testing.assert_allclose(far.thresholds_, ref.thresholds_, rtol=1e-9)
    np.testing.assert_allclose(ref.state_log_densities(X * scale), s, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(far.state_log_densities(X * scale), s, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(far.densities_.summary(), ref.densities_.summary())
    assert ref.hallucination_rate(X * scale) == ref.hallucination_rate(X) < 0.2


@pytest.mark.parametrize("scale", [1e-30, 1e20, 1e30, 1e37])
def test_float32_extremes(scale):
    X, y = _data()
    det = _det(pca_dim=4).fit(X, y)
    X32 = (X * scale).astype(np.float32)
    assert np.isfinite(X32).all()
    np.testing.assert_allclose(det.state_log_densities(X32), det.state_log_densities(X), atol=1e-3)
    mixed = X.astype(np.float32)
    mixed[7] = X32[7]  # one extreme row does not change its neighbours' scores
    np.testing.assert_allclose(
        det.state_log_densities(mixed)[8:],
        det.state_log_densities(X.astype(np.float32))[8:],
        rtol=1e-12,
    )


# --------------------------------------------------------------- non-finite scores are errors
def test_zero_row_at_score_time_is_an_error(fitted, monkeypatch):
    det, X, _ = fitted
    T = X.copy()
    T[[3, 9]] = 0.0
    with pytest.raises(ValueError, match=r"2 all-zero row\(s\) \(3, 9\).*L2 normalisation"):
        det.hallucination_rate(T)
    monkeypatch.setattr(hcdr_mod, "_CHUNK_ROWS", 4)  # rows found in later chunks
    with pytest.raises(ValueError, match=r"all-zero row\(s\) \(9\)"):
        det.predict(np.vstack([X[:9], T[9:10]]))
    with pytest.raises(ValueError, match=r"all-zero row\(s\) \(3"):
        det.state_log_densities(T)


def test_infinite_log_density_is_an_error_not_a_hallucination():
    X, y = _data()
    det = _det(normalize=False).fit(X, y)
    T = X[:5].copy()
    T[2] = 1e160  # finite, but its squared z-score overflows: log-density -inf
    with pytest.raises(
        ValueError,
        match=r"log-density of 1 row\(s\) of `X` \(2\) is not finite.*not a hallucination",
    ):
        det.hallucination_rate(T)
    det_full = _det(normalize=False, covariance_type="full").fit(X, y)
    with pytest.raises(ValueError, match=r"\(2\) is not finite"):
        det_full.predict(T)


def test_nan_log_density_is_an_error(fitted, monkeypatch):
    det, X, _ = fitted

    def nan_scores(self, x):
        out = np.zeros((x.shape[0], 2))
        out[1, 0] = np.nan
        return out

    monkeypatch.setattr(StateDensities, "score", nan_scores)
    with pytest.raises(ValueError, match=r"log-density of 1 row\(s\) of `X` \(1\) is not finite"):
        det.hallucination_rate(X[:10])
