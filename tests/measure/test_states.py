"""--states auto: a BIC-chosen mixture recovers well-separated states."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from deltahall.detectors.states import discover_states


@pytest.mark.parametrize("k", [2, 4])
def test_recovers_well_separated_states(k: int) -> None:
    rng = np.random.default_rng(k)
    means = rng.normal(size=(k, 5)) * 10
    y = np.repeat(np.arange(k), 120)
    X = means[y] + rng.normal(size=(y.size, 5))
    d = discover_states(X, 6, pca_dim=None, normalize=False, random_state=0)
    assert d.n_states == k
    assert adjusted_rand_score(y, d.labels) == 1.0
    assert sorted(d.sizes) == [120] * k and d.sizes == sorted(d.sizes, reverse=True)
    for s, reps in enumerate(d.representatives):
        assert len(reps) == 5 and all(d.labels[r] == s for r in reps)


def test_one_blob_is_reported() -> None:
    X = np.random.default_rng(0).normal(size=(300, 3))
    d = discover_states(X, 3, pca_dim=None, normalize=False, random_state=0)
    assert d.one_state_preferred and d.bic[1] < d.bic[d.n_states]


def test_errors() -> None:
    with pytest.raises(ValueError, match="`max_states` must be >= 2; got 1"):
        discover_states(np.zeros((10, 2)), 1)
    with pytest.raises(ValueError, match="at least 2 \\* `max_states` = 20 rows"):
        discover_states(np.zeros((10, 2)), 10)
