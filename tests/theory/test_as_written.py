"""The paper's constructions taken literally fail where docs/theory.md says they do."""

from __future__ import annotations

import math

import pytest

from deltahall.theory import as_written as AW


def test_paper_slips_reproduced() -> None:
    a = AW.theorem_5_1_as_written(0.1, 2, weights=[0.01, 0.99])
    assert not a.hallucinates and a.densities[1] == pytest.approx(3.8968, rel=1e-4)
    b = AW.theorem_5_1_as_written(0.01, 2, dim=2, cov_scale=2.0)
    assert not b.hallucinates and b.densities[0] == pytest.approx(0.032538, rel=1e-4)
    assert AW.theorem_5_1_as_written(0.1, 2).hallucinates  # equal weights happen to work
    c = AW.theorem_5_2_as_written(0.01, 4, weights=[0.25, 0.4, 0.25, 0.1], eps=0.5)
    assert not c.hallucinates and c.densities[1] == pytest.approx(
        1 / math.sqrt(2 * math.pi), rel=1e-9
    )
    assert c.log_density_last_state_at_zero > math.log(0.01) and c.optimum_norm > 1
    e = AW.theorem_c_1_as_written(0.01, 2)
    assert not e.hallucinates
    assert e.paper_formula_density == pytest.approx(0.017122, rel=1e-4)
    assert e.variance_bound == pytest.approx(1 / (4 * math.log(100)), rel=1e-12)
    assert e.densities[0] == pytest.approx(0.029317, rel=1e-4)
