"""HCDRDetector: correctness against references, invariants and input errors."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError
from sklearn.mixture import GaussianMixture
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, Normalizer, StandardScaler

import deltahall.detectors.hcdr as hcdr_mod
from deltahall.detectors import GaussianMixtureParams, HCDRDetector
from deltahall.detectors._gmm import StackedMixtures

COV_TYPES = ["full", "diag", "tied", "spherical"]


def _two_states(n=300, d=12, sep=3.0, seed=0):
    rng = np.random.default_rng(seed)
    X = np.vstack([rng.normal(0, 1, (n, d)), rng.normal(0, 1, (n, d)) + sep])
    X[:, 0] += 5.0  # keep norms away from 0 for the L2 step
    return X, np.repeat(np.array(["cat", "dog"]), n)


@pytest.fixture(scope="module")
def fitted():
    X, y = _two_states()
    return HCDRDetector(pca_dim=8, n_components=3, random_state=0).fit(X, y), X, y


@pytest.mark.parametrize("ct", COV_TYPES)
def test_log_density_equals_sklearn(ct):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 6)) * rng.uniform(0.5, 3, 6)
    Z = rng.normal(size=(257, 6)) * 4
    gmms = [GaussianMixture(k, covariance_type=ct, random_state=0).fit(X + j) for j, k in enumerate([3, 2])]
    params = [GaussianMixtureParams.from_sklearn(g) for g in gmms]
    ref = np.stack([g.score_samples(Z) for g in gmms], axis=1)
    np.testing.assert_allclose(StackedMixtures(params).log_densities(Z), ref, rtol=0, atol=1e-8)
    for p, g in zip(params, gmms, strict=True):
        np.testing.assert_allclose(p.log_density(Z), g.score_samples(Z), rtol=0, atol=1e-8)


@pytest.mark.parametrize("ct", COV_TYPES)
def test_pipeline_matches_sklearn_reference(ct):
    X, y = _two_states()
    det = HCDRDetector(pca_dim=8, n_components=2, covariance_type=ct, random_state=0).fit(X, y)
    ref = make_pipeline(Normalizer(), PCA(8, svd_solver="full"), StandardScaler()).fit(X)
    Z = ref.transform(X)
    # PCA component signs are deterministic (svd_flip), so the spaces coincide.
    np.testing.assert_allclose(det.preprocess(X), Z, atol=1e-9)
    scores = det.score_samples(X)
    for i, m in enumerate(det.mixtures_):
        g = GaussianMixture(m.n_components, covariance_type=ct)
        g.weights_, g.means_, g.precisions_cholesky_ = m.weights, m.means, m.precisions_cholesky
        g.n_features_in_ = m.n_features
        np.testing.assert_allclose(scores[:, i], g.score_samples(Z), rtol=0, atol=1e-8)


def test_recovers_known_hcdr_on_far_clusters():
    rng = np.random.default_rng(0)
    c1, c2 = np.full(5, -10.0), np.full(5, 10.0)
    X = np.vstack([rng.normal(c1, 1.0, (400, 5)), rng.normal(c2, 1.0, (400, 5))])
    y = np.repeat([0, 1], 400)
    det = HCDRDetector(pca_dim=None, normalize=False, n_components=2, random_state=0).fit(X, y)
    mean_of_clusters = X.mean(axis=0, keepdims=True)  # the loss-minimising A*(X) of Lemma B.1
    assert det.predict(mean_of_clusters).tolist() == [-1]
    near = np.vstack([c1 + rng.normal(0, 0.3, (50, 5)), c2 + rng.normal(0, 0.3, (50, 5))])
    assert (det.predict(near) == 1).all()
    assert det.state_membership(near[:50])[:, 0].all() and not det.state_membership(near[:50])[:, 1].any()


def test_synthetic_precision_recall_high():
    from deltahall.detectors.diagnostics import synthetic_check

    r = synthetic_check(dim=4, n_per_state=800, n_test=4000, rng=0)
    assert r.precision > 0.95 and r.recall > 0.95, r
    assert abs(r.detected_outside_rate - r.true_outside_rate) < 0.03


def test_coverage_close_to_nominal_on_fresh_data():
    from deltahall.detectors.diagnostics import coverage_on, coverage_report, make_gaussian_states

    means = np.array([[0.0, 0, 0], [6, 0, 0]])
    train = make_gaussian_states(1500, means, rng=1)
    det = HCDRDetector(pca_dim=None, normalize=False, n_components=1, percentile=20, random_state=0)
    det.fit(train.X, train.y)
    rep = coverage_report(det)
    assert rep.nominal_mass == pytest.approx(0.8)
    assert np.all(np.abs(rep.gap) <= 2 * rep.std_error + 1 / rep.n_holdout)
    fresh = make_gaussian_states(5000, means, rng=2)
    cov = coverage_on(det, fresh.X, fresh.y)
    se = np.sqrt(0.8 * 0.2 / 300)  # the threshold itself comes from 300 held-out rows
    assert np.all(np.abs(cov - 0.8) < 4 * se), cov


def test_fit_predict_equals_fit_then_predict():
    X, y = _two_states()
    a = HCDRDetector(pca_dim=5, n_components=2, random_state=3).fit(X, y).predict(X)
    b = HCDRDetector(pca_dim=5, n_components=2, random_state=3).fit_predict(X, y)
    np.testing.assert_array_equal(a, b)


def test_rate_curve_consistent(fitted):
    det, X, _ = fitted
    rng = np.random.default_rng(5)
    T = np.vstack([X[:100], rng.normal(0, 3, (200, X.shape[1]))])
    p = np.linspace(0, 60, 13)
    curve = det.rate_curve(T, p)
    assert np.all(np.diff(curve) >= 0)
    assert det.rate_curve(T, [det.percentile])[0] == pytest.approx(det.hallucination_rate(T))
    dec = det.decision_function(T)
    np.testing.assert_array_equal(dec >= 0, det.state_membership(T).any(axis=1))
    np.testing.assert_array_equal(det.predict(T), np.where(dec >= 0, 1, -1))


def test_calibration_attributes(fitted):
    det, _, y = fitted
    assert det.classes_.tolist() == ["cat", "dog"]
    assert det.thresholds_.shape == (2,) and len(det.calibration_scores_) == 2
    assert [c.size for c in det.calibration_scores_] == [60, 60]  # ceil(0.2 * 300)
    for c, t, cov in zip(det.calibration_scores_, det.thresholds_, det.holdout_coverage_, strict=True):
        assert t == pytest.approx(np.percentile(c, 10))
        assert cov == pytest.approx(np.mean(c >= t))


@pytest.mark.parametrize("ct", ["diag", "spherical", "full"])
def test_chunking_threads_and_float32(ct, monkeypatch):
    X, y = _two_states()
    det = HCDRDetector(pca_dim=8, n_components=3, covariance_type=ct, random_state=0, n_jobs=1).fit(X, y)
    full = det.score_samples(X)
    monkeypatch.setattr(hcdr_mod, "_CHUNK_ROWS", 7)
    np.testing.assert_array_equal(det.score_samples(X), full)
    np.testing.assert_array_equal(det.set_params(n_jobs=2).score_samples(X), full)
    np.testing.assert_allclose(det.score_samples(X.astype(np.float32)), full, atol=1e-3)
    Xb = X.copy()
    Xb[500, 3] = np.nan  # in a late chunk, found by a worker thread
    with pytest.raises(ValueError, match=r"NaN/inf in 1 row\(s\): 500\."):
        det.score_samples(Xb)


def test_pipeline_use():
    X, y = _two_states()
    pipe = make_pipeline(FunctionTransformer(lambda a: 2.0 * a), HCDRDetector(pca_dim=6, random_state=0))
    pred = pipe.fit(X, y).predict(X)
    assert set(np.unique(pred)) <= {-1, 1}
    assert 0.05 < np.mean(pred == -1) < 0.2


@pytest.mark.parametrize(
    "method", ["score_samples", "decision_function", "predict", "hallucination_rate", "state_membership", "preprocess"]
)
def test_not_fitted(method):
    with pytest.raises(NotFittedError):
        getattr(HCDRDetector(), method)(np.ones((3, 4)))


def test_not_fitted_other():
    with pytest.raises(NotFittedError):
        HCDRDetector().rate_curve(np.ones((3, 4)), [10])
    with pytest.raises(NotFittedError):
        HCDRDetector().save("never-written.safetensors")


def test_bad_inputs(fitted):
    det, X, y = fitted
    Xb = X.copy()
    Xb[7, 2] = np.nan
    Xb[11, 0] = np.inf
    with pytest.raises(ValueError, match=r"NaN/inf in 2 row\(s\): 7, 11"):
        HCDRDetector(pca_dim=5).fit(Xb, y)
    with pytest.raises(ValueError, match=r"NaN/inf in 2 row\(s\): 7, 11"):
        det.score_samples(Xb)
    with pytest.raises(ValueError, match="X has 5 features, but HCDRDetector is expecting 12"):
        det.predict(X[:, :5])
    with pytest.raises(ValueError, match="at least two states.*one class"):
        HCDRDetector(pca_dim=5).fit(X, np.zeros(len(X)))
    with pytest.raises(ValueError, match="same number of rows; got 600 and 599"):
        HCDRDetector(pca_dim=5).fit(X, y[:-1])
    y2 = y.copy()
    y2[:250] = "dog"  # "cat" keeps 50 rows -> 10 held out
    with pytest.raises(ValueError, match=r"state 'cat' has 50 samples.*10 < `min_holdout`=11"):
        HCDRDetector(pca_dim=5, min_holdout=11).fit(X, y2)
    with pytest.raises(ValueError, match=r"`pca_dim` must be <= min\(n_samples, n_features\).*got 13"):
        HCDRDetector(pca_dim=13).fit(X, y)
    with pytest.raises(ValueError, match=r"`percentile` must be in \[0, 100\); got 100"):
        HCDRDetector(percentile=100).fit(X, y)
    with pytest.raises(ValueError, match="`covariance_type` must be one of"):
        HCDRDetector(covariance_type="banana").fit(X, y)
    with pytest.raises(ValueError, match=r"`percentiles` must be a 1-d array of values in \[0, 100\]"):
        det.rate_curve(X, [120])
