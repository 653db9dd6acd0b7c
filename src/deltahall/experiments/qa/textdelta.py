r"""δ-hallucination measured in text (Definition 4.2 with the reference answers as latent states).

For a question with reference answers :math:`a_1, \dots, a_N` (the latent states
:math:`Z_i`; :math:`N = 2` in deltahall's dataset), a sentence embedder
:math:`e` (unit-norm; MiniLM by default) and an answer :math:`y`,

.. math::

    s_i(y) = \cos\bigl(e(y), e(a_i)\bigr), \qquad
    y \text{ δ-hallucinates} \iff \max_i s_i(y) < \tau .

:math:`\{s_i \ge \tau\}` stands in for the region where state :math:`i`'s density
exceeds δ. The threshold is **calibrated on in-state draws**: samples known to be
drawn around one answer :math:`a_c` (the single-answer control model's samples, or,
with no model, perturbed copies of :math:`a_c`), and

.. math::

    \tau = \operatorname{percentile}_p\bigl\{\cos(e(y), e(a_c)) : y \text{ a calibration draw}\bigr\},

so a model that only ever draws from one state is flagged about :math:`p\,\%` of the time
(the *floor*, measured on draws not used for :math:`\tau`).

**Blend-aware variant (our headline).** With MiniLM the plain rule above never flags an
answer that joins both references ("a1 a2" has cosine ~0.85 to each; 0 % flagged on the
packaged dataset), although such a blend belongs to neither state. A draw from state
:math:`i` is close to :math:`a_i` *and* closer to it than to the other answer, so the
blend-aware rule also asks for a margin :math:`m_i = s_i - \max_{j \ne i} s_j \ge \mu`:

.. math::

    y \text{ δ-hallucinates} \iff \neg\exists i:\ s_i(y) \ge \tau' \wedge m_i(y) \ge \mu,

with :math:`\tau'` and :math:`\mu` the :math:`p/2`-th percentiles of the calibration draws'
:math:`s_c` and :math:`m_c` (so the floor stays about :math:`p\,\%`). On the packaged
dataset it keeps the references inside (0.3 % flagged) and flags 90 % of joined and 96 % of
word-interleaved blends (plain rule: 0 % and 5 %); see docs/qa.md.

Split of answers (:func:`split_counts`): "near a_i" = inside state :math:`i` by the
blend-aware rule; "near both" = not inside either but :math:`s_1, s_2 \ge \tau` (blend-like);
"neither" = the rest (far from both). The paper's averaging argument predicts blends or
"neither" from a model trained on both answers; a mode-seeking model would pick one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from deltahall._validation import check_int, check_real
from deltahall.stats import proportion_ci

logger = logging.getLogger(__name__)

SPLITS = ("near_a1", "near_a2", "neither", "near_both")


def _unit(x: Any, name: str) -> npt.NDArray[np.float64]:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"`{name}` must be a 2-d array (n, dim); got shape {a.shape}.")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"`{name}` must be finite.")
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError(f"`{name}` has an all-zero row; its cosine similarity is undefined.")
    return a / norms


def state_similarities(samples: Any, references: Any) -> npt.NDArray[np.float64]:
    r"""Cosine similarities :math:`s_i` of each sample to its own question's references.

    Parameters
    ----------
    samples : array-like, shape (n, dim)
        Embeddings of the answers :math:`y`.
    references : array-like, shape (n, N, dim)
        Embeddings of each sample's reference answers :math:`a_1..a_N` (row ``j``
        holds the references of sample ``j``'s question).

    Returns
    -------
    ndarray, shape (n, N)

    Examples
    --------
    >>> s = state_similarities([[1.0, 0.0]], [[[1.0, 0.0], [0.0, 2.0]]])
    >>> s.tolist()
    [[1.0, 0.0]]
    """
    y = _unit(samples, "samples")
    r = np.asarray(references, dtype=np.float64)
    if r.ndim != 3 or r.shape[0] != y.shape[0] or r.shape[2] != y.shape[1]:
        raise ValueError(
            f"`references` must have shape (n, N, dim) = ({y.shape[0]}, N, {y.shape[1]}); got {r.shape}."
        )
    ru = _unit(r.reshape(-1, r.shape[2]), "references").reshape(r.shape)
    return np.einsum("nd,nkd->nk", y, ru)


def calibrate_tau(in_state_cos: Any, percentile: float = 10.0) -> float:
    r"""The threshold :math:`\tau`: the ``percentile``-th percentile of in-state cosines.

    Parameters
    ----------
    in_state_cos : array-like, shape (m,)
        :math:`\cos(e(y), e(a_c))` of calibration draws around their own answer :math:`a_c`.
    percentile : float
        In (0, 100); the share of in-state draws the measure flags (default 10, as the
        paper's 10 % HDR threshold in Section 7.3).
    """
    v = np.asarray(in_state_cos, dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("`in_state_cos` must hold at least one calibration value; got none.")
    if not np.all(np.isfinite(v)):
        raise ValueError("`in_state_cos` must be finite.")
    check_real(percentile, "percentile", low=0.0, high=100.0, low_open=True, high_open=True)
    return float(np.percentile(v, percentile))


def flagged(sims: Any, tau: float) -> npt.NDArray[np.bool_]:
    r"""δ-hallucination flags: :math:`\max_i s_i < \tau` per row of ``sims`` (n, N)."""
    s = np.asarray(sims, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] < 1:
        raise ValueError(f"`sims` must have shape (n, N) with N >= 1; got {s.shape}.")
    return np.asarray(s.max(axis=1) < tau)


def margins(sims: Any) -> npt.NDArray[np.float64]:
    r"""Per state, :math:`m_i = s_i - \max_{j \ne i} s_j`: how much closer ``y`` is to state ``i`` than to any other."""
    s = np.asarray(sims, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] < 2:
        raise ValueError(f"`sims` must have shape (n, N) with N >= 2; got {s.shape}.")
    out = np.empty_like(s)
    for i in range(s.shape[1]):
        out[:, i] = s[:, i] - np.delete(s, i, axis=1).max(axis=1)
    return out


def flagged_margin(sims: Any, tau: float, mu: float) -> npt.NDArray[np.bool_]:
    r"""Blend-aware flags: no state ``i`` with :math:`s_i \ge \tau` **and** :math:`m_i \ge \mu`.

    Only the closest state can hold an answer (this matters only if ``mu < 0``, i.e. the
    calibration draws are often closer to another answer than to their own).

    A draw from state ``i`` is close to :math:`a_i` *and* closer to it than to the other
    answers; a blend of two answers is moderately close to both, so it passes the plain
    threshold (:func:`flagged`) but fails the margin. ``mu`` is calibrated like ``tau``,
    on the margins :math:`m_c` of in-state draws (:func:`calibrate_tau` applies to both).
    """
    return np.asarray(~_inside(np.asarray(sims, dtype=np.float64), tau, mu).any(axis=1))


def _inside(s: npt.NDArray[np.float64], tau: float, mu: float) -> npt.NDArray[np.bool_]:
    """Inside state i: s_i >= tau, m_i >= mu, and i the closest state (one state at most, even if mu < 0)."""
    closest = np.zeros_like(s, dtype=bool)
    closest[np.arange(s.shape[0]), s.argmax(axis=1)] = True
    return np.asarray((s >= tau) & (margins(s) >= mu) & closest)


def split_counts(sims: Any, cal: Calibration) -> dict[str, int]:
    """Counts of answers near ``a_1`` / near ``a_2`` (blend-aware rule) / near both (blend-like) / neither."""
    s = np.asarray(sims, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] != 2:
        raise ValueError(f"`sims` must have shape (n, 2) for the two-state split; got {s.shape}.")
    inside = _inside(s, cal.tau_margin, cal.mu)
    rest = ~inside.any(axis=1)
    both = rest & (s >= cal.tau).all(axis=1)
    return {"near_a1": int(inside[:, 0].sum()), "near_a2": int(inside[:, 1].sum()),
            "near_both": int(both.sum()), "neither": int((rest & ~both).sum())}


@dataclass(frozen=True)
class Calibration:
    """Thresholds of both rules: ``tau`` (plain, p-th percentile), ``tau_margin`` and ``mu`` (p/2-th)."""

    tau: float
    tau_margin: float
    mu: float
    percentile: float
    n: int

    def flags(self, sims: Any, rule: str = "margin") -> npt.NDArray[np.bool_]:
        """Flags under ``rule`` ``'plain'`` (max_i s_i < tau) or ``'margin'`` (blend-aware)."""
        if rule == "plain":
            return flagged(sims, self.tau)
        if rule == "margin":
            return flagged_margin(sims, self.tau_margin, self.mu)
        raise ValueError(f"`rule` must be 'plain' or 'margin'; got {rule!r}.")


def calibrate(own_sims: Any, own_margins: Any, percentile: float = 10.0) -> Calibration:
    """Both rules' thresholds from in-state draws: their cosine ``s_c`` to and margin ``m_c`` for their own answer."""
    return Calibration(calibrate_tau(own_sims, percentile), calibrate_tau(own_sims, percentile / 2),
                       calibrate_tau(own_margins, percentile / 2), float(percentile),
                       int(np.asarray(own_sims).size))


@dataclass(frozen=True)
class Rate:
    """A flagged rate ``k/n`` with its 95 % Wilson interval."""

    k: int
    n: int
    rate: float
    low: float
    high: float

    @classmethod
    def of(cls, flags: Any) -> Rate:
        f = np.asarray(flags, dtype=bool).ravel()
        k, n = int(f.sum()), int(f.size)
        lo, hi = proportion_ci(k, n) if n else (float("nan"), float("nan"))
        return cls(k, n, k / n if n else float("nan"), lo, hi)


def calibration_split(n_questions: int, *, fraction: float = 0.5, rng: Any) -> npt.NDArray[np.bool_]:
    """A seeded mask choosing the questions whose control draws calibrate τ (the rest measure the floor).

    At least one question goes to each side.
    """
    check_int(n_questions, "n_questions", low=2)
    check_real(fraction, "fraction", low=0.0, high=1.0, low_open=True, high_open=True)
    g = np.random.default_rng(rng)
    k = min(n_questions - 1, max(1, round(fraction * n_questions)))
    mask = np.zeros(n_questions, dtype=bool)
    mask[g.choice(n_questions, size=k, replace=False)] = True
    return mask


# ----- texts whose truth is known (validation of the measure; no language model needed) -----

def joined_blend(a1: str, a2: str) -> str:
    """Both answers one after the other (``"a1 a2"``): an answer that mixes the two states."""
    return f"{a1.rstrip()} {a2.lstrip()}"


def interleaved_blend(a1: str, a2: str) -> str:
    """The words of ``a1`` and ``a2`` alternated (``w1 v1 w2 v2 ...``; the longer one's tail kept)."""
    w1, w2 = a1.split(), a2.split()
    out: list[str] = []
    for i in range(max(len(w1), len(w2))):
        if i < len(w1):
            out.append(w1[i])
        if i < len(w2):
            out.append(w2[i])
    return " ".join(out)


def word_dropout(text: str, *, rate: float, rng: Any) -> str:
    """``text`` with each word dropped with probability ``rate`` (at least one word kept).

    A model-free stand-in for a model's draws around one answer: it stays on the
    answer's topic and wording, as samples of a model fine-tuned on that answer do.
    """
    check_real(rate, "rate", low=0.0, high=1.0, high_open=True)
    g = np.random.default_rng(rng)
    words = text.split()
    if not words:
        return text
    keep = g.random(len(words)) >= rate
    if not keep.any():
        keep[int(g.integers(len(words)))] = True
    return " ".join(w for w, k in zip(words, keep, strict=True) if k)


@dataclass(frozen=True)
class KnownTruthResult:
    """The measure on texts whose status is known: per kind of text, a :class:`Rate` per rule."""

    calibration: Calibration
    rates: dict[str, Rate]
    rates_margin: dict[str, Rate]
    mean_max_sim: dict[str, float]
    splits: dict[str, dict[str, int]]
    n_questions: int


KNOWN_KINDS = ("reference a1", "reference a2", "held-out in-state draw", "joined blend",
               "interleaved blend", "off-topic answer")


def known_truth_check(embed: Any, pairs: Sequence[tuple[str, str]], *, rng: Any,
                      percentile: float = 10.0, dropout: float = 0.25) -> KnownTruthResult:
    r"""Run the text δ-measure on texts whose truth is known.

    Calibration (no model): the in-state draws are word-dropout copies of one answer
    per question (:func:`word_dropout`, ``dropout``); half of the questions calibrate
    the thresholds (their draws' cosine to and margin for their own answer), the other
    half's draws give the floor. Then every question's reference answers, their joined
    and word-interleaved blends and an off-topic answer (a reference answer of another
    question) are scored under both rules.

    Parameters
    ----------
    embed : callable
        ``embed(list[str]) -> ndarray (n, dim)``; e.g. ``load_embedder('@minilm').embed``.
    pairs : sequence of (a1, a2)
        The two reference answers of each question (at least 4 questions).
    rng : int or numpy Generator

    Returns
    -------
    KnownTruthResult
        Rates per kind of text (keys :data:`KNOWN_KINDS`), with Wilson intervals.
    """
    n = len(pairs)
    check_int(n, "len(pairs)", low=4)
    g = np.random.default_rng(rng)
    a1 = [p[0] for p in pairs]
    a2 = [p[1] for p in pairs]
    own = g.integers(0, 2, size=n)  # which answer the in-state draws come from
    draws = [word_dropout(pairs[j][int(own[j])], rate=dropout, rng=g) for j in range(n)]
    shift = g.integers(1, n, size=n)
    off = [pairs[(j + int(shift[j])) % n][int(g.integers(0, 2))] for j in range(n)]
    texts = {
        "reference a1": a1, "reference a2": a2, "held-out in-state draw": draws,
        "joined blend": [joined_blend(x, y) for x, y in pairs],
        "interleaved blend": [interleaved_blend(x, y) for x, y in pairs],
        "off-topic answer": off,
    }
    e = np.asarray(embed([t for k in KNOWN_KINDS for t in texts[k]]), dtype=np.float64)
    emb = {k: e[i * n:(i + 1) * n] for i, k in enumerate(KNOWN_KINDS)}
    refs = np.stack([emb["reference a1"], emb["reference a2"]], axis=1)
    sims = {k: state_similarities(emb[k], refs) for k in KNOWN_KINDS}
    calib = calibration_split(n, fraction=0.5, rng=g)
    d = sims["held-out in-state draw"]
    rows_ = np.arange(n)
    cal = calibrate(d[rows_, own][calib], margins(d)[rows_, own][calib], percentile)
    rates, rates_m, means, splits = {}, {}, {}, {}
    for k in KNOWN_KINDS:
        keep = ~calib if k == "held-out in-state draw" else np.ones(n, dtype=bool)
        rates[k] = Rate.of(cal.flags(sims[k][keep], "plain"))
        rates_m[k] = Rate.of(cal.flags(sims[k][keep], "margin"))
        means[k] = float(sims[k][keep].max(axis=1).mean())
        splits[k] = split_counts(sims[k][keep], cal)
    return KnownTruthResult(cal, rates, rates_m, means, splits, n)
