"""The text δ-measure goes through the instrument: per-question states, in-state calibration samples."""

from __future__ import annotations

import numpy as np
import pytest

from deltahall.experiments.qa import delta_measure as dm


def _draws(g: np.random.Generator, n_q: int, k: int) -> tuple[np.ndarray, list[str], np.ndarray]:
    """In-state samples: close to their own answer, farther from the other."""
    own_answer = g.integers(0, 2, size=n_q * k)
    own = g.normal(0.8, 0.05, size=n_q * k)
    other = own - g.normal(0.4, 0.1, size=n_q * k)
    sims = np.where(own_answer[:, None] == 0, np.stack([own, other], 1), np.stack([other, own], 1))
    return sims, [f"q{i // k}" for i in range(n_q * k)], own_answer


def test_pair_scores_are_cosines_of_each_row_with_its_own_references() -> None:
    s = dm.pair_scores(
        [[1.0, 0.0], [0.0, 3.0]], [[2.0, 0.0], [1.0, 1.0]], [[0.0, 1.0], [0.0, -1.0]]
    )
    np.testing.assert_allclose(s, [[1.0, 0.0], [1 / np.sqrt(2), -1.0]])
    with pytest.raises(ValueError, match="all-zero row"):
        dm.pair_scores([[0.0, 0.0]], [[1.0, 0.0]], [[0.0, 1.0]])


def test_floor_is_about_alpha_and_blends_are_flagged_only_by_the_margin_rule() -> None:
    g = np.random.default_rng(0)
    cal = dm.Scored.of(*_draws(g, 200, 5))
    floor = dm.Scored.of(*_draws(g, 200, 5))
    blends = dm.Scored.of(
        np.full((50, 2), 0.8) + 0.01 * g.normal(size=(50, 2)), [f"q{i}" for i in range(50)]
    )
    td = dm.measure_text(blends, calibration=cal, floor=floor, alpha=0.1)
    assert (
        td.plain.floor.rate == pytest.approx(0.10, abs=0.03)
        and 0.04 <= td.margin.floor.rate <= 0.12
    )
    assert (
        td.margin.rate.rate == 1.0 and td.plain.rate.rate < 0.2
    )  # close to both answers, closer to neither
    assert (
        td.splits["near_both"] == 50 - int(td.plain.gen_flagged.sum())
        and sum(td.splits.values()) == 50
    )
    assert td.margin.excess_p_value < 1e-6 and td.margin.rate.ci[0] < 1.0
    # the thresholds are the rules': inside the plain rule iff max cosine >= tau
    np.testing.assert_array_equal(~td.plain.gen_flagged, blends.sims.max(axis=1) >= td.tau)
    assert set(td.flags_by_question()) == {f"q{i}" for i in range(50)}


def test_same_flags_as_measure_references_with_in_state_calibration_samples() -> None:
    """With the references duplicated (so that measure_references can compute its leave-one-out floor), the
    instrument's per-prompt path flags every generated answer exactly as measure_text does."""
    from deltahall.measure import DetectorSettings
    from deltahall.measure.calibration import measure_references

    g = np.random.default_rng(1)
    n_q, d = 12, 24
    A = g.normal(size=(n_q, 2, d))
    qs = [f"q{i}" for i in range(n_q)]

    def around(q: np.ndarray, j: np.ndarray, noise: float) -> np.ndarray:
        return A[q, j] + noise * g.normal(size=(q.size, d))

    cq, cj = np.repeat(np.arange(n_q), 4), g.integers(0, 2, n_q * 4)
    C = around(cq, cj, 0.8)
    gq, gj = np.repeat(np.arange(n_q), 5), g.integers(0, 2, n_q * 5)
    G = np.vstack([around(gq, gj, 0.8), A[:, 0] + A[:, 1]])  # in-state answers, then joined blends
    g_q = np.concatenate([gq, np.arange(n_q)])
    R = np.repeat(A.reshape(-1, d), 2, axis=0)  # every reference twice
    ref_prompts = [qs[i] for i in range(n_q) for _ in range(4)]
    ref_states = [a for _ in range(n_q) for a in ("a1", "a1", "a2", "a2")]
    for rule in ("margin", "conformal"):
        mr = measure_references(
            R,
            ref_states,
            ref_prompts,
            G,
            [qs[i] for i in g_q],
            settings=DetectorSettings(alpha=0.2, calibration=rule),
            calibration_E=C,
            calibration_states=[("a1", "a2")[j] for j in cj],
            calibration_prompts=[qs[i] for i in cq],
        )
        fq = np.arange(n_q)
        td = dm.measure_text(
            dm.Scored.of(dm.pair_scores(G, A[g_q, 0], A[g_q, 1]), [qs[i] for i in g_q]),
            calibration=dm.Scored.of(
                dm.pair_scores(C, A[cq, 0], A[cq, 1]), [qs[i] for i in cq], cj
            ),
            floor=dm.Scored.of(
                dm.pair_scores(A[fq, 0], A[fq, 0], A[fq, 1]), [qs[i] for i in fq], np.zeros(n_q)
            ),
            alpha=0.2,
        )
        m = td.margin if rule == "margin" else td.plain
        np.testing.assert_array_equal(m.gen_flagged, mr.gen_flagged)
        np.testing.assert_allclose(m.gen_p, mr.gen_p)
        assert m.rate == mr.rate


def test_errors_name_what_is_wrong() -> None:
    g = np.random.default_rng(2)
    cal = dm.Scored.of(
        *_draws(g, 2, 4)
    )  # 8 calibration samples: too few for the margin rule at alpha 0.1
    with pytest.raises(ValueError, match="calibration pool has 8 scores"):
        dm.measure_text(
            dm.Scored.of(cal.sims, cal.questions), calibration=cal, floor=cal, alpha=0.1
        )
    with pytest.raises(ValueError, match="give `own`"):
        dm.measure_text(
            cal, calibration=dm.Scored.of(cal.sims, cal.questions), floor=cal, alpha=0.1
        )
    with pytest.raises(ValueError, match="one entry per sample"):
        dm.Scored.of(cal.sims, ["q0"])


def test_calibration_split_is_seeded_and_two_sided() -> None:
    m = dm.calibration_split(10, rng=3)
    assert m.sum() == 5 and (m == dm.calibration_split(10, rng=3)).all()
    assert dm.calibration_split(2, fraction=0.9, rng=0).sum() == 1
