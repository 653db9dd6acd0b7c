"""HCDR-guided selection: keep the generated candidates that look real, and say what it costs.

The paper leaves mitigation to future work. The simplest one the instrument allows is
rejection: per prompt, keep only the candidates inside the calibrated HCDR
(:math:`p(z) > \\alpha`), or the ``K`` with the highest p-values. Selection lowers the
flagged rate, but it can also drop whole states (a generator whose samples of one state
are all blurry loses that state entirely): the cost is reported as the share of each
(nearest) state among the kept samples, all generated samples and the reference, their
total variation distances, and how many states survive.

The rate *after* selection is measured with the same p-values that chose the samples,
so in ``"hcdr"`` mode it is 0 by construction; judge selection on known-truth data (the
tests and ``docs/measure.md``) or with a fresh measurement of new samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from deltahall._validation import check_choice, check_int

__all__ = ["SELECT_MODES", "Selection", "select_candidates", "total_variation"]

SELECT_MODES = ("hcdr", "top-k")


def total_variation(p: npt.ArrayLike, q: npt.ArrayLike) -> float:
    """:math:`\\tfrac12 \\sum_i |p_i - q_i|`.

    >>> total_variation([0.5, 0.5], [1.0, 0.0])
    0.5
    """
    return float(0.5 * np.abs(np.asarray(p, dtype=float) - np.asarray(q, dtype=float)).sum())


@dataclass(frozen=True)
class Selection:
    """What :func:`select_candidates` kept and what it cost.

    Attributes
    ----------
    kept : ndarray of bool (n,)
    mode : str
    k : int or None
    rate_before, rate_after : float
        Flagged fraction of all candidates / of the kept ones (``nan``-free: 0 when none kept,
        with ``n_kept`` = 0 saying so).
    acceptance_rate : float
    shares : dict
        ``{"kept": [...], "generated": [...], "reference": [...]}`` per state.
    tv_kept_vs_reference, tv_generated_vs_reference : float
    states_surviving : int
        States with at least one kept sample.
    per_prompt : list of dict
    """

    kept: npt.NDArray[np.bool_]
    mode: str
    k: int | None
    n: int
    n_kept: int
    rate_before: float
    rate_after: float
    acceptance_rate: float
    states: list[str]
    shares: dict[str, list[float]]
    tv_kept_vs_reference: float
    tv_generated_vs_reference: float
    states_surviving: int
    states_generated: int
    per_prompt: list[dict[str, Any]]

    def summary(self) -> dict[str, Any]:
        d = {
            k: getattr(self, k)
            for k in (
                "mode",
                "k",
                "n",
                "n_kept",
                "rate_before",
                "rate_after",
                "acceptance_rate",
                "states",
                "shares",
                "tv_kept_vs_reference",
                "tv_generated_vs_reference",
                "states_surviving",
                "states_generated",
                "per_prompt",
            )
        }
        d["rate_after_note"] = (
            "measured with the p-values that chose the samples; 0 by construction in 'hcdr' mode"
        )
        return d


def _shares(nearest: npt.NDArray[np.int64], n_states: int) -> list[float]:
    if nearest.size == 0:
        return [0.0] * n_states
    return (np.bincount(nearest, minlength=n_states) / nearest.size).tolist()


def select_candidates(
    p_values: npt.ArrayLike,
    prompts: list[str],
    nearest: npt.ArrayLike,
    flagged: npt.ArrayLike,
    *,
    states: list[str],
    reference_sizes: list[int],
    mode: str = "hcdr",
    k: int | None = None,
    alpha: float = 0.1,
    typicality: npt.ArrayLike | None = None,
) -> Selection:
    """Keep, per prompt, the candidates inside the HCDR or the ``k`` with the highest p-values.

    Parameters
    ----------
    p_values : array-like (n,)
        Conformal p-values of the candidates.
    prompts : list of str (n,)
    nearest : array-like of int (n,)
        Nearest state of each candidate.
    flagged : array-like of bool (n,)
        The measurement's flags (used for the before / after rates).
    states : list of str
    reference_sizes : list of int
        Reference samples per state (the target shares).
    mode : {"hcdr", "top-k"}
    k : int, required for ``"top-k"``
    alpha : float
        The level of ``"hcdr"`` mode: keep :math:`p(z) > \\alpha`.
    typicality : array-like (n,), optional
        The measurement's tie-broken p-values
        (:meth:`~deltahall.detectors.calibrators.Calibrator.typicality`): ``"top-k"`` ranks by
        the p-value, ties broken by it.

    Examples
    --------
    >>> s = select_candidates([0.5, 0.01, 0.9, 0.02], ["a", "a", "b", "b"], [0, 0, 1, 1],
    ...                       [False, True, False, True], states=["x", "y"], reference_sizes=[5, 5])
    >>> s.kept.tolist(), s.rate_before, s.rate_after, s.states_surviving
    ([True, False, True, False], 0.5, 0.0, 2)
    """
    check_choice(mode, "select", SELECT_MODES)
    p = np.asarray(p_values, dtype=np.float64)
    near = np.asarray(nearest, dtype=np.int64)
    flag = np.asarray(flagged, dtype=bool)
    typ = None if typicality is None else np.asarray(typicality, dtype=np.float64)
    n = p.size
    if typ is not None and typ.shape != p.shape:
        raise ValueError(f"`typicality` must have shape {p.shape}; got {typ.shape}.")
    if n == 0:
        raise ValueError("`generated` must contain at least one sample to select from; got 0.")
    if mode == "top-k":
        if k is None:
            raise ValueError("`select_k` is required with `select`='top-k'.")
        k = check_int(k, "select_k", low=1)
    from deltahall.measure.calibration import prompt_codes

    kept = np.zeros(n, dtype=bool)
    names, codes = prompt_codes(prompts)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(names) + 1))
    per_prompt = []
    for j, pr in enumerate(names):
        rows = order[bounds[j] : bounds[j + 1]]
        if mode == "hcdr":
            keep = rows[p[rows] > alpha]
        else:
            if typ is None:
                best = np.argsort(-p[rows], kind="stable")
            else:  # p first, its ties broken by the typicality (both descending)
                best = np.lexsort((-typ[rows], -p[rows]))
            keep = rows[best[:k]]
        kept[keep] = True
        per_prompt.append(
            {
                "prompt": pr,
                "n": int(rows.size),
                "n_kept": int(keep.size),
                "acceptance_rate": keep.size / rows.size,
                "rate_before": float(flag[rows].mean()),
                "rate_after": float(flag[keep].mean()) if keep.size else 0.0,
            }
        )
    n_states = len(states)
    ref = np.asarray(reference_sizes, dtype=float)
    ref_share = (ref / ref.sum()).tolist()
    gen_share = _shares(near, n_states)
    kept_share = _shares(near[kept], n_states)
    n_kept = int(kept.sum())
    return Selection(
        kept=kept,
        mode=mode,
        k=k,
        n=n,
        n_kept=n_kept,
        rate_before=float(flag.mean()),
        rate_after=float(flag[kept].mean()) if n_kept else 0.0,
        acceptance_rate=n_kept / n,
        states=list(states),
        shares={"kept": kept_share, "generated": gen_share, "reference": ref_share},
        tv_kept_vs_reference=total_variation(kept_share, ref_share) if n_kept else 1.0,
        tv_generated_vs_reference=total_variation(gen_share, ref_share),
        states_surviving=int(np.unique(near[kept]).size),
        states_generated=int(np.unique(near).size),
        per_prompt=per_prompt,
    )
