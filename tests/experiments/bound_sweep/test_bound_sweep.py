"""The Theorem 6.1 sweep over random instances: rows, limits and the payload."""

from __future__ import annotations

import json

import pytest

from deltahall.experiments.bound_sweep import (
    CheckConfig,
    check_payload,
    check_theorem_6_1,
    row_payload,
)


def test_check_runs_and_reports() -> None:
    seen = []
    res = check_theorem_6_1(3, 2000, rng=0, progress=lambda done, tried: seen.append((done, tried)))
    assert res.n_applicable == 3 and res.n_tried >= 3
    assert [d for d, _ in seen] == [1, 2, 3] and seen[-1][1] == res.n_tried
    assert res.n_held + len(res.counterexamples) <= res.n_applicable
    for row in res.rows:
        assert row.ci_low <= row.p_hat <= row.ci_high
        assert 0 <= row.stated_bound <= 1
        assert row_payload(row)["holds"] == (row.p_hat >= row.stated_bound)
    payload = check_payload(res)
    json.dumps(payload, allow_nan=False)
    assert payload["n_applicable"] == 3 and len(payload["rows"]) == 3


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: check_theorem_6_1(1_000_000, 1000), "`n_instances` must be <= 10000"),
        (
            lambda: check_theorem_6_1(10_000, 1_000_000),
            r"`n_instances` \* `mc_samples` must be <= 1e\+09",
        ),
        (lambda: check_theorem_6_1(10, 10**9), "`mc_samples` must be <= 100000000"),
        (
            lambda: CheckConfig(instances=10_000, mc_samples=1_000_000),
            r"`instances` \* `mc_samples`",
        ),
    ],
)
def test_bad_inputs(call, match) -> None:
    with pytest.raises(ValueError, match=match):
        call()
