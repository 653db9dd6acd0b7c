"""Measuring embeddings: split, fit, calibrate, score — arrays in, a :class:`Measurement` out.

The reference set is split, separately within each latent state and seeded, into a
*fit* part (the per-state Gaussian mixtures), a *calibration* part (the conformal
p-values of :class:`~deltahall.detectors.conformal.ConformalHCDR`) and a *test* part
that is never touched until the end: its flagged fraction is the **floor**, what a
perfect generator (one that reproduces real samples) would score. The generated rate
is read against that floor, with Wilson intervals on both and a one-sided Fisher
exact test of "generated > floor".
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from deltahall._validation import check_choice, check_int, check_real
from deltahall.detectors.conformal import CALIBRATIONS, ConformalHCDR, stratified_split
from deltahall.stats import CI_METHOD, EXCESS_TEST, Proportion, excess_test, proportion

logger = logging.getLogger(__name__)

__all__ = ["DetectorSettings", "Measurement", "measure_embeddings", "split_reference"]

#: α values of the rate-vs-α curve.
ALPHA_GRID = tuple(float(a) for a in np.round(np.arange(0.01, 0.51, 0.01), 2))


@dataclass(frozen=True)
class DetectorSettings:
    """The per-state density model and the reference split."""

    alpha: float = 0.1
    calibration: str = "conformal"
    fit_fraction: float = 0.5
    calibration_fraction: float = 0.3
    test_fraction: float = 0.2
    pca_dim: int | None = 50
    n_components: int = 2
    covariance_type: str = "diag"
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
        if self.pca_dim is not None:
            check_int(self.pca_dim, "pca_dim", low=1)
        check_int(self.n_components, "n_components", low=1)
        check_choice(self.covariance_type, "covariance_type", ("full", "diag", "tied", "spherical"))
        check_int(self.seed, "seed")


@dataclass(frozen=True)
class Measurement:
    """Everything :func:`measure_embeddings` computed.

    Attributes
    ----------
    detector : ConformalHCDR
    states : list of str
        State names, in the order of the per-state columns.
    state_sizes : dict
        Reference rows of each state: ``{"total", "fit", "calibration", "test"}`` lists.
    gen_scores : ndarray (n_gen, n_states)
        :math:`\\log \\hat f_i` of each generated sample.
    gen_p : ndarray (n_gen,)
        Conformal p-values :math:`p(z)`.
    gen_flagged : ndarray of bool (n_gen,)
    gen_nearest : ndarray of int (n_gen,)
        Nearest state: largest :math:`p_i`, ties broken by the log-density above the state's median.
    test_p, test_flagged, test_labels : the held-out real test part
    rate, floor : Proportion
    excess_p_value : float
    per_prompt : list of dict
    curve : dict
        ``alphas``, ``rate`` and ``floor`` at each α of the grid.
    """

    settings: DetectorSettings
    detector: ConformalHCDR
    states: list[str]
    state_sizes: dict[str, list[int]]
    gen_scores: npt.NDArray[np.float64]
    gen_p: npt.NDArray[np.float64]
    gen_flagged: npt.NDArray[np.bool_]
    gen_nearest: npt.NDArray[np.int64]
    prompts: list[str]
    test_p: npt.NDArray[np.float64]
    test_flagged: npt.NDArray[np.bool_]
    test_labels: npt.NDArray[np.int64]
    rate: Proportion
    floor: Proportion
    excess_p_value: float
    per_prompt: list[dict[str, Any]]
    curve: dict[str, list[float]]
    parts: dict[str, npt.NDArray[np.intp]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The headline JSON fields (strict JSON: every float is finite)."""
        s = self.settings
        return {
            "rate": self.rate.rate,
            "rate_ci": list(self.rate.ci),
            "ci_method": CI_METHOD,
            "ci_level": 0.95,
            "n_generated": self.rate.n,
            "n_flagged": self.rate.k,
            "floor": self.floor.rate,
            "floor_ci": list(self.floor.ci),
            "n_test": self.floor.n,
            "n_test_flagged": self.floor.k,
            "excess_p_value": self.excess_p_value,
            "excess_test": EXCESS_TEST,
            "alpha": s.alpha,
            "calibration": s.calibration,
            "states": [
                {"name": n, "size": self.state_sizes["total"][i], "fit": self.state_sizes["fit"][i],
                 "calibration": self.state_sizes["calibration"][i], "test": self.state_sizes["test"][i]}
                for i, n in enumerate(self.states)
            ],
            "per_prompt": self.per_prompt,
        }


def split_reference(
    y_idx: npt.NDArray[np.intp], settings: DetectorSettings
) -> dict[str, npt.NDArray[np.intp]]:
    """Seeded stratified fit / calibration / test row indices of the reference set."""
    fit, cal, test = stratified_split(
        y_idx, (settings.fit_fraction, settings.calibration_fraction, settings.test_fraction),
        np.random.default_rng([settings.seed, 7]),
    )
    return {"fit": fit, "calibration": cal, "test": test}


