"""Magnitude-safe L2 normalisation, shared by every scorer in :mod:`deltahall.detectors`.

``x / |x|`` overflows for rows of magnitude >= ~1e154 (float32: ~1e19) and underflows to
0/0 for tiny ones; :func:`safe_l2_normalize` rescales such rows by their largest |entry|
first, which leaves the direction unchanged, so normalised scores do not depend on the
magnitude of the input (tested from 1e-300 to 1e300).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["safe_l2_normalize", "safe_sq_norms"]

# Squared row norms inside these bounds are computed and used as they are; rows outside them
# (overflow, underflow, subnormals, zero) are first divided by their largest |entry| in float64,
# which leaves x / |x| unchanged in exact arithmetic. The bounds leave room for the z-score
# factors (up to ~1e14) that multiply the projections afterwards.
_SAFE_SQ_NORM = {
    np.dtype(np.float64): (1e-100, 1e100),
    np.dtype(np.float32): (1e-30, 1e30),
}


def safe_sq_norms(
    x: npt.NDArray[Any],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.intp], npt.NDArray[np.float64]]:
    """Squared row norms that cannot overflow or underflow, for any finite magnitude.

    Parameters
    ----------
    x : ndarray of shape (n, d), float32 or float64

    Returns
    -------
    r2 : ndarray of shape (n,), float64
        Squared norm of each row, except that a row listed in ``rows`` has the squared
        norm of its rescaled copy in ``scaled`` (0 for an all-zero row).
    rows : ndarray of int
        Rows whose squared norm falls outside the safe range of ``x.dtype``.
    scaled : ndarray of shape (len(rows), d), float64
        Those rows divided by their largest absolute entry (all-zero rows stay zero).
        Callers use them in place of ``x[rows]``: ``scaled / |scaled| == x / |x|``.
    """
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        r2_raw = np.einsum("ij,ij->i", x, x)
    lo, hi = _SAFE_SQ_NORM.get(x.dtype, _SAFE_SQ_NORM[np.dtype(np.float64)])
    ok = (r2_raw > lo) & (r2_raw < hi)
    r2 = r2_raw.astype(np.float64)
    if ok.all():
        return r2, np.empty(0, dtype=np.intp), np.empty((0, x.shape[1]))
    rows = np.flatnonzero(~ok)
    sub = np.array(x[rows], dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):  # NaN/inf rows are reported by the caller
        m = np.abs(sub).max(axis=1)
        m[~(m > 0)] = 1.0
        sub /= m[:, None]
        r2[rows] = np.einsum("ij,ij->i", sub, sub)
    return r2, rows, sub


def safe_l2_normalize(x: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """``x / |x|`` row by row in float64 for any finite magnitude; all-zero rows become NaN."""
    r2, rows, sub = safe_sq_norms(x)
    u = np.array(x, dtype=np.float64)
    u[rows] = sub
    with np.errstate(divide="ignore", invalid="ignore"):
        u /= np.sqrt(r2)[:, None]
    return u
