"""Latent-state discovery: a BIC-chosen Gaussian mixture over unlabelled real embeddings.

The paper's δ-hallucination is defined against latent states :math:`Z_i`
(Definition 4.2); the HCDR of Section 7.3 needs each real sample's state. When the
reference set has no labels, :func:`discover_states` estimates them: the embeddings
are L2-normalised (optional), reduced with PCA and z-scored, a Gaussian mixture is
fitted for every number of components ``k = 1, ..., max_states``, the ``k`` with the
lowest BIC is kept and each sample is assigned to its most probable component. This is
an *estimate* of the latent variable, not the latent variable: the measured rate is a
rate relative to the discovered states.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from deltahall._validation import check_int

logger = logging.getLogger(__name__)

__all__ = ["StateDiscovery", "discover_states"]


@dataclass(frozen=True)
class StateDiscovery:
    """What :func:`discover_states` found.

    Attributes
    ----------
    labels : ndarray of int, shape (n,)
        Discovered state (0..n_states-1) of each sample, numbered by decreasing size.
    n_states : int
    bic : dict
        BIC of each candidate number of states.
    sizes : list of int
    representatives : list of list of int
        Per state, row indices of its most typical samples (highest posterior
        log-density), most typical first.
    one_state_preferred : bool
        BIC preferred a single state; ``n_states`` is then the best ``k >= 2``.
    """

    labels: npt.NDArray[np.int64]
    n_states: int
    bic: dict[int, float]
    sizes: list[int]
    representatives: list[list[int]]
    one_state_preferred: bool


def discover_states(
    X: npt.ArrayLike,
    max_states: int = 10,
    *,
    pca_dim: int | None = 20,
    normalize: bool = True,
    covariance_type: str = "full",
    n_representatives: int = 5,
    max_fit_rows: int = 20000,
    random_state: Any = None,
) -> StateDiscovery:
    """Estimate latent states of unlabelled real embeddings with a BIC-chosen Gaussian mixture.

    Parameters
    ----------
    X : array-like of shape (n, d)
    max_states : int, default=10
        Largest number of states tried (at least 2).
    pca_dim : int or None, default=20
        PCA dimension before the mixture (capped at ``min(n - 1, d)``).
    normalize : bool, default=True
        L2-normalise first.
    covariance_type : str, default="full"
    n_representatives : int, default=5
    max_fit_rows : int, default=20000
        Mixtures are fitted on at most this many rows (a seeded subsample); all rows are assigned.
    random_state : int, RandomState or None

    Returns
    -------
    StateDiscovery

    Raises
    ------
    ValueError
        Too few rows for ``max_states`` or non-finite values.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack([rng.normal(-5, 1, (100, 2)), rng.normal(5, 1, (100, 2))])
    >>> discover_states(X, 4, pca_dim=None, normalize=False, random_state=0).n_states
    2
    """
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture
    from sklearn.utils import check_random_state

    from deltahall._validation import check_finite_array

    max_states = check_int(max_states, "max_states", low=2)
    A = check_finite_array(X, "X", ndim=2)
    n, d = A.shape
    if n < 2 * max_states:
        raise ValueError(
            f"`X` must have at least 2 * `max_states` = {2 * max_states} rows to discover states; got {n}."
        )
    rs = check_random_state(random_state)
    if normalize:
        norms = np.linalg.norm(A, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        A = A / norms
    fit_rows = (
        np.arange(n) if n <= max_fit_rows else np.sort(rs.choice(n, max_fit_rows, replace=False))
    )
    if pca_dim is not None and pca_dim < d:
        k = min(int(pca_dim), fit_rows.size - 1, d)
        pca = PCA(n_components=k, random_state=rs.randint(2**31 - 1)).fit(A[fit_rows])
        Z = pca.transform(A)
    else:
        Z = A
    sd = Z[fit_rows].std(axis=0)
    sd[sd < 1e-12] = 1.0
    Z = (Z - Z[fit_rows].mean(axis=0)) / sd
    bic: dict[int, float] = {}
    models: dict[int, Any] = {}
    for k in range(1, max_states + 1):
        gm = GaussianMixture(
            n_components=k,
            covariance_type=covariance_type,
            n_init=2,
            reg_covar=1e-4,
            random_state=rs.randint(2**31 - 1),
        ).fit(Z[fit_rows])
        bic[k] = float(gm.bic(Z[fit_rows]))
        models[k] = gm
    best = min(range(2, max_states + 1), key=lambda k: bic[k])
    one = bic[1] < bic[best]
    if one:
        logger.warning(
            "BIC prefers a single state (BIC %.1f vs %.1f for k=%d); using k=%d.",
            bic[1],
            bic[best],
            best,
            best,
        )
    gm = models[best]
    raw = gm.predict(Z)
    # Number states by decreasing size (deterministic names state-0, state-1, ...).
    counts = np.bincount(raw, minlength=best)
    order = np.argsort(-counts, kind="stable")
    remap = np.empty(best, dtype=np.int64)
    remap[order] = np.arange(best)
    labels = remap[raw]
    logp = gm.score_samples(Z)
    reps: list[list[int]] = []
    for s in range(best):
        rows = np.flatnonzero(labels == s)
        reps.append(rows[np.argsort(-logp[rows], kind="stable")][:n_representatives].tolist())
    sizes = np.bincount(labels, minlength=best).tolist()
    return StateDiscovery(
        labels=labels,
        n_states=best,
        bic=bic,
        sizes=sizes,
        representatives=reps,
        one_state_preferred=one,
    )
