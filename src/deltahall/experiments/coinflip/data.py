"""Dataset generation for the coin-flip experiment (paper Section 7.1).

One ``numpy.random.Generator`` per run (per round of the sweep), derived from the run's seed:
the paper's five rounds then differ, unlike the authors' code, which fixed the seed inside
the generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from deltahall.experiments.coinflip.config import CoinFlipConfig
from deltahall.experiments.coinflip.truth import (
    bayes_estimate,
    bayes_variance,
    head_probabilities,
    poisson_binomial_pmf,
)

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def derive_seeds(seed: int) -> tuple[np.random.Generator, int, int]:
    """Independent streams from one run seed: (data rng, torch init seed, torch order seed)."""
    data_ss, init_ss, order_ss = np.random.SeedSequence(seed).spawn(3)
    init = int(init_ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
    order = int(order_ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
    return np.random.default_rng(data_ss), init, order


@dataclass(frozen=True)
class CoinFlipData:
    """Samples of one run plus the exact truth of every distinct coin set in them.

    Attributes
    ----------
    train_labels, val_labels : ndarray of int64, shapes (n_train, N), (n_val, N)
        Chosen coin labels, sorted within each row (a coin set has no order).
    train_y, val_y : ndarray of int64
        Number of heads.
    sets : ndarray of int64, shape (U, N)
        The distinct coin sets met in train or validation (at most C(2N, N)).
    train_set, val_set : ndarray of int64
        Index into ``sets`` of every sample.
    pmf : ndarray, shape (U, N + 1)
        Exact P(Y = k | X) of each distinct set (with the *scoring* probabilities).
    mean, var : ndarray, shape (U,)
        E[Y | X] and Var(Y | X) of each distinct set (true probabilities).
    """

    train_labels: IntArray
    train_y: IntArray
    val_labels: IntArray
    val_y: IntArray
    sets: IntArray
    train_set: IntArray
    val_set: IntArray
    pmf: FloatArray
    mean: FloatArray
    var: FloatArray


def sample_coin_sets(n: int, size: int, rng: np.random.Generator) -> IntArray:
    """``size`` uniformly random N-subsets of the 2N coin labels, each row sorted."""
    keys = rng.random((size, 2 * n))
    return np.sort(np.argsort(keys, axis=1)[:, :n], axis=1).astype(np.int64)


def flip(labels: IntArray, probs: FloatArray, rng: np.random.Generator) -> IntArray:
    """Number of heads when flipping the coins ``labels`` (B, N) once each."""
    return (rng.random(labels.shape) < probs[labels]).sum(axis=1).astype(np.int64)


def make_dataset(config: CoinFlipConfig, rng: np.random.Generator) -> CoinFlipData:
    """Draw ``config.m`` samples and split them into train and validation.

    Data always use head probabilities (i+1)/(2N). With ``"scoring"`` in
    ``config.authors_bugs`` the pmf used for scoring takes i/(2N), as the authors' code does.
    """
    probs = head_probabilities(config.n)
    labels = sample_coin_sets(config.n, config.m, rng)
    y = flip(labels, probs, rng)
    n_tr = config.n_train
    sets, inverse = np.unique(labels, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1).astype(np.int64)
    score_probs = head_probabilities(config.n, authors_scoring="scoring" in config.authors_bugs)
    return CoinFlipData(
        train_labels=labels[:n_tr],
        train_y=y[:n_tr],
        val_labels=labels[n_tr:],
        val_y=y[n_tr:],
        sets=sets.astype(np.int64),
        train_set=inverse[:n_tr],
        val_set=inverse[n_tr:],
        pmf=poisson_binomial_pmf(score_probs[sets]),
        mean=bayes_estimate(probs[sets]),
        var=bayes_variance(probs[sets]),
    )
