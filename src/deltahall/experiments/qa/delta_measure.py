r"""The text δ-measure through the one instrument: a question's reference answers are its states.

For a question with reference answers :math:`a_1, \dots, a_N` (the latent states
:math:`Z_i` of Definition 4.2; :math:`N = 2` in deltahall's dataset) and a sentence embedder
:math:`e` (MiniLM by default), the instrument's per-prompt scorer
(:class:`~deltahall.detectors.similarity.ReferenceSimilarity`, the scorer of
:func:`deltahall.measure.calibration.measure_references`) gives an answer :math:`y` to that
question the score :math:`s_i(y) = \max_j \cos(e(y), e(r_{i,j}))` over state :math:`i`'s
references, which with one reference per state is :math:`\cos(e(y), e(a_i))`, and
:math:`-\infty` for every other question's states. The saved cosines ``s1``, ``s2`` of a run
*are* these scores, so old per-item files stay measurable.

**Calibration: in-state samples, not leave-one-out references.** Each state has a single
reference, so the leave-one-out calibration of :func:`measure_references` has nothing to
leave out. The calibration samples are draws known to come from one state: the single-answer
control's answers on the calibration questions (or, with no model, word-dropout copies of one
answer), scored under their own state, pooled over questions (each state has only
``k_samples`` of them). The calibrator is the instrument's
(:class:`~deltahall.detectors.calibrators.Calibrator`), two rules at level :math:`\alpha`:

- ``"margin"`` (blend-aware, the headline): inside state :math:`i` only if both the score and
  the margin :math:`s_i - \max_{j \ne i} s_j` pass their conformal tests at :math:`\alpha/2`;
  an answer that joins both references is close to both but closer to neither, so it is
  flagged;
- ``"conformal"`` (the plain max-cosine rule): flagged when the largest per-state conformal
  p-value is at most :math:`\alpha`.

**The floor** is the flagged share of *held-out* in-state samples (the control's answers on
the other questions) under the same rule, and the excess test is the instrument's, against the floor of the
sample's own states (:func:`deltahall.measure.calibration.measure_scores`).

The split (:func:`split_counts`): "near a1" / "near a2" = inside that state (blend-aware
rule); "near both" = flagged by the blend-aware rule but inside both states by the plain rule
(blend-like); "neither" = the rest (far from both).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from deltahall._validation import check_int, check_real

logger = logging.getLogger(__name__)

#: The headline (blend-aware) rule first, then the plain max-cosine rule.
RULES = ("margin", "conformal")
SPLITS = ("near_a1", "near_a2", "neither", "near_both")
ANSWERS = ("a1", "a2")


def pair_scores(samples: Any, a1: Any, a2: Any) -> npt.NDArray[np.float64]:
    """Cosines ``(n, 2)`` of each sample's embedding to its own question's two reference answers.

    Examples
    --------
    >>> pair_scores([[1.0, 0.0]], [[2.0, 0.0]], [[0.0, 1.0]]).tolist()
    [[1.0, 0.0]]
    """

    def unit(x: Any, name: str) -> npt.NDArray[np.float64]:
        a = np.asarray(x, dtype=np.float64)
        if a.ndim != 2 or not np.isfinite(a).all():
            raise ValueError(f"`{name}` must be a finite 2-d array (n, dim); got shape {a.shape}.")
        n = np.linalg.norm(a, axis=1, keepdims=True)
        if (n == 0).any():
            raise ValueError(f"`{name}` has an all-zero row; its cosine similarity is undefined.")
        return a / n

    y, r1, r2 = unit(samples, "samples"), unit(a1, "a1"), unit(a2, "a2")
    if not (y.shape == r1.shape == r2.shape):
        raise ValueError(
            f"`samples`, `a1` and `a2` must have one row each per sample; got {y.shape}, {r1.shape}, {r2.shape}."
        )
    return np.stack([np.sum(y * r1, axis=1), np.sum(y * r2, axis=1)], axis=1)


def calibration_split(
    n_questions: int, *, fraction: float = 0.5, rng: Any
) -> npt.NDArray[np.bool_]:
    """A seeded mask choosing the questions whose in-state samples calibrate (the rest give the floor).

    At least one question goes to each side.
    """
    check_int(n_questions, "n_questions", low=2)
    check_real(fraction, "fraction", low=0.0, high=1.0, low_open=True, high_open=True)
    g = np.random.default_rng(rng)
    k = min(n_questions - 1, max(1, round(fraction * n_questions)))
    mask = np.zeros(n_questions, dtype=bool)
    mask[g.choice(n_questions, size=k, replace=False)] = True
    return mask


@dataclass(frozen=True)
class Scored:
    """Answers as the instrument sees them: cosines to their question's (a1, a2), the question,
    and for in-state samples the index (0 or 1) of the answer they were drawn around."""

    sims: npt.NDArray[np.float64]
    questions: list[str]
    own: npt.NDArray[np.int64] | None = None

    @classmethod
    def of(cls, sims: Any, questions: Any, own: Any = None) -> Scored:
        s = np.asarray(sims, dtype=np.float64).reshape(-1, 2)
        q = [str(x) for x in questions]
        if len(q) != s.shape[0]:
            raise ValueError(
                f"`questions` must have one entry per sample; got {len(q)} for {s.shape[0]}."
            )
        o = None if own is None else np.asarray(own, dtype=np.int64).ravel()
        if o is not None and (o.size != s.shape[0] or not np.isin(o, (0, 1)).all()):
            raise ValueError(
                "`own` must give 0 or 1 (the answer a sample was drawn around) for every sample."
            )
        return cls(s, q, o)


@dataclass(frozen=True)
class TextDelta:
    """Both rules' :class:`~deltahall.measure.Measurement` of one set of answers, plus the split.

    ``tau``: the plain rule's cosine threshold; ``tau_margin`` and ``mu``: the blend-aware rule's
    cosine and margin thresholds (each at α/2); inside iff a score is at least its threshold.
    """

    margin: Any
    plain: Any
    alpha: float
    tau: float
    tau_margin: float
    mu: float
    n_calibration: int
    splits: dict[str, int]
    mean_max_sim: float

    def flags_by_question(self) -> dict[str, list[bool]]:
        """Blend-aware flags grouped by question."""
        out: dict[str, list[bool]] = {}
        for q, f in zip(self.margin.prompts, self.margin.gen_flagged.tolist(), strict=True):
            out.setdefault(q, []).append(bool(f))
        return out


def _layout(questions: list[str]) -> tuple[dict[str, int], int]:
    index = {q: i for i, q in enumerate(dict.fromkeys(questions))}
    return index, 2 * len(index)


def _full(
    s: Scored, index: dict[str, int], n_states: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """The ``(n, 2Q)`` score matrix the per-prompt scorer gives (``-inf`` off the question) and its mask."""
    cols = np.array([2 * index[q] for q in s.questions], dtype=np.int64)
    rows = np.arange(s.sims.shape[0])
    S = np.full((rows.size, n_states), -np.inf)
    A = np.zeros((rows.size, n_states), dtype=bool)
    for j in (0, 1):
        S[rows, cols + j] = s.sims[:, j]
        A[rows, cols + j] = True
    return S, A


def measure_text(gen: Scored, *, calibration: Scored, floor: Scored, alpha: float) -> TextDelta:
    """Measure answers ``gen`` against their questions' two reference answers, both rules.

    Parameters
    ----------
    gen : Scored
        The answers to measure.
    calibration : Scored
        In-state samples (``own`` set) whose own-state scores and margins calibrate.
    floor : Scored
        Held-out in-state samples (``own`` set): their flagged share is the floor.
    alpha : float
        The level (e.g. ``delta_percentile / 100``).

    Raises
    ------
    ValueError
        If ``calibration`` or ``floor`` lack ``own``, or the calibration pool is too small for
        ``alpha`` under the margin rule (:math:`m + 1 < 2/\\alpha`).
    """
    from deltahall.detectors.calibrators import Calibrator, margins
    from deltahall.measure import DetectorSettings
    from deltahall.measure.calibration import measure_scores, plan_scoped

    if calibration.own is None or floor.own is None:
        raise ValueError("`calibration` and `floor` must be in-state samples (give `own`).")
    index, n_states = _layout([*calibration.questions, *floor.questions, *gen.questions])
    ref_prompts = [q for q in index for _ in ANSWERS]
    ref_states = [a for _ in index for a in ANSWERS]
    cal_states = [ANSWERS[int(o)] for o in calibration.own]
    # Validation (pool size for alpha, every prompt known) by the instrument's own planner.
    plan_scoped(
        ref_states,
        ref_prompts,
        gen.questions,
        calibration_states=cal_states,
        calibration_prompts=calibration.questions,
        alpha=alpha,
        calibration="margin",
    )
    rows = np.arange(calibration.sims.shape[0])
    pool = calibration.sims[rows, calibration.own]
    mpool = margins(calibration.sims)[rows, calibration.own]
    S_gen, A_gen = _full(gen, index, n_states)
    S_test, A_test = _full(floor, index, n_states)
    test_labels = np.array([2 * index[q] for q in floor.questions], dtype=np.int64) + floor.own
    states = [f"{q}/{a}" for q, a in zip(ref_prompts, ref_states, strict=True)]
    sizes = {k: [1] * n_states for k in ("total", "fit", "calibration", "test")}
    out: dict[str, Any] = {}
    for rule in RULES:
        s = DetectorSettings(alpha=alpha, calibration=rule)
        cal = Calibrator(rule, alpha).fit(
            np.asarray(pool), n_states, np.asarray(mpool) if rule == "margin" else None
        )
        out[rule] = measure_scores(
            settings=s,
            scorer=None,
            calibrator=cal,
            states=states,
            state_sizes=sizes,
            gen_scores=S_gen,
            gen_allowed=A_gen,
            prompts=gen.questions,
            test_scores=S_test,
            test_allowed=A_test,
            test_labels=test_labels,
            scope="per-prompt",
            floor_source="held-out in-state samples (scored under their question's states)",
        )
    m_margin, m_plain = out["margin"], out["conformal"]
    mu = float(Calibrator("conformal", alpha / 2).fit(np.asarray(mpool), 1).thresholds_[0])
    return TextDelta(
        margin=m_margin,
        plain=m_plain,
        alpha=float(alpha),
        tau=float(m_plain.calibrator.thresholds_[0]),
        tau_margin=float(m_margin.calibrator.thresholds_[0]),
        mu=mu,
        n_calibration=int(pool.size),
        splits=split_counts(gen, m_margin, m_plain),
        mean_max_sim=float(gen.sims.max(axis=1).mean()),
    )


def split_counts(gen: Scored, margin: Any, plain: Any) -> dict[str, int]:
    """Near a1 / near a2 (inside, blend-aware rule) / near both (flagged, but inside both by the plain
    rule) / neither."""
    inside = ~np.asarray(margin.gen_flagged)
    answer = np.asarray(margin.gen_nearest) % 2  # state 2q + j is answer j of question q
    P = plain.calibrator.state_p_values(gen.sims)  # pooled: the same calibration for every state
    both = ~inside & (P > plain.settings.alpha).all(axis=1)
    return {
        "near_a1": int((inside & (answer == 0)).sum()),
        "near_a2": int((inside & (answer == 1)).sum()),
        "neither": int((~inside & ~both).sum()),
        "near_both": int(both.sum()),
    }
