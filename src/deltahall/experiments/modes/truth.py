"""The known target: the peer's Gaussian mixtures, their exact densities, and Definition 4.2.

The latent states :math:`Z_k` are the mixture's components, each an isotropic Gaussian
:math:`N(\\mu_k, \\sigma^2 I)` in the data's own units (2-D: the peer's ``Gaussian25`` grid, means
:math:`2(i, j)`, :math:`i, j \\in \\{-2, \\dots, 2\\}`, :math:`\\sigma = 0.05`; 1-D: means 1, 2, 3,
:math:`\\sigma = 0.05`). A point :math:`x` δ-hallucinates (Definition 4.2) iff

.. math:: \\max_k \\log f(x \\mid Z_k) \\le \\log δ .

The densities come from :class:`deltahall.theory.LatentMixture` (exact Gaussian log-densities).
The model is trained on the points divided by :func:`model_scale` (the peer's standardisation in
2-D; none in 1-D); everything written to disk is in the data's own units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from deltahall.experiments.modes.config import COMPONENT_STD, data_dim, n_components
from deltahall.theory.mixtures import LatentMixture

FloatArray = npt.NDArray[np.float64]


def component_means(data: str) -> FloatArray:
    """Means of the components, shape ``(N, d)``, in the data's own units."""
    if data == "2d":
        return np.array(
            [(2.0 * i, 2.0 * j) for i in range(-2, 3) for j in range(-2, 3)], dtype=np.float64
        )
    return np.array([[1.0], [2.0], [3.0]], dtype=np.float64)


def model_scale(data: str) -> float:
    """The factor the model's inputs are divided by (the peer's: the 2-D mixture's std per axis)."""
    if data == "2d":
        return math.sqrt(COMPONENT_STD**2 + 2.0**2 * 2.0)
    return 1.0


def mixture(data: str) -> LatentMixture:
    """The target as a :class:`~deltahall.theory.LatentMixture` with equal weights."""
    means = component_means(data)
    n, d = n_components(data), data_dim(data)
    return LatentMixture.gaussian(np.full(n, 1.0 / n), means, COMPONENT_STD**2 * np.eye(d))


def draw(data: str, n: int, rng: np.random.Generator) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    """``n`` points with their components, balanced like the peer's (component ``i mod N``), shuffled."""
    means = component_means(data)
    k = np.arange(n) % means.shape[0]
    rng.shuffle(k)
    x = means[k] + COMPONENT_STD * rng.standard_normal((n, means.shape[1]))
    return x, k.astype(np.int64)


@dataclass(frozen=True)
class Truth:
    """Definition 4.2 evaluated exactly on a set of points.

    Attributes
    ----------
    max_log_density : ndarray (n,)
        :math:`\\max_k \\log f(x \\mid Z_k)`.
    nearest : ndarray (n,)
        The component attaining it.
    hallucinated : ndarray of bool (n,)
        ``max_log_density <= log_delta``.
    """

    max_log_density: FloatArray
    nearest: npt.NDArray[np.int64]
    hallucinated: npt.NDArray[np.bool_]


def evaluate(data: str, x: FloatArray, log_delta: float) -> Truth:
    """The exact truth for points ``x`` (``(n, d)``, data units) at :math:`\\log δ`."""
    logf = mixture(data).log_component_pdf(x)
    m = logf.max(axis=1)
    return Truth(
        max_log_density=m, nearest=logf.argmax(axis=1).astype(np.int64), hallucinated=m <= log_delta
    )


def coverage(data: str, truth: Truth, *, share: float) -> tuple[int, float, FloatArray]:
    """Mode coverage and total variation of the component shares among in-support points.

    Returns
    -------
    covered : int
        Components holding at least ``share / N`` of the in-support points.
    tv : float
        Total variation distance of the in-support component shares from uniform (1 when no
        point is in support).
    shares : ndarray (N,)
    """
    n = n_components(data)
    inside = truth.nearest[~truth.hallucinated]
    if inside.size == 0:
        return 0, 1.0, np.zeros(n)
    shares = np.bincount(inside, minlength=n) / inside.size
    return int(np.sum(shares >= share / n)), float(0.5 * np.abs(shares - 1.0 / n).sum()), shares
