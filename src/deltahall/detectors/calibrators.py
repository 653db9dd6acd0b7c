r"""Calibrators: per-state scores of calibration samples in, p-values and flags out.

A *scorer* gives every sample an ``(n, N_states)`` matrix of per-state scores (larger =
more like the state: a log-density, a cosine similarity). ``allowed`` (same shape, boolean)
says which states a sample may belong to (all of them for global states; only its prompt's
states for per-prompt states). A calibrator turns scores into a p-value per sample (small =
outside every allowed state) and a flag at level :math:`\alpha`:

``"conformal"`` (default)
    With :math:`s_{i,1..m_i}` the calibration scores of state :math:`i` (in-state samples
    scored under state :math:`i`),
    :math:`p_i(z) = (1 + \#\{j : s_{i,j} \le s_i(z)\}) / (m_i + 1)` and
    :math:`p(z) = \max_{i \text{ allowed}} p_i(z)`; flagged iff :math:`p(z) \le \alpha`. For a
    fresh sample of state :math:`j` exchangeable with state :math:`j`'s calibration samples,
    :math:`\Pr[p(z) \le \alpha] \le \lfloor \alpha(m_j+1) \rfloor / (m_j + 1) \le \alpha`.
``"percentile"`` (the paper's rule)
    :math:`\tau_i` = the ``100 α``-th percentile of :math:`s_{i,\cdot}`; flagged iff
    :math:`s_i(z) < \tau_i` for every allowed :math:`i`. No finite-sample statement.
``"margin"`` (blend-aware)
    Also asks a sample to be *closer* to its state than to the others. With the margin
    :math:`\mu_i(z) = s_i(z) - \max_{j \ne i, \text{allowed}} s_j(z)` and the conformal
    p-values :math:`p^s_i`, :math:`p^\mu_i` of the score and of the margin against the
    calibration samples' own scores and margins, :math:`p_i = \min(1, 2\min(p^s_i, p^\mu_i))`:
    a sample is inside state :math:`i` only if it passes *both* tests at :math:`\alpha/2`. A
    fresh in-state sample fails one of them with probability at most
    :math:`\alpha/2 + \alpha/2 = \alpha` (Bonferroni), so the guarantee carries over.

Calibration scores may be given per state (a list of arrays) or pooled (one array used for
every state: the per-prompt text scorer, whose states hold a handful of references each).

**Ranking: the typicality.** Conformal p-values are a step function of the score: every sample
below a state's lowest calibration score gets the same :math:`1/(m+1)`, so samples far outside
every state tie with real samples just outside, and a ranking by :math:`p` (an AUROC, a top-k
selection) cannot tell them apart. :meth:`Calibrator.typicality` breaks the ties without moving
any decision: per state, the empirical CDF of the calibration scores interpolated linearly between
neighbours, and below the lowest one an exponential tail in units of the calibration scores'
standard deviation, so :math:`\tilde p_i \in [p_i - 1/(m_i+1), p_i]`, strictly increasing in the
score; the typicality is :math:`\max_i \tilde p_i` over allowed states. Flags always come from
the exact :math:`p`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["CALIBRATIONS", "Calibrator", "conformal_p_values", "margins"]

CALIBRATIONS = ("conformal", "percentile", "margin")

FloatArray = npt.NDArray[np.float64]


def conformal_p_values(sorted_cal: FloatArray, scores: FloatArray) -> FloatArray:
    """:math:`(1 + \\#\\{cal \\le s\\}) / (m + 1)` for every entry of ``scores`` against one sorted array.

    Examples
    --------
    >>> conformal_p_values(np.array([0.0, 1.0, 2.0]), np.array([-1.0, 1.0, 5.0])).tolist()
    [0.25, 0.75, 1.0]
    """
    counts = np.searchsorted(sorted_cal, _tied_up(scores), side="right")
    return np.asarray((1.0 + counts) / (sorted_cal.size + 1.0))


#: Scores this close (relative) to a calibration score count as ties with it: the same row's
#: score differs in its last digits between batches of different sizes (BLAS blocking), and a
#: calibration row scored again must get the same p-value in any batch.
TIE_RTOL = 1e-9


def _tied_up(scores: npt.ArrayLike) -> FloatArray:
    s = np.asarray(scores, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.asarray(np.where(np.isfinite(s), s + TIE_RTOL * np.maximum(np.abs(s), 1.0), s))


def _smooth_p(sorted_cal: FloatArray, s: FloatArray) -> FloatArray:
    """Interpolated calibration CDF with an exponential lower tail (see :meth:`Calibrator.typicality`)."""
    m = sorted_cal.size
    out = np.zeros(s.shape)
    if m == 0:
        return out
    finite = np.isfinite(s)
    j = np.searchsorted(sorted_cal, _tied_up(s), side="right")  # = #{cal <= s}, ties as above
    lo = sorted_cal[np.clip(j - 1, 0, m - 1)]
    hi = sorted_cal[np.clip(j, 0, m - 1)]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(hi > lo, (s - lo) / (hi - lo), 0.0)
    frac = np.clip(np.nan_to_num(frac, nan=0.0), 0.0, 1.0)
    inner = (j + np.where(j < m, frac, 0.0)) / (m + 1.0)
    spread = float(np.std(sorted_cal)) if m > 1 else 0.0
    if not math.isfinite(spread) or spread <= 0:
        spread = 1.0
    with np.errstate(over="ignore", invalid="ignore"):
        tail = np.exp(-(sorted_cal[0] - s) / spread) / (m + 1.0)
    out = np.where(j == 0, tail, inner)
    out = np.where(finite, out, np.where(s == np.inf, 1.0, 0.0))
    return np.asarray(np.minimum(out, 1.0))


def margins(scores: FloatArray, allowed: npt.NDArray[np.bool_] | None = None) -> FloatArray:
    """:math:`s_i - \\max_{j \\ne i} s_j` over allowed states (``+inf`` where ``i`` is the only one).

    Examples
    --------
    >>> margins(np.array([[0.9, 0.5, 0.1]])).tolist()
    [[0.4, -0.4, -0.8]]
    """
    s = (
        np.where(allowed, scores, -np.inf)
        if allowed is not None
        else np.asarray(scores, dtype=np.float64)
    )
    n, k = s.shape
    if k == 1:
        return np.full((n, 1), np.inf)
    order = np.argsort(-s, axis=1)
    top = np.take_along_axis(s, order[:, :1], axis=1)
    second = np.take_along_axis(s, order[:, 1:2], axis=1)
    other = np.where(np.arange(k)[None, :] == order[:, :1], second, top)
    with np.errstate(invalid="ignore"):
        out = s - other
    out = np.where(np.isneginf(other), np.inf, out)
    return np.asarray(out)


def _per_state(cal: list[FloatArray] | FloatArray, n_states: int) -> list[FloatArray]:
    if isinstance(cal, np.ndarray):
        srt = np.sort(np.asarray(cal, dtype=np.float64).ravel())
        return [srt] * n_states
    return [np.sort(np.asarray(c, dtype=np.float64).ravel()) for c in cal]


@dataclass
class Calibrator:
    """Scores to p-values and flags under one rule (see the module docstring).

    Parameters
    ----------
    rule : {"conformal", "percentile", "margin"}
    alpha : float in (0, 1)
    """

    rule: str = "conformal"
    alpha: float = 0.1

    def fit(
        self,
        cal_scores: list[FloatArray] | FloatArray,
        n_states: int,
        cal_margins: list[FloatArray] | FloatArray | None = None,
    ) -> Calibrator:
        """Store the calibration scores (and margins, for ``"margin"``) of each state, sorted."""
        if self.rule not in CALIBRATIONS:
            raise ValueError(f"`calibration` must be one of {CALIBRATIONS}; got {self.rule!r}.")
        self.cal_ = _per_state(cal_scores, n_states)
        self.n_calibration_ = np.array([c.size for c in self.cal_], dtype=np.int64)
        if self.rule == "margin":
            if cal_margins is None:
                raise ValueError("the margin rule needs the calibration samples' margins.")
            self.cal_margins_ = _per_state(cal_margins, n_states)
        self.pooled_ = isinstance(cal_scores, np.ndarray)
        self.thresholds_ = self.thresholds(self.alpha)
        return self

    def thresholds(self, alpha: float) -> FloatArray:
        """Score thresholds equivalent to the rule at ``alpha`` (inside iff score >= threshold)."""
        out = np.empty(len(self.cal_))
        for i, cal in enumerate(self.cal_):
            if cal.size == 0:
                out[i] = np.inf
            elif self.rule == "percentile":
                out[i] = np.percentile(cal, 100.0 * alpha)
            else:
                a = alpha / 2.0 if self.rule == "margin" else alpha
                k = int(math.floor(a * (cal.size + 1) + 1e-12))
                out[i] = -np.inf if k <= 0 else (np.inf if k > cal.size else cal[k - 1])
        return out

    def state_p_values(
        self, scores: FloatArray, allowed: npt.NDArray[np.bool_] | None = None
    ) -> FloatArray:
        """Per-state p-values (n, N); 0 for states a sample may not belong to."""
        return self._per_state(scores, allowed, self._p)

    def state_typicality(
        self, scores: FloatArray, allowed: npt.NDArray[np.bool_] | None = None
    ) -> FloatArray:
        """Per-state tie-broken p-values (n, N); 0 for states a sample may not belong to."""
        return self._per_state(scores, allowed, self._t)

    def _per_state(
        self,
        scores: FloatArray,
        allowed: npt.NDArray[np.bool_] | None,
        one: Callable[[int, FloatArray, FloatArray | None], FloatArray],
    ) -> FloatArray:
        S = np.asarray(scores, dtype=np.float64)
        n, N = S.shape
        P = np.zeros((n, N))
        M = margins(S, allowed) if self.rule == "margin" else None
        if self.pooled_ and allowed is not None:
            # One calibration array: score only the allowed entries (sparse per-prompt states).
            rows, cols = np.nonzero(allowed)
            P[rows, cols] = one(0, S[rows, cols], None if M is None else M[rows, cols])
            return P
        for i in range(N):
            P[:, i] = one(i, S[:, i], None if M is None else M[:, i])
        if allowed is not None:
            P[~allowed] = 0.0
        return P

    def _p(self, i: int, s: FloatArray, m: FloatArray | None) -> FloatArray:
        cal = self.cal_[i]
        if cal.size == 0:
            return np.zeros(s.shape)
        p = conformal_p_values(cal, s)
        if self.rule == "percentile":
            # The paper's rule has no p-value; report the conformal one beside its flags.
            return p
        if self.rule == "margin" and m is not None:
            pm = conformal_p_values(self.cal_margins_[i], m)
            p = np.minimum(1.0, 2.0 * np.minimum(p, pm))
        return p

    def _t(self, i: int, s: FloatArray, m: FloatArray | None) -> FloatArray:
        t = _smooth_p(self.cal_[i], s)
        if self.rule == "margin" and m is not None:
            t = np.minimum(1.0, 2.0 * np.minimum(t, _smooth_p(self.cal_margins_[i], m)))
        return t

    def typicality(
        self, scores: FloatArray, allowed: npt.NDArray[np.bool_] | None = None
    ) -> FloatArray:
        """Tie-broken p-values for ranking, shape (n,) (see the module docstring); larger = more typical.

        Examples
        --------
        >>> c = Calibrator().fit([np.array([0.0, 1.0, 2.0])], 1)
        >>> S = np.array([[-5.0], [-1.0], [0.5], [1.0], [9.0]])
        >>> t = c.typicality(S)
        >>> bool(np.all(np.diff(t) > 0)), bool(np.all(t <= c.p_values(S)))
        (True, True)
        """
        T = self.state_typicality(scores, allowed)
        return np.asarray(T.max(axis=1) if T.shape[1] else np.zeros(T.shape[0]))

    def p_values(
        self, scores: FloatArray, allowed: npt.NDArray[np.bool_] | None = None
    ) -> FloatArray:
        """:math:`p(z) = \\max_i p_i(z)` over allowed states, shape (n,)."""
        return np.asarray(self.state_p_values(scores, allowed).max(axis=1))

    def flags(
        self,
        scores: FloatArray,
        p: FloatArray | None = None,
        *,
        allowed: npt.NDArray[np.bool_] | None = None,
        alpha: float | None = None,
    ) -> npt.NDArray[np.bool_]:
        """Flagged (outside every allowed state) at ``alpha`` (default: the fitted one)."""
        a = float(self.alpha if alpha is None else alpha)
        if self.rule == "percentile":
            thr = self.thresholds(a) if alpha is not None else self.thresholds_
            inside = (
                _tied_up(scores) >= thr[None, :] if not self.pooled_ else _tied_up(scores) >= thr[0]
            )
            if allowed is not None:
                inside &= allowed
            return np.asarray(~inside.any(axis=1))
        if p is None:
            p = self.p_values(scores, allowed)
        return np.asarray(p <= a)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "alpha": self.alpha,
            "pooled": bool(self.pooled_),
            "n_calibration": self.n_calibration_.tolist()
            if not self.pooled_
            else int(self.n_calibration_[0]),
        }
