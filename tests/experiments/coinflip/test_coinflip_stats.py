import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr

from deltahall.experiments.coinflip.stats import permutation_correlation


def test_coefficients_match_scipy_and_p_values_behave():
    rng = np.random.default_rng(0)
    x = rng.normal(size=30)
    y = 0.8 * x + rng.normal(scale=0.5, size=30)
    r = permutation_correlation(x, y, rng=1, n_permutations=1999)
    assert r.pearson == pytest.approx(pearsonr(x, y)[0], abs=1e-12)
    assert r.spearman == pytest.approx(spearmanr(x, y)[0], abs=1e-12)
    assert r.pearson_p < 0.01 and r.spearman_p < 0.01
    z = rng.normal(size=30)
    assert permutation_correlation(x, z, rng=1, n_permutations=1999).pearson_p > 0.05


def test_within_group_permutation_ignores_level_differences():
    rng = np.random.default_rng(1)
    # two runs whose levels differ but with no association inside each run
    x = np.r_[rng.normal(0, 1, 20), rng.normal(10, 1, 20)]
    y = np.r_[rng.normal(0, 1, 20), rng.normal(10, 1, 20)]
    g = np.repeat([0, 1], 20)
    naive = permutation_correlation(x, y, rng=0, n_permutations=999)
    within = permutation_correlation(x, y, groups=g, rng=0, n_permutations=999)
    assert naive.pearson > 0.9 and naive.pearson_p < 0.01
    assert abs(within.pearson) < 0.4 and within.pearson_p > 0.05
    # constant within each run but different between runs: undefined, not "correlated"
    y_const = np.repeat([0.6, 0.5], 20)
    assert np.isnan(permutation_correlation(x, y_const, groups=g, rng=0).pearson)
    # a within-run association is found even when run levels point the other way
    x2 = np.r_[np.arange(20.0), np.arange(20.0) + 100]
    y2 = np.r_[np.arange(20.0) + 100, np.arange(20.0)] + rng.normal(0, 1, 40)
    w = permutation_correlation(x2, y2, groups=g, rng=0, n_permutations=999)
    assert w.pearson > 0.9 and w.pearson_p < 0.01
    assert permutation_correlation(x2, y2, rng=0, n_permutations=999).pearson < 0


def test_constant_series_gives_nan_and_bad_input_errors():
    r = permutation_correlation([1, 2, 3, 4], [0.5, 0.5, 0.5, 0.5], rng=0)
    assert np.isnan(r.pearson) and np.isnan(r.spearman_p)
    with pytest.raises(ValueError, match="one length"):
        permutation_correlation([1, 2], [1, 2, 3])