def nearest_state(
    per_state_p: npt.NDArray[np.float64], scores: npt.NDArray[np.float64], medians: npt.NDArray[np.float64]
) -> npt.NDArray[np.int64]:
    """Largest :math:`p_i`; ties (e.g. far from every state) broken by ``score - median``."""
    best = per_state_p.max(axis=1, keepdims=True)
    z = np.where(per_state_p >= best, scores - medians, -np.inf)
    return np.asarray(z.argmax(axis=1), dtype=np.int64)


def _score_all(det: ConformalHCDR, X: npt.NDArray[Any]) -> tuple[Any, Any, Any]:
    """Scores, p-values and nearest state of ``X`` (chunked, so 1 M rows stay in memory)."""
    from deltahall.detectors.conformal import conformal_p_values

    n = X.shape[0]
    S = np.asarray(det.score_samples(X))
    p = np.empty(n)
    near = np.empty(n, dtype=np.int64)
    med = np.array([np.median(c) for c in det.calibration_scores_])
    step = 1 << 16
    for s in range(0, n, step):
        Pi = conformal_p_values(det.calibration_scores_, S[s : s + step])
        p[s : s + step] = Pi.max(axis=1)
        near[s : s + step] = nearest_state(Pi, S[s : s + step], med)
    return S, p, near


def _check_dims(ref: npt.NDArray[Any], gen: npt.NDArray[Any]) -> None:
    if gen.ndim != 2 or gen.shape[0] == 0:
        raise ValueError(f"`generated` must contain at least one sample (shape (n>=1, d)); got shape {gen.shape}.")
    if gen.shape[1] != ref.shape[1]:
        raise ValueError(
            f"`generated` embeddings must have the reference's dimension {ref.shape[1]}; got {gen.shape[1]} "
            "(were both embedded with the same embedder?)."
        )


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

    Returns
    -------
    Measurement

    Raises
    ------
    ValueError
        One state; mismatched dimensions; an empty generated set; a state with too few
        calibration samples for α (:math:`m_i + 1 < 1/\\alpha`).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack([rng.normal(-5, 1, (200, 2)), rng.normal(5, 1, (200, 2))])
    >>> y = np.repeat(["a", "b"], 200)
    >>> gen = np.vstack([rng.normal(-5, 1, (50, 2)), np.zeros((50, 2))])
    >>> m = measure_embeddings(X, y, gen, settings=DetectorSettings(pca_dim=None, normalize=False, n_components=1))
    >>> 0.45 < m.rate.rate < 0.65, m.excess_p_value < 1e-6
    (True, True)
    """
    s = settings or DetectorSettings()
    X = ref_X if isinstance(ref_X, np.ndarray) else np.asarray(ref_X)
    G = gen_X if isinstance(gen_X, np.ndarray) else np.asarray(gen_X)
    if X.ndim != 2:
        raise ValueError(f"`reference` embeddings must be 2-dimensional (n, d); got shape {X.shape}.")
    _check_dims(X, G)
    labels = np.asarray(ref_y).ravel()
    if labels.shape[0] != X.shape[0]:
        raise ValueError(f"`reference_labels` must have one label per reference row; got {labels.shape[0]} for {X.shape[0]}.")
    classes, y_idx = np.unique(labels, return_inverse=True)
    if classes.size < 2:
        raise ValueError(
            f"the reference must contain at least two latent states; got one: {[str(c) for c in classes]}."
        )
    n_prompts = [""] * G.shape[0] if prompts is None else list(prompts)
    if len(n_prompts) != G.shape[0]:
        raise ValueError(f"`prompts` must have one entry per generated row; got {len(n_prompts)} for {G.shape[0]}.")
    parts = split_reference(y_idx, s)
    sizes = {k: np.bincount(y_idx[v], minlength=classes.size).tolist() for k, v in parts.items()}
    sizes["total"] = np.bincount(y_idx, minlength=classes.size).tolist()
    det = ConformalHCDR(
        alpha=s.alpha, calibration=s.calibration,  # type: ignore[arg-type]
        pca_dim=None if s.pca_dim is None else min(s.pca_dim, X.shape[1], parts["fit"].size - 1),
        n_components=s.n_components, covariance_type=s.covariance_type,  # type: ignore[arg-type]
        normalize=s.normalize, random_state=s.seed,
    )
    det.check_split_sizes(classes, sizes["fit"], sizes["calibration"], sizes["total"])
    X_fit = np.asarray(X[parts["fit"]], dtype=np.float64)
    X_cal = np.asarray(X[parts["calibration"]], dtype=np.float64)
    X_test = np.asarray(X[parts["test"]], dtype=np.float64)
    det.fit_split(X_fit, y_idx[parts["fit"]], X_cal, y_idx[parts["calibration"]])
    S_gen, p_gen, near = _score_all(det, G)
    S_test = det.score_samples(X_test)
    p_test = det.p_values_from_scores(S_test)
    flag_gen = det.flagged_from_scores(S_gen, p_gen)
    flag_test = det.flagged_from_scores(S_test, p_test)
    rate = proportion(int(flag_gen.sum()), int(flag_gen.size))
    if flag_test.size == 0:
        raise ValueError("the reference's test part is empty; add reference samples or raise `test_fraction`.")
    floor = proportion(int(flag_test.sum()), int(flag_test.size))
    excess = excess_test(rate.k, rate.n, floor.k, floor.n)
    per_prompt = _per_prompt(det, G, n_prompts, flag_gen)
    curve = _curve(det, S_gen, p_gen, S_test, p_test)
    logger.info("rate %.4f [%.4f, %.4f], floor %.4f, excess p %.3g", rate.rate, *rate.ci, floor.rate, excess)
    return Measurement(
        settings=s, detector=det, states=[str(c) for c in classes], state_sizes=sizes,
        gen_scores=S_gen, gen_p=p_gen, gen_flagged=flag_gen, gen_nearest=near, prompts=n_prompts,
        test_p=p_test, test_flagged=flag_test, test_labels=y_idx[parts["test"]].astype(np.int64),
        rate=rate, floor=floor, excess_p_value=excess, per_prompt=per_prompt, curve=curve, parts=parts,
    )


def prompt_codes(prompts: list[str]) -> tuple[list[str], npt.NDArray[np.int64]]:
    """Distinct prompts in first-seen order and each row's index into them."""
    index: dict[str, int] = {}
    codes = np.fromiter((index.setdefault(p, len(index)) for p in prompts), dtype=np.int64, count=len(prompts))
    return list(index), codes


