r"""Per-state similarity to reference embeddings: the scorer for states with few references.

A question's plausible answers are its latent states, and each has only a handful of
reference answers, too few for a density. The similarity scorer gives sample :math:`z` and
state :math:`i` (with unit-norm reference embeddings :math:`r_{i,1..m_i}`) the score

.. math::

    s_i(z) = \max_j \cos(z, r_{i,j}),

for the states :math:`z` may belong to (its prompt's states) and :math:`-\infty` elsewhere.
Calibration scores come from the references themselves, leave one out:
:math:`s_i^{(-j)}(r_{i,j}) = \max_{l \ne j} \cos(r_{i,j}, r_{i,l})`, pooled over every state
(so a state needs at least two references). A fresh in-state sample is scored against
*all* :math:`m_i` references, so its score is stochastically at least the leave-one-out
score of an exchangeable reference: the pooled conformal p-value is conservative for it,
on average over states (see docs/measure.md for the assumption).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from deltahall.detectors._scorer import safe_l2_normalize

__all__ = ["ReferenceSimilarity"]


class ReferenceSimilarity:
    """Max-cosine similarity of samples to each state's reference embeddings.

    Parameters
    ----------
    state_groups : sequence of int, optional
        Group (prompt) index of each state; margins compare a state only with the states of
        its own group. Default: one group.
    """

    def fit(
        self,
        ref: npt.ArrayLike,
        state_idx: npt.ArrayLike,
        n_states: int,
        state_groups: npt.ArrayLike | None = None,
    ) -> ReferenceSimilarity:
        R = np.asarray(ref, dtype=np.float64)
        y = np.asarray(state_idx, dtype=np.int64).ravel()
        if R.ndim != 2 or R.shape[0] != y.size:
            raise ValueError(
                f"references must be (n, d) with one state each; got {R.shape} and {y.size}."
            )
        if not np.isfinite(R).all():
            raise ValueError("reference embeddings must be finite; found NaN/inf.")
        if not R.any(axis=1).all():
            raise ValueError(
                "reference embeddings hold all-zero rows: cosine similarity is undefined for them."
            )
        order = np.argsort(y, kind="stable")
        self.refs_ = safe_l2_normalize(R[order])
        self.ref_state_ = y[order]
        self.ref_order_ = order
        self.bounds_ = np.searchsorted(self.ref_state_, np.arange(n_states + 1))
        self.n_states_ = int(n_states)
        self.groups_ = (
            np.zeros(n_states, dtype=np.int64)
            if state_groups is None
            else np.asarray(state_groups, dtype=np.int64).ravel()
        )
        self.n_features_in_ = R.shape[1]
        return self

    def score(self, X: npt.ArrayLike, allowed: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
        """``(n, N)`` max-cosine scores; ``-inf`` where a state is not allowed."""
        Z = np.asarray(X, dtype=np.float64)
        if Z.ndim != 2 or Z.shape[1] != self.n_features_in_:
            raise ValueError(
                f"embeddings must have shape (n, {self.n_features_in_}); got {Z.shape}."
            )
        if not np.isfinite(Z).all():
            raise ValueError("embeddings must be finite; found NaN/inf.")
        if not Z.any(axis=1).all():
            raise ValueError(
                "embeddings hold all-zero rows: cosine similarity is undefined for them."
            )
        Z = safe_l2_normalize(Z)
        out = np.full((Z.shape[0], self.n_states_), -np.inf)
        # Rows sharing a set of allowed states are scored together.
        keys: dict[bytes, list[int]] = {}
        packed = np.packbits(allowed, axis=1)
        for r in range(Z.shape[0]):
            keys.setdefault(packed[r].tobytes(), []).append(r)
        for rows_l in keys.values():
            rows = np.asarray(rows_l)
            states = np.flatnonzero(allowed[rows[0]])
            if states.size == 0:
                continue
            segs = [np.arange(self.bounds_[s], self.bounds_[s + 1]) for s in states]
            idx = np.concatenate(segs)
            if idx.size == 0:
                continue
            sims = Z[rows] @ self.refs_[idx].T
            starts = np.cumsum([0] + [len(s) for s in segs[:-1]])
            nonempty = np.array([len(s) > 0 for s in segs])
            red = np.maximum.reduceat(sims, starts[nonempty], axis=1)
            out[np.ix_(rows, states[nonempty])] = red
        return out

    def leave_one_out(
        self,
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.int64]]:
        """Each reference's leave-one-out score for its own state and its margin over its group's other states.

        Returns
        -------
        scores, margins : ndarray (n_ref,)
            In the original reference order. ``margins`` is ``+inf`` for a state alone in its group.
        states : ndarray of int (n_ref,)
        """
        n = self.refs_.shape[0]
        own = np.empty(n)
        marg = np.full(n, np.inf)
        for s in range(self.n_states_):
            a, b = self.bounds_[s], self.bounds_[s + 1]
            if b - a < 2:
                own[a:b] = -np.inf
                continue
            G = self.refs_[a:b] @ self.refs_[a:b].T
            np.fill_diagonal(G, -np.inf)
            own[a:b] = G.max(axis=1)
        for g in np.unique(self.groups_):
            states = np.flatnonzero(self.groups_ == g)
            if states.size < 2:
                continue
            for s in states.tolist():
                a, b = int(self.bounds_[s]), int(self.bounds_[s + 1])
                if a == b:
                    continue
                others = np.concatenate(
                    [np.arange(self.bounds_[t], self.bounds_[t + 1]) for t in states if t != s]
                )
                if others.size == 0:
                    continue
                other_sims = self.refs_[a:b] @ self.refs_[others].T
                # max over each other state, then over states
                best_other = other_sims.max(axis=1)
                marg[a:b] = own[a:b] - best_other
        inv = np.empty(n, dtype=np.int64)
        inv[self.ref_order_] = np.arange(n)
        return own[inv], marg[inv], self.ref_state_[inv]
