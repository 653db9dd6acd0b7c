import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deltahall.experiments.coinflip.truth import (
    bayes_estimate,
    bayes_mse_uniform,
    bayes_variance,
    hallucination_rate,
    head_probabilities,
    pmf_at,
    poisson_binomial_pmf,
)


def brute_force_pmf(p):
    n = len(p)
    out = np.zeros(n + 1)
    for flips in itertools.product([0, 1], repeat=n):
        out[sum(flips)] += np.prod([pi if f else 1 - pi for pi, f in zip(p, flips, strict=True)])
    return out


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=6))
def test_pmf_matches_enumeration_and_sums_to_one(p):
    pmf = poisson_binomial_pmf([p])[0]
    assert pmf.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(pmf, brute_force_pmf(p), atol=1e-12)


def test_pmf_batch_rows_are_independent():
    probs = np.array([[0.1, 0.9], [0.5, 0.5], [1.0, 0.0]])
    pmf = poisson_binomial_pmf(probs)
    for row, p in zip(pmf, probs, strict=True):
        np.testing.assert_allclose(row, brute_force_pmf(p), atol=1e-14)
    assert pmf[2].tolist() == [0.0, 1.0, 0.0]


def test_pmf_rejects_bad_input():
    with pytest.raises(ValueError, match="2-dimensional"):
        poisson_binomial_pmf([0.5, 0.5])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        poisson_binomial_pmf([[0.5, 1.5]])


def test_head_probabilities_data_vs_authors_scoring():
    assert head_probabilities(3).tolist() == pytest.approx([1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6, 1.0])
    assert (
        head_probabilities(3, authors_scoring=True)[0] == 0.0
    )  # the authors' coin 0 never lands heads


@pytest.mark.parametrize("n,expected", [(2, 0.3125), (3, None), (5, 0.825)])
def test_bayes_mse_uniform_equals_average_over_all_subsets(n, expected):
    p = head_probabilities(n)
    subsets = np.array(list(itertools.combinations(range(2 * n), n)))
    exact = float(bayes_variance(p[subsets]).mean())
    assert bayes_mse_uniform(n) == pytest.approx(exact, abs=1e-12)
    if expected is not None:
        assert exact == pytest.approx(expected, abs=1e-12)


def test_bayes_estimate_minimises_exact_mse_among_constant_per_input_estimators():
    p = head_probabilities(3)
    subsets = np.array(list(itertools.combinations(range(6), 3)))
    pmf = poisson_binomial_pmf(p[subsets])
    k = np.arange(4)
    mean = bayes_estimate(p[subsets])
    np.testing.assert_allclose(mean, pmf @ k, atol=1e-12)
    grid = np.linspace(-0.5, 3.5, 801)
    # exact expected squared error E[(c - Y)^2 | X] for every constant c on the grid
    risk = ((grid[None, :, None] - k[None, None, :]) ** 2 * pmf[:, None, :]).sum(-1)
    risk_at_mean = ((mean[:, None] - k[None, :]) ** 2 * pmf).sum(-1)
    np.testing.assert_allclose(risk_at_mean, bayes_variance(p[subsets]), atol=1e-12)
    assert np.all(risk_at_mean <= risk.min(axis=1) + 1e-12)
    # and any other constant per input (e.g. the mode) is strictly worse somewhere
    mode = pmf.argmax(axis=1).astype(float)
    risk_mode = ((mode[:, None] - k[None, :]) ** 2 * pmf).sum(-1)
    assert risk_mode.mean() > risk_at_mean.mean()


def test_pmf_at_is_guarded():
    pmf = np.array([[0.2, 0.5, 0.3]] * 6)
    got = pmf_at(pmf, [0, 2, 3, -1, 1.5, np.nan])
    assert got.tolist() == [0.2, 0.3, 0.0, 0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="B, N\\+1"):
        pmf_at(pmf, [0, 1])


def test_hallucination_rate_counts_at_or_below_delta():
    assert hallucination_rate([0.1, 0.2, 0.5, 0.0], 0.2) == 0.75
