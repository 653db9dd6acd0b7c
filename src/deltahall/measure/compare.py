"""The HCDR side by side with what a user would pick instead, on data whose truth is known.

Every method is fitted on the same fit part, in the same standardised space (the HCDR's
L2-normalisation / PCA / z-scoring), and thresholded on the same calibration part so that
it flags about α of held-out real samples (:mod:`deltahall.detectors.baselines`). Two
known-truth data sets:

- :func:`synthetic_known_truth`: isotropic Gaussian states, where the true HCDR at level
  α is the union of balls :math:`\\lVert z - \\mu_i \\rVert^2 \\le \\chi^2_{d, 1-\\alpha}`;
  evaluated on fresh real draws and on blends (midpoints of two states' draws);
- :func:`digits_known_truth`: scikit-learn's 8x8 digits (10 states, pixels as the
  embedding); hallucinations are pixel averages of two digits of different states —
  the paper's averaging failure — and held-out real digits are not.

Precision and recall are of the positive class "outside".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from deltahall.detectors.baselines import BASELINES, fit_baseline
from deltahall.measure.calibration import DetectorSettings, Measurement
from deltahall.stats import detection_scores, proportion

logger = logging.getLogger(__name__)

__all__ = [
    "KnownTruth",
    "baselines_on_measurement",
    "compare_methods",
    "digits_known_truth",
    "synthetic_known_truth",
]


@dataclass(frozen=True)
class KnownTruth:
    """A reference set and an evaluation set whose "outside" labels are known."""

    name: str
    ref_X: npt.NDArray[np.float64]
    ref_y: npt.NDArray[Any]
    eval_X: npt.NDArray[np.float64]
    truth_outside: npt.NDArray[np.bool_]
    settings: DetectorSettings
    description: str


def synthetic_known_truth(
    rng: Any = 0,
    *,
    n_states: int = 3,
    dim: int = 6,
    n_per_state: int = 400,
    n_eval: int = 600,
    separation: float = 8.0,
    alpha: float = 0.1,
) -> KnownTruth:
    """Isotropic Gaussian states; truth = outside the true level-α HCDR (balls of the χ² quantile).

    The truth is :func:`deltahall.detectors.diagnostics.true_hcdr_membership` (the theory's
    Gaussian HDR), the one place it is computed.
    """
    from deltahall.detectors.diagnostics import true_hcdr_membership

    rng = np.random.default_rng(rng)
    means = rng.normal(size=(n_states, dim))
    means *= (
        separation
        / np.linalg.norm(means[:, None] - means[None], axis=2)[np.triu_indices(n_states, 1)].min()
    )
    y = np.repeat(np.arange(n_states), n_per_state)
    X = means[y] + rng.normal(size=(y.size, dim))
    half = n_eval // 2
    ye = rng.integers(0, n_states, half)
    real = means[ye] + rng.normal(size=(half, dim))
    a = rng.integers(0, n_states, n_eval - half)
    b = (a + rng.integers(1, n_states, a.size)) % n_states
    blends = 0.5 * (means[a] + rng.normal(size=(a.size, dim))) + 0.5 * (
        means[b] + rng.normal(size=(a.size, dim))
    )
    E = np.vstack([real, blends])
    covs = np.broadcast_to(np.eye(dim), (n_states, dim, dim))
    truth = np.asarray(~true_hcdr_membership(E, means, covs, 1 - alpha).any(axis=1), dtype=bool)
    return KnownTruth(
        name="synthetic",
        ref_X=X,
        ref_y=y,
        eval_X=E,
        truth_outside=truth,
        settings=DetectorSettings(
            alpha=alpha, pca_dim=None, normalize=False, n_components=1, covariance_type="full"
        ),
        description=(
            f"{n_states} Gaussian states N(mu_i, I) in {dim} dimensions (min mean distance {separation:g}), "
            f"{n_per_state} reference samples each; evaluation: {half} fresh real draws and {n_eval - half} "
            f"blends (midpoints of two states' draws); truth = outside the true level-{alpha:g} HCDR."
        ),
    )


def digits_known_truth(
    rng: Any = 0, *, alpha: float = 0.1, eval_fraction: float = 0.25, embedder: Any = None
) -> KnownTruth:
    """sklearn digits: held-out real digits (inside) vs pixel averages of two different digits (outside).

    Parameters
    ----------
    embedder : Embedder, optional
        Embed the (blended) 8x8 images with it, e.g. ``load_embedder("@digits-cnn")``; the
        digits that trained ``@digits-cnn`` are then left out. Default: the 64 pixels.
    """
    from sklearn.datasets import load_digits

    rng = np.random.default_rng(rng)
    d = load_digits()
    images = d.images.astype(np.float32) / 16.0
    y = d.target.astype(np.int64)
    space = "64 pixels as the embedding"
    if embedder is not None:
        from deltahall.models.digits_cnn import ALIAS_SEED, embedder_split

        if getattr(embedder, "name", "") == "@digits-cnn":
            keep = ~embedder_split(y, ALIAS_SEED)
            images, y = images[keep], y[keep]
        space = (
            f"{getattr(embedder, 'name', 'embedder')} embeddings (digits that trained it left out)"
        )
    ev = np.zeros(y.size, dtype=bool)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        ev[idx[: int(eval_fraction * idx.size)]] = True
    real = images[ev]
    ye = y[ev]
    i = rng.integers(0, real.shape[0], real.shape[0])
    j = rng.integers(0, real.shape[0], real.shape[0])
    ok = ye[i] != ye[j]
    blended = 0.5 * (real[i[ok]] + real[j[ok]])
    E = np.concatenate([real, blended])
    R = images[~ev]
    if embedder is None:
        E, R = E.reshape(E.shape[0], -1), R.reshape(R.shape[0], -1)
    else:
        E, R = embedder.embed(E), embedder.embed(R)
    truth = np.concatenate([np.zeros(real.shape[0], bool), np.ones(blended.shape[0], bool)])
    return KnownTruth(
        name="digits" if embedder is None else f"digits ({getattr(embedder, 'name', 'embedder')})",
        ref_X=np.asarray(R, dtype=np.float64),
        ref_y=y[~ev],
        eval_X=np.asarray(E, dtype=np.float64),
        truth_outside=truth,
        settings=DetectorSettings(
            alpha=alpha, pca_dim=10, normalize=True, n_components=1, covariance_type="full"
        ),
        description=(
            f"scikit-learn digits, 10 states, {space}; reference {int((~ev).sum())} digits; "
            f"evaluation: {real.shape[0]} held-out real digits and {blended.shape[0]} pixel averages of two "
            "digits of different states (the paper's averaging failure)."
        ),
    )


def _standardised(m: Measurement, X: Any) -> npt.NDArray[np.float64]:
    return np.asarray(m.scorer.transform(np.asarray(X, dtype=np.float64)))


def _fitted_baselines(
    m: Measurement, ref_X: Any, labels: Any, methods: tuple[str, ...]
) -> tuple[dict[str, Any], Any]:
    classes, y_idx = np.unique(np.asarray(labels), return_inverse=True)
    parts = m.parts
    Z = _standardised(m, ref_X)
    out = {}
    for name in methods:
        out[name] = fit_baseline(
            name,
            Z[parts["fit"]],
            y_idx[parts["fit"]],
            Z[parts["calibration"]],
            alpha=m.settings.alpha,
            random_state=m.settings.seed,
        )
    return out, Z[parts["test"]]


def compare_methods(
    data: KnownTruth, *, methods: tuple[str, ...] = BASELINES
) -> list[dict[str, Any]]:
    """Precision / recall of "outside" and the false-flag rate on held-out real, per method.

    Returns
    -------
    list of dict
        One row per method: ``method``, ``false_flag_rate`` (held-out real test part of the
        reference), ``flagged`` (share of the evaluation set), ``precision``, ``recall``.
    """
    from deltahall.measure.calibration import measure_embeddings

    rows = []
    for calibration in ("conformal", "percentile"):
        s = DetectorSettings(**{**data.settings.__dict__, "calibration": calibration})
        m = measure_embeddings(data.ref_X, data.ref_y, data.eval_X, settings=s)
        d = detection_scores(m.gen_flagged, data.truth_outside)
        p, r = d.precision, d.recall
        rows.append(
            {
                "method": f"HCDR ({calibration})",
                "false_flag_rate": m.floor.rate,
                "flagged": m.rate.rate,
                "precision": p,
                "recall": r,
            }
        )
        if calibration == "conformal":
            base, Z_test = _fitted_baselines(m, data.ref_X, data.ref_y, methods)
            Z_eval = _standardised(m, data.eval_X)
            for name, b in base.items():
                f = b.flagged(Z_eval)
                d = detection_scores(f, data.truth_outside)
                p, r = d.precision, d.recall
                rows.append(
                    {
                        "method": name,
                        "false_flag_rate": float(b.flagged(Z_test).mean()),
                        "flagged": float(f.mean()),
                        "precision": p,
                        "recall": r,
                    }
                )
    return rows


def baselines_on_measurement(
    m: Measurement, ref_X: Any, gen_X: Any, labels: Any, *, methods: tuple[str, ...] = BASELINES
) -> list[dict[str, Any]]:
    """Each baseline's generated rate and floor on the measurement's own split (no truth needed)."""
    base, Z_test = _fitted_baselines(m, ref_X, labels, methods)
    Z_gen = _standardised(m, gen_X)
    rows = [
        {
            "method": f"HCDR ({m.settings.calibration})",
            "rate": m.rate.rate,
            "rate_ci": list(m.rate.ci),
            "floor": m.floor.rate,
            "floor_ci": list(m.floor.ci),
        }
    ]
    for name, b in base.items():
        g, t = b.flagged(Z_gen), b.flagged(Z_test)
        rg, rt = proportion(int(g.sum()), int(g.size)), proportion(int(t.sum()), int(t.size))
        rows.append(
            {
                "method": name,
                "rate": rg.rate,
                "rate_ci": list(rg.ci),
                "floor": rt.rate,
                "floor_ci": list(rt.ci),
            }
        )
    return rows
