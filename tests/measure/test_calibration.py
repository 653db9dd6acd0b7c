"""measure_embeddings: the split, the floor, per-prompt rates, the interval's coverage, one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

from deltahall.measure import DetectorSettings, measure_embeddings
from deltahall.stats import proportion_ci

from .conftest import MEANS, blends, draw

S = DetectorSettings(pca_dim=None, normalize=False, n_components=1, covariance_type="full")


def _ref(rng: np.random.Generator, n_per: int = 150) -> tuple[np.ndarray, np.ndarray]:
    return draw(rng, 3 * n_per, np.repeat(np.arange(3), n_per))


def test_blends_are_flagged_real_like_samples_sit_at_the_floor() -> None:
    rng = np.random.default_rng(0)
    X, y = _ref(rng)
    G = np.vstack([draw(rng, 200)[0], blends(rng, 100)])
    m = measure_embeddings(X, y, G, prompts=["real"] * 200 + ["blend"] * 100, settings=S)
    pp = {r["prompt"]: r for r in m.per_prompt}
    assert pp["blend"]["rate"] > 0.9 and pp["real"]["rate"] < 0.2
    assert pp["blend"]["rate_ci"][0] <= pp["blend"]["rate"] <= pp["blend"]["rate_ci"][1]
    assert (
        pp["real"]["mean_embedding_inside"] is False
    )  # the mean of three states lies between them
    assert m.excess_p_value < 1e-6
    assert m.floor.n == 90 and m.floor.rate < 0.25
    s = m.summary()
    assert (
        s["ci_method"] == "wilson"
        and s["excess_test"] == "mixture_matched_posterior_predictive_one_sided"
    )
    assert [st["size"] for st in s["states"]] == [150, 150, 150]
    assert [st["calibration"] for st in s["states"]] == [45, 45, 45]
    # the curve is monotone in alpha and passes through the measured rate at alpha
    i = m.curve["alphas"].index(0.1)
    assert m.curve["rate"][i] == pytest.approx(m.rate.rate)
    assert np.all(np.diff(m.curve["rate"]) >= 0)


def test_one_state_prompt_mean_embedding_is_inside() -> None:
    rng = np.random.default_rng(1)
    X, y = _ref(rng)
    G = draw(rng, 50, np.zeros(50, dtype=int))[0]
    m = measure_embeddings(X, y, G, settings=S)
    assert m.per_prompt[0]["prompt"] == "" and m.per_prompt[0]["mean_embedding_inside"] is True
    assert set(m.gen_nearest.tolist()) == {0}


def test_wilson_interval_covers_the_rate_of_a_known_generator() -> None:
    """Fixed detector; the generator's true flag probability from 200k draws; 400 measurements of n=80."""
    rng = np.random.default_rng(2)
    X, y = _ref(rng)

    def gen(n: int) -> np.ndarray:  # 70% real-like, 30% blends
        k = rng.binomial(n, 0.3)
        return np.vstack([draw(rng, n - k)[0], blends(rng, k)])

    m = measure_embeddings(X, y, gen(10), settings=S)

    def flagged(Z: np.ndarray) -> np.ndarray:
        return m.calibrator.flags(m.scorer.score(Z))

    truth = float(flagged(gen(200_000)).mean())
    n = 80
    hits = 0
    for _ in range(400):
        k = int(flagged(gen(n)).sum())
        lo, hi = proportion_ci(k, n)
        hits += lo <= truth <= hi
    assert 0.92 <= hits / 400 <= 0.98, (truth, hits)


def test_seeded() -> None:
    rng = np.random.default_rng(3)
    X, y = _ref(rng)
    G = blends(rng, 30)
    a = measure_embeddings(X, y, G, settings=S)
    b = measure_embeddings(X, y, G, settings=S)
    np.testing.assert_array_equal(a.gen_p, b.gen_p)
    np.testing.assert_array_equal(a.parts["test"], b.parts["test"])


def test_errors_are_one_line() -> None:
    rng = np.random.default_rng(4)
    X, y = _ref(rng)
    G = draw(rng, 10)[0]
    cases = [
        (
            lambda: measure_embeddings(X, np.zeros(len(y)), G, settings=S),
            "at least two latent states; got one",
        ),
        (
            lambda: measure_embeddings(X, y, G[:, :3], settings=S),
            "must have the reference's dimension 4; got 3",
        ),
        (lambda: measure_embeddings(X, y, G[:0], settings=S), "at least one sample"),
        (
            lambda: measure_embeddings(X[:60], np.repeat([0, 1, 2], 20), G, settings=S),
            r"state '0' has m=6 calibration samples \(of its 20 reference samples\), so m\+1 < 1/alpha = 10",
        ),
        (
            lambda: measure_embeddings(X, y, G, prompts=["a"], settings=S),
            "one entry per generated row",
        ),
    ]
    for fn, msg in cases:
        with pytest.raises(ValueError, match=msg) as exc:
            fn()
        assert "\n" not in str(exc.value)
    with pytest.raises(ValueError, match="must be 1; got 1.1"):
        DetectorSettings(fit_fraction=0.6)
    assert MEANS.shape == (3, 4)


def test_a_mode_collapsed_generator_is_not_called_hallucinating() -> None:
    """Fresh real samples of one state only: no hallucination, so the excess test must rarely reject.

    The states differ in shape (one is elongated), so their floors differ; the pooled Fisher test
    is kept beside the stratified one only to show why stratification is needed.
    """
    rejected, rejected_pooled = 0, 0
    scales = np.array([[3.0, 0.3, 0.3, 0.3], [1.0, 1.0, 1.0, 1.0], [0.5, 0.5, 2.0, 0.5]])
    for seed in range(30):
        rng = np.random.default_rng(100 + seed)
        y = np.repeat(np.arange(3), 120)
        X = (
            np.array([[6.0, 0, 0, 0], [0, 8.0, 0, 0], [0, 0, 7.0, 0]])[y]
            + rng.normal(size=(360, 4)) * scales[y]
        )
        st = seed % 3
        G = (
            np.array([[6.0, 0, 0, 0], [0, 8.0, 0, 0], [0, 0, 7.0, 0]])[st]
            + rng.normal(size=(80, 4)) * scales[st]
        )
        m = measure_embeddings(X, y, G, settings=DetectorSettings(normalize=False, seed=seed))
        rejected += m.excess_p_value < 0.05
        rejected_pooled += m.excess_p_value_pooled < 0.05
    assert rejected <= 3, (rejected, rejected_pooled)
