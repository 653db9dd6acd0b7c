"""Correlation between training loss and conditional probability over epochs (Figure 3's claim).

Pearson and Spearman coefficients with a two-sided permutation p-value. For data pooled over
several runs (``groups``), the coefficients are computed on values centred within each run
(Spearman: on ranks taken within each run, then centred) and the permutation shuffles within
each run, so both the statistic and the null hypothesis are about the association *within* a
run; level differences between runs (one round's data noisier than another's) do not count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.stats import rankdata


@dataclass(frozen=True)
class CorrelationResult:
    """Pearson r and Spearman rho with permutation p-values (NaN when a series is constant)."""

    pearson: float
    pearson_p: float
    spearman: float
    spearman_p: float
    n: int
    n_permutations: int


def _rows_pearson(
    x: npt.NDArray[np.float64], ys: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    xc = x - x.mean()
    yc = ys - ys.mean(axis=1, keepdims=True)
    den = np.sqrt((xc**2).sum()) * np.sqrt((yc**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (yc @ xc) / den


def _permuted(
    y: npt.NDArray[np.float64], groups: npt.NDArray[np.int64], n_perm: int, rng: np.random.Generator
) -> npt.NDArray[np.float64]:
    out = np.empty((n_perm, y.size))
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        keys = rng.random((n_perm, idx.size))
        out[:, idx] = y[idx][np.argsort(keys, axis=1)]
    return out


def permutation_correlation(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    groups: npt.ArrayLike | None = None,
    n_permutations: int = 9999,
    rng: np.random.Generator | int | None = None,
) -> CorrelationResult:
    """Pearson and Spearman correlation of ``x`` and ``y`` with permutation p-values.

    Parameters
    ----------
    x, y : array_like, shape (n,)
        E.g. training loss and average conditional probability, one value per epoch.
    groups : array_like of int, shape (n,), optional
        Run id of each point; ``y`` is permuted within runs only.
    n_permutations : int
    rng : numpy Generator or seed

    Returns
    -------
    CorrelationResult
        p = (1 + #{|r_perm| >= |r_obs|}) / (1 + n_permutations), two-sided. Coefficients and
        p-values are NaN when ``x`` or ``y`` is constant within every run (no correlation is
        defined). Without ``groups`` these are the ordinary Pearson and Spearman coefficients.

    Examples
    --------
    >>> r = permutation_correlation([1, 2, 3, 4, 5], [2, 4, 6, 8, 11], rng=0, n_permutations=999)
    >>> round(r.spearman, 3), r.spearman_p < 0.05
    (1.0, True)
    """
    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    if xa.shape != ya.shape or xa.ndim != 1:
        raise ValueError(
            f"`x` and `y` must be 1-d of one length; got shapes {xa.shape} and {ya.shape}."
        )
    if not (np.isfinite(xa).all() and np.isfinite(ya).all()):
        raise ValueError("`x` and `y` must be finite.")
    if n_permutations < 1:
        raise ValueError(f"`n_permutations` must be >= 1; got {n_permutations}.")
    g = np.zeros(xa.size, dtype=np.int64) if groups is None else np.asarray(groups).astype(np.int64)
    if g.shape != xa.shape:
        raise ValueError(f"`groups` must have the shape of `x`; got {g.shape} and {xa.shape}.")
    nan = float("nan")
    xr, yr = np.empty_like(xa), np.empty_like(ya)
    xc, yc = xa.copy(), ya.copy()
    for gv in np.unique(g):
        m = g == gv
        xr[m], yr[m] = rankdata(xa[m]), rankdata(ya[m])
        xc[m] -= xa[m].mean()
        yc[m] -= ya[m].mean()
        xr[m] -= xr[m].mean()
        yr[m] -= yr[m].mean()
    if xa.size < 3 or np.ptp(xc) < 1e-15 or np.ptp(yc) < 1e-15:
        return CorrelationResult(nan, nan, nan, nan, int(xa.size), n_permutations)
    gen = np.random.default_rng(rng)
    out = []
    for xs, ys in ((xc, yc), (xr, yr)):
        r = float(_rows_pearson(xs, ys[None, :])[0])
        perm = _rows_pearson(xs, _permuted(ys, g, n_permutations, gen))
        p = (1 + int(np.sum(np.abs(perm) >= abs(r) - 1e-12))) / (1 + n_permutations)
        out.extend([r, float(p)])
    return CorrelationResult(out[0], out[1], out[2], out[3], int(xa.size), n_permutations)
