"""HCDRDetector: the outlier contract, the two calibration rules, references and input errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils._param_validation import InvalidParameterError

import deltahall.detectors.hcdr as hcdr_mod
from deltahall.detectors import HCDRDetector
from deltahall.detectors.calibrators import Calibrator
from deltahall.detectors.densities import StateDensities
from deltahall.detectors.hcdr import stratified_split

MEANS = np.array([[-5.0, 0.0], [5.0, 0.0], [0.0, 7.0]])


def _two_states(n=300, d=12, sep=3.0, seed=0):
    rng = np.random.default_rng(seed)
    X = np.vstack([rng.normal(0, 1, (n, d)), rng.normal(0, 1, (n, d)) + sep])
    X[:, 0] += 5.0  # keep norms away from 0 for the L2 step
    return X, np.repeat(np.array(["cat", "dog"]), n)


def _draw(rng: np.random.Generator, n_per: int) -> tuple[np.ndarray, np.ndarray]:
    y = np.repeat(np.arange(3), n_per)
    return MEANS[y] + rng.normal(size=(y.size, 2)), y


def _small(**kw):
    return HCDRDetector(
        **{"pca_dim": None, "normalize": False, "n_components": 1, "random_state": 0, **kw}
    )


@pytest.fixture(scope="module", params=["conformal", "percentile"])
def fitted(request):
    X, y = _two_states()
    return (
        HCDRDetector(calibration=request.param, pca_dim=8, n_components=2, random_state=0).fit(
            X, y
        ),
        X,
        y,
    )


def test_keyword_only():
    with pytest.raises(TypeError):
        HCDRDetector(5)  # type: ignore[misc]


def test_built_from_the_instrument(fitted):
    """The same split, StateDensities and Calibrator by hand give the same numbers (no third copy)."""
    det, X, y = fitted
    classes, y_idx = np.unique(y, return_inverse=True)
    rs = np.random.RandomState(0)
    split_seed, dens_seed = (int(v) for v in rs.randint(np.iinfo(np.int32).max, size=2))
    fit, cal = stratified_split(y_idx, det.calibration_fraction, split_seed)
    dens = StateDensities(pca_dim=8, covariance_type="auto", n_components=2, random_state=dens_seed)
    dens.fit(X[fit], y_idx[fit], ["cat", "dog"])
    S = dens.score(X[cal])
    c = Calibrator(det.calibration, 0.1).fit([S[y_idx[cal] == i, i] for i in range(2)], 2)
    np.testing.assert_array_equal(det.state_log_densities(X), dens.score(X))
    np.testing.assert_array_equal(det.thresholds_, c.thresholds_)
    np.testing.assert_array_equal(det.predict(X) == -1, c.flags(dens.score(X)))


def test_outlier_contract(fitted):
    det, X, _ = fitted
    rng = np.random.default_rng(5)
    T = np.vstack([X[:100], rng.normal(0, 3, (200, X.shape[1]))])
    s, dec, pred = det.score_samples(T), det.decision_function(T), det.predict(T)
    assert s.shape == dec.shape == pred.shape == (300,)
    np.testing.assert_array_equal(dec, s - det.offset_)
    np.testing.assert_array_equal(pred, np.where(dec >= 0, 1, -1))
    np.testing.assert_array_equal(pred == 1, det.state_membership(T).any(axis=1))
    assert det.state_log_densities(T).shape == (300, 2)
    if det.calibration == "conformal":
        np.testing.assert_array_equal(s, det.p_values(T))
        np.testing.assert_array_equal(pred == 1, s > det.alpha)  # exactly p > alpha, ties flagged
    else:
        assert det.offset_ == 0.0
        np.testing.assert_array_equal(s, (det.state_log_densities(T) - det.thresholds_).max(axis=1))


def test_conformal_tie_is_flagged():
    """p == alpha exactly (alpha (m+1) an integer) is flagged, and decision_function says so."""
    rng = np.random.default_rng(0)
    X, y = _draw(
        rng, 30
    )  # calibration_fraction 1/3 -> m = 10 per state, alpha (m+1) = 1.1 -> use alpha = 1/11
    det = _small(alpha=1 / 11, calibration_fraction=1 / 3).fit(X, y)
    assert det.n_calibration_.tolist() == [10, 10, 10]
    far = np.array([[40.0, 40.0]])
    assert det.score_samples(far)[0] == pytest.approx(1 / 11)
    assert det.decision_function(far)[0] < 0 and det.predict(far)[0] == -1


def test_recovers_known_hcdr_on_far_clusters():
    rng = np.random.default_rng(0)
    c1, c2 = np.full(5, -10.0), np.full(5, 10.0)
    X = np.vstack([rng.normal(c1, 1.0, (400, 5)), rng.normal(c2, 1.0, (400, 5))])
    y = np.repeat([0, 1], 400)
    det = HCDRDetector(pca_dim=None, normalize=False, random_state=0).fit(X, y)
    assert det.predict(X.mean(axis=0, keepdims=True)).tolist() == [-1]  # A*(X) of Lemma B.1
    near = np.vstack([c1 + rng.normal(0, 0.3, (50, 5)), c2 + rng.normal(0, 0.3, (50, 5))])
    assert (det.predict(near) == 1).all()
    assert (
        det.state_membership(near[:50])[:, 0].all()
        and not det.state_membership(near[:50])[:, 1].any()
    )


@pytest.mark.parametrize("alpha", [0.1, 0.2])
def test_conformal_guarantee_over_repetitions(alpha: float) -> None:
    """Over 100 seeded repetitions (fresh reference and test draws each time), the mean flagged fraction
    of fresh real samples is <= alpha + 3 SE and >= alpha - 1/(m+1) - 3 SE (m = 24 per state)."""
    rng = np.random.default_rng(123)
    m, n_per, n_test, reps = 24, 60, 150, 100
    fr = np.empty(reps)
    for r in range(reps):
        X, y = _draw(rng, n_per)
        det = _small(alpha=alpha, calibration_fraction=m / n_per, random_state=r).fit(X, y)
        assert det.n_calibration_.tolist() == [m] * 3
        yt = rng.integers(0, 3, n_test)
        fr[r] = np.mean(det.predict(MEANS[yt] + rng.normal(size=(n_test, 2))) == -1)
    mean, se = fr.mean(), fr.std(ddof=1) / math.sqrt(reps)
    assert alpha - 1 / (m + 1) - 3 * se <= mean <= alpha + 3 * se, (mean, se)


def test_the_papers_percentile_rule_overshoots_alpha_at_small_m() -> None:
    """Why conformal: with m = 24 calibration samples per state the 10th-percentile threshold flags
    more than 10% of fresh real samples, the conformal rule fewer."""
    rng = np.random.default_rng(123)
    fr: dict[str, list[float]] = {"conformal": [], "percentile": []}
    for r in range(50):
        X, y = _draw(rng, 60)
        yt = rng.integers(0, 3, 150)
        Xt = MEANS[yt] + rng.normal(size=(150, 2))
        for cal in fr:
            det = _small(calibration=cal, calibration_fraction=0.4, random_state=r).fit(X, y)
            fr[cal].append(float(np.mean(det.predict(Xt) == -1)))
    assert np.mean(fr["percentile"]) > 0.11 > 0.1 > np.mean(fr["conformal"])


def test_percentile_rule_is_the_papers() -> None:
    rng = np.random.default_rng(0)
    X, y = _draw(rng, 100)
    det = _small(calibration="percentile").fit(X, y)
    thr = np.array([np.percentile(c, 10.0) for c in det.calibration_scores_])
    np.testing.assert_allclose(det.thresholds_, thr)
    Z = rng.normal(size=(300, 2)) * 5
    S = det.state_log_densities(Z)
    np.testing.assert_array_equal(det.predict(Z) == -1, ~(S >= thr).any(axis=1))
    for c, t, cov in zip(
        det.calibration_scores_, det.thresholds_, det.holdout_coverage_, strict=True
    ):
        assert cov == pytest.approx(np.mean(c >= t))


def test_p_values_match_brute_force() -> None:
    rng = np.random.default_rng(1)
    X, y = _draw(rng, 80)
    det = _small(alpha=0.15, random_state=1).fit(X, y)
    Z = rng.normal(size=(200, 2)) * 6
    S = det.state_log_densities(Z)
    brute = np.array(
        [
            [(1 + np.sum(c <= s[i])) / (c.size + 1) for i, c in enumerate(det.calibration_scores_)]
            for s in S
        ]
    ).max(axis=1)
    np.testing.assert_allclose(det.score_samples(Z), brute)
    np.testing.assert_array_equal(det.predict(Z) == -1, brute <= 0.15)
    np.testing.assert_array_equal(brute <= 0.15, ~(S >= det.thresholds_).any(axis=1))


def test_stratified_split_is_disjoint_seeded_and_stratified() -> None:
    y = np.repeat([0, 1, 2], [50, 30, 21])
    a, b = stratified_split(y, 0.3, 0), stratified_split(y, 0.3, 0)
    for pa, pb in zip(a, b, strict=True):
        np.testing.assert_array_equal(pa, pb)
    rows = np.concatenate(a)
    assert np.unique(rows).size == y.size == rows.size
    assert np.bincount(y[a[1]]).tolist() == [15, 9, 7]  # ceil(0.3 n_i)
    assert not np.array_equal(stratified_split(y, 0.3, 1)[1], a[1])


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    alpha=st.sampled_from([0.05, 0.1, 0.25]),
    cal=st.sampled_from(["conformal", "percentile"]),
)
def test_rate_curve_and_predict_agree(seed, alpha, cal):
    rng = np.random.default_rng(seed)
    X, y = _draw(rng, 70)
    det = _small(alpha=alpha, calibration=cal, calibration_fraction=0.4, random_state=seed).fit(
        X, y
    )
    T = rng.normal(size=(80, 2)) * 6
    assert det.rate_curve(T, [det.percentile])[0] == pytest.approx(det.hallucination_rate(T))


def test_rate_curve_monotone(fitted):
    det, X, _ = fitted
    T = np.vstack([X[:100], np.random.default_rng(5).normal(0, 3, (200, X.shape[1]))])
    curve = det.rate_curve(T, np.linspace(0, 60, 13))
    assert np.all(np.diff(curve) >= 0)


def test_fit_predict_equals_fit_then_predict():
    X, y = _two_states()
    a = HCDRDetector(pca_dim=5, random_state=3).fit(X, y).predict(X)
    b = HCDRDetector(pca_dim=5, random_state=3).fit_predict(X, y)
    np.testing.assert_array_equal(a, b)


def test_calibration_attributes(fitted):
    det, _, _ = fitted
    assert det.classes_.tolist() == ["cat", "dog"]
    assert det.thresholds_.shape == (2,) and len(det.calibration_scores_) == 2
    assert det.n_calibration_.tolist() == [90, 90]  # ceil(0.3 * 300)
    assert [d["n_fit"] for d in det.densities_.summary()] == [210, 210]
    assert all(np.all(np.diff(c) >= 0) for c in det.calibration_scores_)


def test_chunking_and_float32(fitted, monkeypatch):
    det, X, _ = fitted
    full = det.state_log_densities(X)
    monkeypatch.setattr(hcdr_mod, "_CHUNK_ROWS", 7)  # BLAS blocking may move the last bit
    np.testing.assert_allclose(det.state_log_densities(X), full, rtol=1e-12, atol=0)
    np.testing.assert_allclose(det.state_log_densities(X.astype(np.float32)), full, atol=1e-3)
    Xb = X.copy()
    Xb[500, 3] = np.nan  # in a late chunk
    with pytest.raises(ValueError, match=r"NaN/inf in 1 row\(s\): 500\."):
        det.score_samples(Xb)


def test_pipeline_use():
    X, y = _two_states()
    pipe = make_pipeline(FunctionTransformer(lambda a: 2.0 * a), HCDRDetector(random_state=0))
    pred = pipe.fit(X, y).predict(X)
    assert set(np.unique(pred)) <= {-1, 1}
    assert 0.02 < np.mean(pred == -1) < 0.2


@pytest.mark.parametrize(
    "method",
    [
        "score_samples",
        "decision_function",
        "predict",
        "hallucination_rate",
        "state_membership",
        "state_log_densities",
        "p_values",
    ],
)
def test_not_fitted(method):
    with pytest.raises(NotFittedError):
        getattr(HCDRDetector(), method)(np.ones((3, 4)))


def test_not_fitted_other():
    with pytest.raises(NotFittedError):
        HCDRDetector().rate_curve(np.ones((3, 4)), [10])
    with pytest.raises(NotFittedError):
        HCDRDetector().save("never-written.safetensors")


def test_bad_inputs():
    X, y = _two_states()
    det = HCDRDetector(pca_dim=5, random_state=0).fit(X, y)
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
    with pytest.raises(ValueError, match="requires y to be passed"):
        HCDRDetector().fit(X, None)
    y2 = y.copy()
    y2[:290] = "dog"  # "cat" keeps 10 rows -> 3 calibration rows
    with pytest.raises(
        ValueError,
        match=r"state 'cat' has m=3 calibration samples \(of its 10 samples.*"
        r"m\+1 < 1/alpha = 10",
    ):
        HCDRDetector(pca_dim=5).fit(X, y2)
    HCDRDetector(pca_dim=5, calibration="percentile").fit(X, y2)  # the paper's rule needs one row
    y3 = y.copy()
    y3[:296] = "dog"  # "cat" keeps 4 rows -> 2 fit rows at calibration_fraction 0.5
    with pytest.raises(ValueError, match=r"state 'cat' has 2 samples in its fit part.*at least 3"):
        HCDRDetector(calibration="percentile", calibration_fraction=0.5).fit(X, y3)
    with pytest.raises(
        ValueError, match=r"`pca_dim` must be <= min\(n_features, n_fit - 1, 64\).*= 12; got 13"
    ):
        HCDRDetector(pca_dim=13).fit(X, y)
    with pytest.raises(
        ValueError, match=r"`percentiles` must be a 1-d array of values in \[0, 100\]"
    ):
        det.rate_curve(X, [120])


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (
            {"alpha": 1.5},
            r"'alpha' parameter of HCDRDetector must be a float in the range \(0.0, 1.0\)\. Got 1.5",
        ),
        ({"alpha": 0}, r"'alpha' parameter .* Got 0 instead"),
        (
            {"calibration": "median"},
            r"'calibration' parameter .* among \{.*conformal.*\}\. Got 'median'",
        ),
        ({"calibration": "margin"}, r"'calibration' parameter"),
        ({"calibration_fraction": 1.0}, r"'calibration_fraction' parameter .* \(0.0, 1.0\)"),
        ({"covariance_type": "banana"}, r"'covariance_type' parameter"),
        ({"n_components": 0}, r"'n_components' parameter .* Got 0 instead"),
        ({"pca_dim": 0}, r"'pca_dim' parameter"),
        ({"normalize": "yes"}, r"'normalize' parameter .* an instance of 'bool'"),
        ({"reg_covar": -1.0}, r"'reg_covar' parameter"),
    ],
)
def test_bad_parameters_name_the_rule_and_value(kw, match):
    X, y = _two_states(n=40)
    with pytest.raises(InvalidParameterError, match=match):
        HCDRDetector(**kw).fit(X, y)


@pytest.mark.parametrize("calibration", ["conformal", "percentile"])
def test_synthetic_precision_recall_high(calibration):
    from deltahall.detectors.diagnostics import synthetic_check

    r = synthetic_check(dim=4, n_per_state=800, n_test=4000, calibration=calibration, rng=0)
    assert r.precision > 0.95 and r.recall > 0.95, r
    assert abs(r.detected_outside_rate - r.true_outside_rate) < 0.03


def test_coverage_close_to_nominal_on_fresh_data():
    from deltahall.detectors.diagnostics import coverage_on, coverage_report, make_gaussian_states

    means = np.array([[0.0, 0, 0], [6, 0, 0]])
    train = make_gaussian_states(1500, means, rng=1)
    det = _small(alpha=0.2, calibration="percentile", calibration_fraction=0.2).fit(
        train.X, train.y
    )
    rep = coverage_report(det)
    assert rep.nominal_mass == pytest.approx(0.8)
    assert rep.n_holdout.tolist() == [300, 300]
    assert np.all(np.abs(rep.gap) <= 2 * rep.std_error + 1 / rep.n_holdout)
    fresh = make_gaussian_states(5000, means, rng=2)
    cov = coverage_on(det, fresh.X, fresh.y)
    se = np.sqrt(0.8 * 0.2 / 300)  # the threshold itself comes from 300 calibration rows
    assert np.all(np.abs(cov - 0.8) < 4 * se), cov
