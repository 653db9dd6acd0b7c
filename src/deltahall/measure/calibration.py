r"""The one instrument: a scorer and a calibrator make a :class:`Measurement`.

Two scorers turn samples into an ``(n, N_states)`` matrix of per-state scores:

- **densities** (:class:`~deltahall.detectors.densities.StateDensities`) for states with many
  real samples (images, any embedding): each state's density model is chosen by held-out
  likelihood on the fit part;
- **similarity** (:class:`~deltahall.detectors.similarity.ReferenceSimilarity`) for states
  with a handful of references each, scoped to their prompt (a question's answers).

A calibrator (:class:`~deltahall.detectors.calibrators.Calibrator`: split-conformal p-values
by default, the paper's percentile rule, or the blend-aware margin rule) turns scores into
p-values and flags. :func:`measure_embeddings` (global states) and :func:`measure_references`
(per-prompt states) build the :class:`Measurement`: the generated rate with its Wilson
interval, the floor (flagged share of held-out real samples) with its interval, an excess
test against the floor of **the generator's own states** (:func:`deltahall.stats.mixture_excess_test`:
a generator that reproduces one state exactly is compared with that state's floor, not the
pooled one), per prompt, per-state shares and the
states no sample reached.

The reference set of :func:`measure_embeddings` is split, separately within each state and
seeded, into a *fit* part (the densities and their model choice), a *calibration* part (the
p-values) and a *test* part, untouched until the end, whose flagged share is the floor.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from deltahall._validation import check_choice, check_int, check_real
from deltahall.detectors.calibrators import CALIBRATIONS, Calibrator
from deltahall.stats import (
    CI_METHOD,
    EXCESS_TEST,
    MIXTURE_EXCESS_TEST,
    Proportion,
    excess_test,
    mixture_excess_test,
    proportion,
)

logger = logging.getLogger(__name__)

__all__ = [
    "DetectorSettings",
    "Measurement",
    "measure_embeddings",
    "measure_references",
    "measure_scores",
    "split_reference",
    "stratified_split",
]

#: α values of the rate-vs-α curve.
ALPHA_GRID = tuple(float(a) for a in np.round(np.arange(0.01, 0.51, 0.01), 2))
AUTO = "auto"


def _auto_or_int(v: Any, name: str, *, allow_none: bool = False) -> None:
    if v == AUTO or (allow_none and v is None):
        return
    check_int(v, name, low=1)


@dataclass(frozen=True)
class DetectorSettings:
    """How the instrument scores and calibrates (defaults: chosen from the data).

    ``pca_dim``, ``n_components`` and ``covariance_type`` are ``"auto"`` by default: each
    state's density model is chosen by held-out likelihood on its fit part
    (:mod:`deltahall.detectors.densities`). Give a value to fix it (``pca_dim=None``: model
    every principal coordinate).
    """

    alpha: float = 0.1
    calibration: str = "conformal"
    fit_fraction: float = 0.5
    calibration_fraction: float = 0.3
    test_fraction: float = 0.2
    pca_dim: int | str | None = AUTO
    n_components: int | str = AUTO
    covariance_type: str = AUTO
    normalize: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        check_real(self.alpha, "alpha", low=0.0, high=1.0, low_open=True, high_open=True)
        check_choice(self.calibration, "calibration", CALIBRATIONS)
        for name in ("fit_fraction", "calibration_fraction", "test_fraction"):
            check_real(getattr(self, name), name, low=0.0, high=1.0, low_open=True, high_open=True)
        total = self.fit_fraction + self.calibration_fraction + self.test_fraction
        if abs(total - 1.0) > 1e-9:
            raise ValueError(
                f"`fit_fraction` + `calibration_fraction` + `test_fraction` must be 1; got {total:g}."
            )
        _auto_or_int(self.pca_dim, "pca_dim", allow_none=True)
        _auto_or_int(self.n_components, "n_components")
        check_choice(
            self.covariance_type, "covariance_type", (AUTO, "full", "diag", "tied", "spherical")
        )
        check_int(self.seed, "seed")


@dataclass(frozen=True)
class Measurement:
    """Everything a measurement computed.

    Attributes
    ----------
    settings : DetectorSettings
    scorer : StateDensities or ReferenceSimilarity
    calibrator : Calibrator
    states : list of str
        State names, in the order of the per-state columns.
    state_sizes : dict
        Reference rows of each state: ``{"total", "fit", "calibration", "test"}`` lists.
    gen_scores : ndarray (n_gen, n_states)
        Per-state scores (log-densities or similarities; ``-inf`` for states a sample's
        prompt does not have).
    gen_p, gen_flagged, gen_nearest : ndarray (n_gen,)
        p-values :math:`p(z)`, flags at α, nearest state (largest :math:`p_i`, ties broken by
        the score above the state's calibration median).
    gen_typicality : ndarray (n_gen,)
        :meth:`~deltahall.detectors.calibrators.Calibrator.typicality`: the p-value with its
        ties broken by the score, for ranking (AUROC, selection); flags never use it.
    test_p, test_flagged, test_nearest, test_labels : the held-out real part (the floor)
    rate, floor : deltahall.stats.Proportion
    excess_p_value : float
        The stratified excess test (one-sided, exact).
    excess_p_value_pooled : float
        Fisher's exact test against the pooled floor (kept for comparison).
    per_prompt : list of dict
    state_shares : list of float
        Share of each state among the generated samples *inside* the HCDR (by nearest state).
    states_not_reached : list of str
        States no inside sample is nearest to (lost modes), among the states the generated
        prompts have.
    curve : dict
        ``alphas``, ``rate`` and ``floor`` at each α of the grid.
    """

    settings: DetectorSettings
    scorer: Any
    calibrator: Calibrator
    states: list[str]
    state_sizes: dict[str, list[int]]
    gen_scores: npt.NDArray[np.float64]
    gen_p: npt.NDArray[np.float64]
    gen_typicality: npt.NDArray[np.float64]
    gen_flagged: npt.NDArray[np.bool_]
    gen_nearest: npt.NDArray[np.int64]
    prompts: list[str]
    test_p: npt.NDArray[np.float64]
    test_flagged: npt.NDArray[np.bool_]
    test_nearest: npt.NDArray[np.int64]
    test_labels: npt.NDArray[np.int64]
    rate: Proportion
    floor: Proportion
    excess_p_value: float
    excess_p_value_pooled: float
    per_prompt: list[dict[str, Any]]
    state_shares: list[float]
    states_not_reached: list[str]
    curve: dict[str, list[float]]
    parts: dict[str, npt.NDArray[np.intp]] = field(default_factory=dict)
    scope: str = "global"
    floor_source: str = "held-out reference test part"
    density_models: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The headline JSON fields (strict JSON: every float is finite or written as null)."""
        s = self.settings
        many = len(self.states) > 200
        return {
            "rate": self.rate.rate,
            "rate_ci": list(self.rate.ci),
            "ci_method": CI_METHOD,
            "ci_level": 0.95,
            "n_generated": self.rate.n,
            "n_flagged": self.rate.k,
            "floor": self.floor.rate,
            "floor_ci": list(self.floor.ci),
            "floor_source": self.floor_source,
            "n_test": self.floor.n,
            "n_test_flagged": self.floor.k,
            "excess_p_value": self.excess_p_value,
            "excess_test": MIXTURE_EXCESS_TEST,
            "excess_p_value_pooled": self.excess_p_value_pooled,
            "excess_test_pooled": EXCESS_TEST,
            "alpha": s.alpha,
            "calibration": s.calibration,
            "scope": self.scope,
            "calibrator": self.calibrator.as_dict(),
            "density_models": self.density_models,
            "states": []
            if many
            else [
                {
                    "name": n,
                    "size": self.state_sizes["total"][i],
                    "fit": self.state_sizes["fit"][i],
                    "calibration": self.state_sizes["calibration"][i],
                    "test": self.state_sizes["test"][i],
                    "share_inside": self.state_shares[i],
                }
                for i, n in enumerate(self.states)
            ],
            "n_states": len(self.states),
            "states_not_reached": self.states_not_reached,
            "n_states_not_reached": len(self.states_not_reached),
            "per_prompt": self.per_prompt,
        }


# --------------------------------------------------------------------------- splits
def stratified_split(
    y_idx: npt.NDArray[np.intp], fractions: tuple[float, ...], rng: Any
) -> list[npt.NDArray[np.intp]]:
    """Split row indices into parts with the given fractions, separately within each state.

    Every part but the first gets ``floor(fraction * n_state)`` rows; the first gets the rest.
    """
    rng = np.random.default_rng(rng)
    parts: list[list[npt.NDArray[np.intp]]] = [[] for _ in fractions]
    for s in np.unique(y_idx):
        idx = rng.permutation(np.flatnonzero(y_idx == s))
        sizes = [int(math.floor(f * idx.size)) for f in fractions[1:]]
        start = idx.size - sum(sizes)
        parts[0].append(idx[:start])
        for k, size in enumerate(sizes, start=1):
            parts[k].append(idx[start : start + size])
            start += size
    return [np.sort(np.concatenate(p)) if p else np.empty(0, dtype=np.intp) for p in parts]


def split_reference(
    y_idx: npt.NDArray[np.intp], settings: DetectorSettings
) -> dict[str, npt.NDArray[np.intp]]:
    """Seeded stratified fit / calibration / test row indices of the reference set."""
    fit, cal, test = stratified_split(
        y_idx,
        (settings.fit_fraction, settings.calibration_fraction, settings.test_fraction),
        np.random.default_rng([settings.seed, 7]),
    )
    return {"fit": fit, "calibration": cal, "test": test}


def check_split_sizes(
    states: list[str], sizes: dict[str, list[int]], alpha: float, calibration: str
) -> None:
    """One-line ValueError naming the first state whose parts are too small for ``alpha``."""
    from deltahall.detectors.densities import MIN_FIT_ROWS

    need = math.ceil((2.0 if calibration == "margin" else 1.0) / alpha - 1.0 - 1e-9)
    for i, name in enumerate(states):
        of = f" (of its {sizes['total'][i]} reference samples)"
        if sizes["calibration"][i] < need:
            raise ValueError(
                f"state {name!r} has m={sizes['calibration'][i]} calibration samples{of}, so m+1 < 1/alpha = "
                f"{1 / alpha:g}: it could never be flagged at `alpha`={alpha:g}; add reference samples "
                f"(need m >= {need}) or raise `alpha`."
            )
        if sizes["fit"][i] < MIN_FIT_ROWS:
            raise ValueError(
                f"state {name!r} has {sizes['fit'][i]} samples in its fit part{of}; the density "
                f"model needs at least {MIN_FIT_ROWS}."
            )
        if sizes["test"][i] < 1:
            raise ValueError(
                f"state {name!r} has no sample in its test part{of}; add reference samples or "
                "raise `test_fraction`."
            )


# --------------------------------------------------------------------------- the core
def nearest_state(
    per_state_p: npt.NDArray[np.float64],
    scores: npt.NDArray[np.float64],
    medians: npt.NDArray[np.float64],
) -> npt.NDArray[np.int64]:
    """Largest per-state value (the measurement passes the typicalities :math:`\\tilde p_i`);
    the rare remaining ties broken by ``score - median``."""
    best = per_state_p.max(axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):
        z = np.where(per_state_p >= best, scores - medians, -np.inf)
    z = np.where(np.isnan(z), -np.inf, z)
    return np.asarray(z.argmax(axis=1), dtype=np.int64)


def prompt_codes(prompts: list[str]) -> tuple[list[str], npt.NDArray[np.int64]]:
    """Distinct prompts in first-seen order and each row's index into them.

    Examples
    --------
    >>> names, codes = prompt_codes(["b", "a", "b", "c"])
    >>> names, codes.tolist()
    (['b', 'a', 'c'], [0, 1, 0, 2])
    """
    if not prompts:
        return [], np.zeros(0, dtype=np.int64)
    arr = np.asarray(prompts, dtype=str)
    uniq, first, inverse = np.unique(arr, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # sorted-unique position -> first-seen rank
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size)
    return [str(u) for u in uniq[order]], rank[inverse.ravel()]


def _group_means(
    G: npt.NDArray[Any], codes: npt.NDArray[np.int64], n_groups: int
) -> npt.NDArray[np.float64]:
    """Mean row of each group: a sparse one-hot ``(n_groups, rows)`` product per 8,192-row block.

    Each block is read once (in float64, so sums of float32 rows do not lose digits); nothing
    the size of ``G`` is copied. ``np.add.reduceat`` on an argsorted block (the previous
    version) copied every block in group order and took about 5x longer at 300,000 x 384.
    """
    import scipy.sparse as sp

    sums = np.zeros((n_groups, G.shape[1]))
    step = 1 << 13
    for s in range(0, G.shape[0], step):
        block = np.asarray(G[s : s + step], dtype=np.float64)
        c = codes[s : s + step]
        onehot = sp.csr_matrix((np.ones(c.size), (c, np.arange(c.size))), shape=(n_groups, c.size))
        sums += onehot @ block
    counts = np.bincount(codes, minlength=n_groups)
    return np.asarray(sums / np.maximum(counts, 1)[:, None])


def mean_embedding_check(
    scorer: Any, calibrator: Calibrator, G: npt.NDArray[Any]
) -> Callable[[list[str], npt.NDArray[np.int64]], tuple[Any, Any]]:
    """For global states: is each prompt's mean embedding (the loss-minimiser's output) inside?

    Returns the ``mean_inside(names, codes) -> (inside, p_value)`` callable :func:`measure_scores` takes.
    """

    def mean_inside(names: list[str], codes: npt.NDArray[np.int64]) -> tuple[Any, Any]:
        S = scorer.score(_group_means(G, codes, len(names)))
        p = calibrator.p_values(S)
        return ~calibrator.flags(S, p), p

    return mean_inside


def measure_scores(
    *,
    settings: DetectorSettings,
    scorer: Any,
    calibrator: Calibrator,
    states: list[str],
    state_sizes: dict[str, list[int]],
    gen_scores: npt.NDArray[np.float64],
    gen_allowed: npt.NDArray[np.bool_] | None,
    prompts: list[str],
    test_scores: npt.NDArray[np.float64],
    test_allowed: npt.NDArray[np.bool_] | None,
    test_labels: npt.NDArray[np.int64],
    mean_inside: Callable[[list[str], npt.NDArray[np.int64]], tuple[Any, Any]] | None = None,
    parts: dict[str, npt.NDArray[np.intp]] | None = None,
    scope: str = "global",
    floor_source: str = "held-out reference test part",
    density_models: list[dict[str, Any]] | None = None,
    test_p_override: npt.NDArray[np.float64] | None = None,
) -> Measurement:
    """Build a :class:`Measurement` from per-state scores (the part every scorer shares)."""
    n_states = len(states)
    med = np.array([np.median(c) if c.size else 0.0 for c in calibrator.cal_])
    P_gen = calibrator.state_p_values(gen_scores, gen_allowed)
    p_gen = P_gen.max(axis=1)
    T_gen = calibrator.state_typicality(gen_scores, gen_allowed)
    typ_gen = T_gen.max(axis=1)
    flag_gen = calibrator.flags(gen_scores, p_gen, allowed=gen_allowed)
    near_gen = nearest_state(T_gen, gen_scores, med)
    P_test = calibrator.state_p_values(test_scores, test_allowed)
    p_test = P_test.max(axis=1) if test_p_override is None else test_p_override
    if test_p_override is None:
        flag_test = calibrator.flags(test_scores, p_test, allowed=test_allowed)
    else:
        flag_test = np.asarray(p_test <= settings.alpha)
    near_test = nearest_state(
        calibrator.state_typicality(test_scores, test_allowed), test_scores, med
    )
    if flag_test.size == 0:
        raise ValueError(
            "the reference's test part is empty; add reference samples or raise `test_fraction`."
        )
    rate = proportion(int(flag_gen.sum()), int(flag_gen.size))
    floor = proportion(int(flag_test.sum()), int(flag_test.size))
    pooled = excess_test(rate.k, rate.n, floor.k, floor.n)
    inside = ~flag_gen
    counts = np.bincount(near_gen[inside], minlength=n_states).astype(float)
    labels = np.asarray(test_labels, dtype=np.int64)
    strat = mixture_excess_test(
        rate.k,
        rate.n,
        counts.astype(np.int64).tolist(),
        np.bincount(labels, weights=flag_test.astype(float), minlength=n_states)
        .round()
        .astype(np.int64)
        .tolist(),
        np.bincount(labels, minlength=n_states).tolist(),
        seed=settings.seed,
    )
    shares = (counts / max(int(inside.sum()), 1)).tolist()
    reachable = np.ones(n_states, bool) if gen_allowed is None else gen_allowed.any(axis=0)
    not_reached = [states[i] for i in np.flatnonzero(reachable & (counts == 0))]
    names, codes = prompt_codes(prompts)
    n = np.bincount(codes, minlength=len(names))
    k = (
        np.bincount(codes, weights=flag_gen.astype(np.float64), minlength=len(names))
        .round()
        .astype(np.int64)
    )
    mi = mean_inside(names, codes) if mean_inside is not None else None
    per_prompt = []
    for j, pr in enumerate(names):
        est = proportion(int(k[j]), int(n[j]))
        row: dict[str, Any] = {
            "prompt": pr,
            "n": est.n,
            "n_flagged": est.k,
            "rate": est.rate,
            "rate_ci": list(est.ci),
        }
        if mi is not None:
            row["mean_embedding_inside"] = bool(mi[0][j])
            row["mean_embedding_p_value"] = float(mi[1][j])
        per_prompt.append(row)
    curve = _curve(
        calibrator,
        gen_scores,
        p_gen,
        gen_allowed,
        test_scores,
        p_test,
        test_allowed,
        test_p_override is not None,
    )
    logger.info(
        "rate %.4f [%.4f, %.4f], floor %.4f, excess p %.3g (own-states mixture)",
        rate.rate,
        *rate.ci,
        floor.rate,
        strat,
    )
    return Measurement(
        settings=settings,
        scorer=scorer,
        calibrator=calibrator,
        states=list(states),
        state_sizes=state_sizes,
        gen_scores=gen_scores,
        gen_p=p_gen,
        gen_typicality=typ_gen,
        gen_flagged=flag_gen,
        gen_nearest=near_gen,
        prompts=list(prompts),
        test_p=p_test,
        test_flagged=flag_test,
        test_nearest=near_test,
        test_labels=test_labels,
        rate=rate,
        floor=floor,
        excess_p_value=strat,
        excess_p_value_pooled=pooled,
        per_prompt=per_prompt,
        state_shares=shares,
        states_not_reached=not_reached,
        curve=curve,
        parts=parts or {},
        scope=scope,
        floor_source=floor_source,
        density_models=density_models or [],
    )


def _curve(
    cal: Calibrator,
    S_gen: Any,
    p_gen: Any,
    A_gen: Any,
    S_test: Any,
    p_test: Any,
    A_test: Any,
    p_only: bool,
) -> dict[str, list[float]]:
    alphas = list(ALPHA_GRID)
    if cal.rule != "percentile" or p_only:
        gs, ts = np.sort(p_gen), np.sort(p_test)
        rate = (np.searchsorted(gs, alphas, side="right") / max(gs.size, 1)).tolist()
        floor = (np.searchsorted(ts, alphas, side="right") / max(ts.size, 1)).tolist()
    else:
        rate = [float(cal.flags(S_gen, allowed=A_gen, alpha=a).mean()) for a in alphas]
        floor = [float(cal.flags(S_test, allowed=A_test, alpha=a).mean()) for a in alphas]
    return {"alphas": alphas, "rate": [float(v) for v in rate], "floor": [float(v) for v in floor]}


# --------------------------------------------------------------------------- global states
def _labels(ref_y: npt.ArrayLike, n: int) -> tuple[npt.NDArray[Any], npt.NDArray[np.intp]]:
    labels = np.asarray(ref_y).ravel()
    if labels.shape[0] != n:
        raise ValueError(
            f"`reference_labels` must have one label per reference row; got {labels.shape[0]} for {n}."
        )
    if labels.dtype.kind == "f" and not np.isfinite(labels).all():
        bad = np.flatnonzero(~np.isfinite(labels))
        raise ValueError(
            f"`reference_labels` must not hold NaN/inf; found {bad.size} at rows {bad[:10].tolist()}."
        )
    if labels.dtype.kind == "O":
        nulls = [
            i
            for i, v in enumerate(labels.tolist())
            if v is None or (isinstance(v, float) and not math.isfinite(v))
        ]
        if nulls:
            raise ValueError(
                f"`reference_labels` must not hold null/NaN; found {len(nulls)} at rows {nulls[:10]}."
            )
    classes, y_idx = np.unique(labels, return_inverse=True)
    if classes.size < 2:
        raise ValueError(
            f"the reference must contain at least two latent states; got one: {[str(c) for c in classes]}."
        )
    return classes, y_idx


def plan_global(ref_y: npt.ArrayLike, n_ref: int, settings: DetectorSettings) -> dict[str, Any]:
    """Validate labels and split sizes **before** any expensive work; return the split."""
    classes, y_idx = _labels(ref_y, n_ref)
    parts = split_reference(y_idx, settings)
    sizes = {k: np.bincount(y_idx[v], minlength=classes.size).tolist() for k, v in parts.items()}
    sizes["total"] = np.bincount(y_idx, minlength=classes.size).tolist()
    states = [str(c) for c in classes]
    check_split_sizes(states, sizes, settings.alpha, settings.calibration)
    return {"classes": classes, "y_idx": y_idx, "parts": parts, "sizes": sizes, "states": states}


def fit_global(
    ref_X: npt.ArrayLike, plan: dict[str, Any], settings: DetectorSettings
) -> tuple[Any, Calibrator, Any]:
    """Fit the density scorer on the fit part and the calibrator on the calibration part."""
    from deltahall.detectors.densities import StateDensities

    X = ref_X if isinstance(ref_X, np.ndarray) else np.asarray(ref_X)
    parts, y_idx, states = plan["parts"], plan["y_idx"], plan["states"]
    scorer = StateDensities(
        pca_dim=settings.pca_dim,
        covariance_type=settings.covariance_type,
        n_components=settings.n_components,
        normalize=settings.normalize,
        random_state=settings.seed,
    )
    scorer.fit(np.asarray(X[parts["fit"]], dtype=np.float64), y_idx[parts["fit"]], states)
    S_cal = scorer.score(X[parts["calibration"]])
    y_cal = y_idx[parts["calibration"]]
    cal_scores = [S_cal[y_cal == i, i] for i in range(len(states))]
    cal_margins = None
    if settings.calibration == "margin":
        from deltahall.detectors.calibrators import margins

        M = margins(S_cal)
        cal_margins = [M[y_cal == i, i] for i in range(len(states))]
    calibrator = Calibrator(settings.calibration, settings.alpha).fit(
        cal_scores, len(states), cal_margins
    )
    S_test = scorer.score(X[parts["test"]])
    return scorer, calibrator, S_test


def measure_embeddings(
    ref_X: npt.ArrayLike,
    ref_y: npt.ArrayLike,
    gen_X: npt.ArrayLike,
    *,
    prompts: list[str] | None = None,
    settings: DetectorSettings | None = None,
) -> Measurement:
    """Measure the δ-hallucination rate of generated embeddings against labelled real ones.

    Parameters
    ----------
    ref_X : array-like (n_ref, d)
        Real embeddings.
    ref_y : array-like (n_ref,)
        Latent state of each real embedding (at least two states).
    gen_X : array-like (n_gen, d)
        Generated embeddings (at least one).
    prompts : list of str, optional
        Prompt of each generated row (default: all ``""``).
    settings : DetectorSettings

    Raises
    ------
    ValueError
        One state; NaN labels; mismatched dimensions; an empty generated set; a state with
        too few calibration samples for α (:math:`m_i + 1 < 1/\\alpha`) or too few fit rows.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack([rng.normal(-5, 1, (200, 2)), rng.normal(5, 1, (200, 2))])
    >>> y = np.repeat(["a", "b"], 200)
    >>> gen = np.vstack([rng.normal(-5, 1, (50, 2)), np.zeros((50, 2))])
    >>> m = measure_embeddings(X, y, gen, settings=DetectorSettings(normalize=False))
    >>> 0.45 < m.rate.rate < 0.65, m.excess_p_value < 1e-6
    (True, True)
    """
    s = settings or DetectorSettings()
    X = ref_X if isinstance(ref_X, np.ndarray) else np.asarray(ref_X)
    G = gen_X if isinstance(gen_X, np.ndarray) else np.asarray(gen_X)
    if X.ndim != 2:
        raise ValueError(
            f"`reference` embeddings must be 2-dimensional (n, d); got shape {X.shape}."
        )
    if G.ndim != 2 or G.shape[0] == 0:
        raise ValueError(
            f"`generated` must contain at least one sample (shape (n>=1, d)); got shape {G.shape}."
        )
    if G.shape[1] != X.shape[1]:
        raise ValueError(
            f"`generated` embeddings must have the reference's dimension {X.shape[1]}; got {G.shape[1]} "
            "(were both embedded with the same embedder?)."
        )
    pr = [""] * G.shape[0] if prompts is None else [str(p) for p in prompts]
    if len(pr) != G.shape[0]:
        raise ValueError(
            f"`prompts` must have one entry per generated row; got {len(pr)} for {G.shape[0]}."
        )
    plan = plan_global(ref_y, X.shape[0], s)
    scorer, calibrator, S_test = fit_global(X, plan, s)
    S_gen = scorer.score(G)

    mean_inside = mean_embedding_check(scorer, calibrator, G)

    return measure_scores(
        settings=s,
        scorer=scorer,
        calibrator=calibrator,
        states=plan["states"],
        state_sizes=plan["sizes"],
        gen_scores=S_gen,
        gen_allowed=None,
        prompts=pr,
        test_scores=S_test,
        test_allowed=None,
        test_labels=plan["y_idx"][plan["parts"]["test"]].astype(np.int64),
        mean_inside=mean_inside,
        parts=plan["parts"],
        density_models=scorer.summary(),
    )


# --------------------------------------------------------------------------- per-prompt states
@dataclass(frozen=True)
class ScopedPlan:
    """Per-prompt states, validated: state names ``prompt/state``, their prompt, the rows."""

    states: list[str]
    state_prompt: list[str]
    ref_state: npt.NDArray[np.int64]
    gen_allowed: npt.NDArray[np.bool_]
    prompt_states: dict[str, list[int]]
    cal_state: npt.NDArray[np.int64] | None


def plan_scoped(
    ref_states: list[str],
    ref_prompts: list[str],
    gen_prompts: list[str],
    *,
    calibration_states: list[str] | None = None,
    calibration_prompts: list[str] | None = None,
    alpha: float = 0.1,
    calibration: str = "conformal",
) -> ScopedPlan:
    """Validate per-prompt states before any embedding (one-line errors), and index them."""
    index: dict[tuple[str, str], int] = {}
    ref_state = np.fromiter(
        (
            index.setdefault((p, s), len(index))
            for p, s in zip(ref_prompts, ref_states, strict=True)
        ),
        dtype=np.int64,
        count=len(ref_states),
    )
    keys = list(index)
    counts = np.bincount(ref_state, minlength=len(keys))
    one = [f"{p!r}/{s!r}" for (p, s), c in zip(keys, counts, strict=True) if c < 2]
    if one and calibration_states is None:
        raise ValueError(
            f"every per-prompt state needs at least two reference texts (the leave-one-out calibration "
            f"scores each against the others); {len(one)} state(s) have one, e.g. {one[0]}; add references, "
            "drop those states, or pass --calibration-samples."
        )
    prompt_states: dict[str, list[int]] = {}
    for i, (p, _) in enumerate(keys):
        prompt_states.setdefault(p, []).append(i)
    unknown = sorted({p for p in gen_prompts if p not in prompt_states})
    if unknown:
        raise ValueError(
            f"generated prompt(s) with no reference states: {unknown[:3]!r}{' ...' if len(unknown) > 3 else ''} "
            f"({len(unknown)} in all); every generated row's `prompt` must name a prompt of the reference."
        )
    allowed = np.zeros((len(gen_prompts), len(keys)), dtype=bool)
    pc_names, pc_codes = prompt_codes(list(gen_prompts))
    for j, p in enumerate(pc_names):
        allowed[np.ix_(pc_codes == j, prompt_states[p])] = True
    cal_state = None
    n_cal = int(counts.sum()) if calibration_states is None else len(calibration_states)
    need = math.ceil((2.0 if calibration == "margin" else 1.0) / alpha - 1.0 - 1e-9)
    if n_cal < need:
        raise ValueError(
            f"the calibration pool has {n_cal} scores, so m+1 < 1/alpha = {1 / alpha:g}; add "
            "references or calibration samples, or raise `alpha`."
        )
    if calibration_states is not None:
        if calibration_prompts is None or len(calibration_prompts) != len(calibration_states):
            raise ValueError("`calibration_samples` rows need both `prompt` and `state`.")
        missing = [
            (p, s)
            for p, s in zip(calibration_prompts, calibration_states, strict=True)
            if (p, s) not in index
        ]
        if missing:
            raise ValueError(
                f"calibration sample state(s) not in the reference: {missing[:3]!r}; each row's "
                "(prompt, state) must be one of the reference's."
            )
        cal_state = np.array(
            [index[(p, s)] for p, s in zip(calibration_prompts, calibration_states, strict=True)],
            dtype=np.int64,
        )
    return ScopedPlan(
        states=[f"{p}/{s}" for p, s in keys],
        state_prompt=[p for p, _ in keys],
        ref_state=ref_state,
        gen_allowed=allowed,
        prompt_states=prompt_states,
        cal_state=cal_state,
    )


def measure_references(
    ref_E: npt.ArrayLike,
    ref_states: list[str],
    ref_prompts: list[str],
    gen_E: npt.ArrayLike,
    gen_prompts: list[str],
    *,
    settings: DetectorSettings | None = None,
    calibration_E: npt.ArrayLike | None = None,
    calibration_states: list[str] | None = None,
    calibration_prompts: list[str] | None = None,
    plan: ScopedPlan | None = None,
) -> Measurement:
    """Measure generated samples against per-prompt states given by a few references each.

    Each prompt's states are scored by :class:`~deltahall.detectors.similarity.ReferenceSimilarity`
    (max cosine over the state's references). Calibration: the references' leave-one-out
    scores pooled over every state (default), or the in-state ``calibration_E`` samples the
    user supplies (their score under their own state). The floor is the share of references
    flagged by the same rule, each scored leave-one-out against the pool without itself
    (with user calibration samples: the references' leave-one-out scores against that pool).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> base = rng.normal(size=(4, 16))
    >>> refs = np.repeat(base, 12, axis=0) + 0.2 * rng.normal(size=(48, 16))
    >>> st = ["a"] * 12 + ["b"] * 12 + ["a"] * 12 + ["b"] * 12
    >>> pr = ["q1"] * 24 + ["q2"] * 24
    >>> gen = np.vstack([base[0] + 0.2 * rng.normal(size=(5, 16)), base[2] + 0.2 * rng.normal(size=(5, 16))])
    >>> m = measure_references(refs, st, pr, gen, ["q1"] * 5 + ["q2"] * 5, settings=DetectorSettings(alpha=0.2))
    >>> m.rate.rate, m.scope
    (0.0, 'per-prompt')
    >>> off = measure_references(refs, st, pr, gen, ["q2"] * 5 + ["q1"] * 5, settings=DetectorSettings(alpha=0.2))
    >>> off.rate.rate
    1.0
    """
    from deltahall.detectors.calibrators import margins
    from deltahall.detectors.similarity import ReferenceSimilarity

    s = settings or DetectorSettings()
    R = np.asarray(ref_E, dtype=np.float64)
    G = np.asarray(gen_E, dtype=np.float64)
    if R.ndim != 2 or G.ndim != 2 or R.shape[1] != G.shape[1]:
        raise ValueError(
            f"reference and generated embeddings must be (n, d) with one d; got {R.shape} and {G.shape}."
        )
    if G.shape[0] == 0:
        raise ValueError("`generated` must contain at least one sample.")
    if not (len(ref_states) == len(ref_prompts) == R.shape[0]):
        raise ValueError("each reference row needs a state and a prompt.")
    if len(gen_prompts) != G.shape[0]:
        raise ValueError(
            f"`prompts` must have one entry per generated row; got {len(gen_prompts)} for {G.shape[0]}."
        )
    p = plan or plan_scoped(
        list(ref_states),
        list(ref_prompts),
        list(gen_prompts),
        calibration_states=calibration_states,
        calibration_prompts=calibration_prompts,
        alpha=s.alpha,
        calibration=s.calibration,
    )
    n_states = len(p.states)
    prompt_index = {pr: g for g, pr in enumerate(p.prompt_states)}
    groups = np.array([prompt_index[pr] for pr in p.state_prompt], dtype=np.int64)
    scorer = ReferenceSimilarity().fit(R, p.ref_state, n_states, state_groups=groups)
    loo, loo_m, loo_state = scorer.leave_one_out()
    usable = np.isfinite(loo)
    if calibration_E is not None and p.cal_state is not None:
        C = np.asarray(calibration_E, dtype=np.float64)
        allowed_c = np.zeros((C.shape[0], n_states), dtype=bool)
        for i, st in enumerate(p.cal_state.tolist()):
            allowed_c[i, p.prompt_states[p.state_prompt[st]]] = True
        S_c = scorer.score(C, allowed_c)
        own = S_c[np.arange(C.shape[0]), p.cal_state]
        own_m = margins(S_c, allowed_c)[np.arange(C.shape[0]), p.cal_state]
        cal_pool, cal_mpool = own, own_m
        source = "calibration samples"
    else:
        cal_pool, cal_mpool = loo[usable], loo_m[usable]
        source = "leave-one-out references"
    calibrator = Calibrator(s.calibration, s.alpha).fit(
        np.asarray(cal_pool), n_states, np.asarray(cal_mpool) if s.calibration == "margin" else None
    )
    gen_allowed = p.gen_allowed
    S_gen = scorer.score(G, gen_allowed)
    # The floor: each usable reference, scored leave-one-out, p-value against the pool without itself.
    ref_idx = np.flatnonzero(usable)
    test_scores = np.full((ref_idx.size, n_states), -np.inf)
    test_allowed = np.zeros((ref_idx.size, n_states), dtype=bool)
    test_scores[np.arange(ref_idx.size), loo_state[ref_idx]] = loo[ref_idx]
    test_allowed[np.arange(ref_idx.size), loo_state[ref_idx]] = True
    jack = _jackknife_p(
        loo[ref_idx], loo_m[ref_idx], calibrator, source == "leave-one-out references"
    )
    sizes = {"total": np.bincount(p.ref_state, minlength=n_states).tolist()}
    sizes["fit"] = sizes["total"]
    sizes["calibration"] = sizes["total"]
    sizes["test"] = sizes["total"]

    def mean_inside(names: list[str], codes: npt.NDArray[np.int64]) -> tuple[Any, Any]:
        means = _group_means(G, codes, len(names))
        A = np.zeros((len(names), n_states), dtype=bool)
        for j, nm in enumerate(names):
            A[j, p.prompt_states[nm]] = True
        S = scorer.score(means, A)
        pv = calibrator.p_values(S, A)
        return ~calibrator.flags(S, pv, allowed=A), pv

    m = measure_scores(
        settings=s,
        scorer=scorer,
        calibrator=calibrator,
        states=p.states,
        state_sizes=sizes,
        gen_scores=S_gen,
        gen_allowed=gen_allowed,
        prompts=list(gen_prompts),
        test_scores=test_scores,
        test_allowed=test_allowed,
        test_labels=loo_state[ref_idx].astype(np.int64),
        mean_inside=mean_inside,
        scope="per-prompt",
        floor_source=f"references scored leave-one-out (calibration: {source})",
        test_p_override=jack,
    )
    return m


def _jackknife_p(
    scores: npt.NDArray[np.float64], marg: npt.NDArray[np.float64], cal: Calibrator, drop_self: bool
) -> npt.NDArray[np.float64]:
    """p-values of the references' own leave-one-out scores, each against the pool without itself."""
    pool = cal.cal_[0]
    m = pool.size - (1 if drop_self else 0)
    counts = np.searchsorted(pool, scores, side="right") - (1 if drop_self else 0)
    p = (1.0 + counts) / (m + 1.0)
    if cal.rule == "margin":
        mp = cal.cal_margins_[0]
        mc = np.searchsorted(mp, marg, side="right") - (1 if drop_self else 0)
        p = np.minimum(1.0, 2.0 * np.minimum(p, (1.0 + mc) / (m + 1.0)))
    return np.asarray(p)
