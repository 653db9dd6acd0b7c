"""The typicality: conformal p-values with their ties broken, for ranking only."""

from __future__ import annotations

import numpy as np
import pytest

from deltahall.detectors.calibrators import Calibrator
from deltahall.measure.selection import select_candidates


def _fitted(rule: str, rng: np.random.Generator) -> tuple[Calibrator, np.ndarray]:
    cal = [rng.normal(size=40), rng.normal(loc=3.0, scale=2.0, size=25)]
    margins = [rng.normal(size=40), rng.normal(size=25)] if rule == "margin" else None
    c = Calibrator(rule=rule, alpha=0.1).fit(cal, 2, margins)
    return c, rng.normal(scale=4.0, size=(500, 2))


@pytest.mark.parametrize("rule", ["conformal", "margin"])
def test_typicality_stays_within_one_step_below_the_p_value(rule: str) -> None:
    c, S = _fitted(rule, np.random.default_rng(0))
    p, t = c.p_values(S), c.typicality(S)
    assert np.all(t <= p + 1e-12)
    step = 1.0 / (c.n_calibration_.min() + 1.0) * (2.0 if rule == "margin" else 1.0)
    assert np.all(p - t <= step + 1e-12)
    assert np.all(t > 0)


def test_typicality_is_strictly_increasing_where_p_values_tie() -> None:
    c = Calibrator(alpha=0.1).fit([np.arange(10.0)], 1)
    s = np.linspace(-30.0, 9.0, 200)[:, None]
    p, t = c.p_values(s), c.typicality(s)
    assert np.unique(p).size < 20  # p is a step function
    assert np.all(np.diff(t) > 0)  # the typicality orders every sample
    # far outside the calibration range: one p-value, distinct typicalities
    far = s[:, 0] < -1
    assert np.unique(p[far]).size == 1 and np.unique(t[far]).size == far.sum()


def test_typicality_respects_allowed_states_and_a_pooled_calibration() -> None:
    c = Calibrator(alpha=0.2).fit(np.arange(20.0), 3)
    S = np.array([[5.0, 100.0, -1.0], [-50.0, 100.0, -60.0]])
    allowed = np.array([[True, False, True], [True, False, True]])
    t = c.typicality(S, allowed)
    assert t[0] <= c.p_values(S, allowed)[0] and t[1] < t[0]
    assert t[1] < 1.0 / 21.0  # the forbidden state's 100 does not count


def test_top_k_breaks_p_value_ties_by_typicality() -> None:
    p = np.array([0.05, 0.05, 0.05, 0.5])
    typ = np.array([0.01, 0.04, 0.02, 0.45])
    sel = select_candidates(
        p,
        ["q"] * 4,
        [0, 0, 0, 0],
        [True, True, True, False],
        states=["a"],
        reference_sizes=[10],
        mode="top-k",
        k=2,
        typicality=typ,
    )
    assert sel.kept.tolist() == [False, True, False, True]
    with pytest.raises(ValueError, match="typicality"):
        select_candidates(
            p,
            ["q"] * 4,
            [0] * 4,
            [False] * 4,
            states=["a"],
            reference_sizes=[10],
            mode="top-k",
            k=1,
            typicality=typ[:2],
        )