def _group_means(G: npt.NDArray[Any], codes: npt.NDArray[np.int64], n_groups: int) -> npt.NDArray[np.float64]:
    """Mean row of each group, chunk by chunk (a sparse one-hot product; no copy of ``G``)."""
    from scipy import sparse

    sums = np.zeros((n_groups, G.shape[1]))
    step = 1 << 16
    for s in range(0, G.shape[0], step):
        c = codes[s : s + step]
        onehot = sparse.csr_matrix((np.ones(c.size), (c, np.arange(c.size))), shape=(n_groups, c.size))
        sums += onehot @ np.asarray(G[s : s + step], dtype=np.float64)
    counts = np.bincount(codes, minlength=n_groups)
    return np.asarray(sums / np.maximum(counts, 1)[:, None])


def _per_prompt(det: ConformalHCDR, G: npt.NDArray[Any], prompts: list[str], flagged: npt.NDArray[np.bool_]) -> list[dict[str, Any]]:
    names, codes = prompt_codes(prompts)
    n = np.bincount(codes, minlength=len(names))
    k = np.bincount(codes, weights=flagged.astype(np.float64), minlength=len(names)).round().astype(np.int64)
    means = _group_means(G, codes, len(names))
    S = det.score_samples(means)
    p_mean = det.p_values_from_scores(S)
    inside = ~det.flagged_from_scores(S, p_mean)
    out = []
    for j, pr in enumerate(names):
        est = proportion(int(k[j]), int(n[j]))
        out.append({"prompt": pr, "n": est.n, "n_flagged": est.k, "rate": est.rate, "rate_ci": list(est.ci),
                    "mean_embedding_inside": bool(inside[j]), "mean_embedding_p_value": float(p_mean[j])})
    return out


def _curve(det: ConformalHCDR, S_gen: Any, p_gen: Any, S_test: Any, p_test: Any) -> dict[str, list[float]]:
    alphas = list(ALPHA_GRID)
    if det.calibration == "conformal":
        gs, ts = np.sort(p_gen), np.sort(p_test)
        rate = (np.searchsorted(gs, alphas, side="right") / max(gs.size, 1)).tolist()
        floor = (np.searchsorted(ts, alphas, side="right") / max(ts.size, 1)).tolist()
    else:
        rate = [float(det.flagged_from_scores(S_gen, alpha=a).mean()) for a in alphas]
        floor = [float(det.flagged_from_scores(S_test, alpha=a).mean()) for a in alphas]
    return {"alphas": alphas, "rate": [float(v) for v in rate], "floor": [float(v) for v in floor]}


def required_per_state(alpha: float, calibration_fraction: float) -> int:
    """Smallest state size whose calibration part satisfies :math:`m + 1 \\ge 1/\\alpha`."""
    need = math.ceil(1.0 / alpha - 1.0 - 1e-9)
    return math.ceil(need / calibration_fraction)
