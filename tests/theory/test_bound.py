"""Theorem 6.1's bound as stated, the union bound and the ceiling of the stated bound."""

from __future__ import annotations

import math

import numpy as np
import pytest

from deltahall.theory.bound import supremum_of_stated_bound, theorem_6_1_bound


def test_bound_as_stated_by_hand() -> None:
    w, s, k, r = np.array([0.5, 0.5]), np.array([1.0, 1.0]), np.array([1.0, 1.0]), 0.0
    b = theorem_6_1_bound(w, s, kurtosis_ratios=k, radius=r)
    assert b.applicable and b.optimum_spread == pytest.approx(math.sqrt(0.5))
    # (1 - 1/x)(1 - x/2)^2 with x = α², maximised at x = 1 + 1/sqrt(2)... check against a dense grid
    x = np.linspace(1, 2, 200_001)[1:-1]
    best = np.max((1 - 1 / x) * (1 - x / 2) ** 2)
    np.testing.assert_allclose(b.state_factors, best, rtol=1e-8)
    assert b.stated_bound == pytest.approx(best**2, rel=1e-7)
    np.testing.assert_allclose(b.thetas, b.alphas**2 * b.optimum_spread**2, rtol=1e-9)
    # ... and it is the numerical supremum of the stated bound over all instances (about 8.04e-4)
    sup, where = supremum_of_stated_bound(4, grid=41)
    assert sup == pytest.approx(best**2, rel=1e-6) and where["n_states"] == 2


def test_bound_not_applicable_is_reported() -> None:
    b = theorem_6_1_bound([0.9, 0.1], [1.0, 1.0], kurtosis_ratios=[1.0, 1.0], radius=0.5)
    assert not b.applicable and "no alpha > 1" in b.reason and b.stated_bound is None
    assert [st.alpha for st in b.states] == [None, None] and b.union_bound == 0.0


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda: theorem_6_1_bound([0.5, 0.6], [1, 1], kurtosis_ratios=[1, 1], radius=0),
            "must sum to 1",
        ),
        (
            lambda: theorem_6_1_bound([0.5, 0.5], [1, -1], kurtosis_ratios=[1, 1], radius=0),
            "`mean_variances` must be positive",
        ),
        (
            lambda: theorem_6_1_bound([0.5, 0.5], [1, 1], kurtosis_ratios=[1, 2], radius=0),
            r"`kurtosis_ratios` must be in \(0, 1\]",
        ),
        (
            lambda: theorem_6_1_bound(
                [0.5, 0.5], [1, 1], kurtosis_ratios=[1, 1], radius=float("nan")
            ),
            "`radius` must be finite",
        ),
    ],
)
def test_bad_inputs(call, match) -> None:
    with pytest.raises(ValueError, match=match):
        call()
