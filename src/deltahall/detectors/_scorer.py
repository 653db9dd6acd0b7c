"""The fused scoring kernel behind :meth:`HCDRDetector.score_samples`.

For diagonal and spherical mixtures the whole pipeline (L2-normalise, PCA, z-score,
per-component Gaussian log-density) folds into two matrix products per chunk. With
``x`` a raw embedding, ``r = |x|``, ``p = x W`` (``W`` the PCA components, or the
identity without PCA) and the standardised point ``z = p s / r + b`` (``s`` the inverse
z-score scale), each component's weighted log-density is

.. math::

    \\log w_k + \\log N(z; \\mu_k, \\operatorname{diag}(\\sigma_k^2))
    = \\sum_j A_{jk} z_j^2 + B_{jk} z_j + c_k
    = \\frac{1}{r^2} (p \\odot p)\\, A' + \\frac{1}{r}\\, p\\, B' + c'

with :math:`A' = s^2 A`, :math:`B' = s (2 A b + B)` and :math:`c' = c + b^2 A + b B`
(row vectors ``b``, ``s`` broadcast over components). One log-sum-exp per state then
gives the mixture log-densities. Full and tied mixtures use the explicit transform.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from deltahall.detectors._gmm import GaussianMixtureParams, StackedMixtures

__all__ = ["FusedScorer", "diag_form", "safe_sq_norms"]

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


def diag_form(
    m: GaussianMixtureParams,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """``(A, B, c)`` with weighted log-prob ``(z*z) @ A + z @ B + c`` for diag/spherical."""
    d = m.n_features
    pc = m.precisions_cholesky
    if m.covariance_type == "diag":
        prec = pc**2
        logdet = np.log(pc).sum(1)
    elif m.covariance_type == "spherical":
        prec = np.repeat((pc**2)[:, None], d, axis=1)
        logdet = d * np.log(pc)
    else:
        raise ValueError(f"diag_form needs 'diag' or 'spherical' mixtures; got {m.covariance_type!r}.")
    A = (-0.5 * prec).T
    B = (m.means * prec).T
    c = -0.5 * (d * np.log(2 * np.pi) + (m.means**2 * prec).sum(1)) + logdet + np.log(m.weights)
    return A, B, c


class FusedScorer:
    """Score raw embedding chunks under every state's mixture, shape (n, n_states)."""

    def __init__(
        self,
        mixtures: list[GaussianMixtureParams],
        *,
        W: npt.NDArray[np.float64] | None,
        scale_inv: npt.NDArray[np.float64],
        b: npt.NDArray[np.float64],
        normalize: bool,
    ) -> None:
        self.normalize = normalize
        self.k = [m.n_components for m in mixtures]
        self.fused = {m.covariance_type for m in mixtures} <= {"diag", "spherical"}
        self.stack = StackedMixtures(mixtures)
        if not self.fused:
            return
        parts = [diag_form(m) for m in mixtures]
        A = np.hstack([p[0] for p in parts])
        B = np.hstack([p[1] for p in parts])
        c = np.concatenate([p[2] for p in parts])
        s = scale_inv[:, None]
        self.A = np.ascontiguousarray(A * s**2)
        self.B = np.ascontiguousarray((2.0 * A * b[:, None] + B) * s)
        self.c = c + (b**2) @ A + b @ B
        self.W = None if W is None else np.ascontiguousarray(W)
        self.W32 = None if W is None else np.asarray(W, dtype=np.float32)

    def _project(self, x: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        if self.W is None:
            return np.array(x, dtype=np.float64)  # a copy: callers write into it
        if x.dtype == np.float32 and self.W32 is not None:  # float32 through the dominant product: ~1e-5 in log-density
            return (x @ self.W32).astype(np.float64)
        return x @ self.W

    def weighted_log_prob(self, x: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        """Per-component weighted log-probabilities of raw rows ``x``, shape (n, sum K)."""
        p = self._project(x)
        if self.normalize:
            # Rows of extreme magnitude are rescaled first (same direction), so |x| never
            # overflows; an all-zero row gets inv_r = inf and a NaN log-density, which the
            # caller reports as an error.
            r2, rows, scaled = safe_sq_norms(x)
            if rows.size:
                p[rows] = self._project(scaled)
            with np.errstate(divide="ignore"):
                inv_r = 1.0 / np.sqrt(r2)
        q = (p * p) @ self.A
        lin = p @ self.B
        if self.normalize:
            q *= (inv_r * inv_r)[:, None]
            lin *= inv_r[:, None]
        q += lin
        q += self.c
        return q

    def scores(self, x: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        """Mixture log-densities of raw rows ``x`` under each state, shape (n, n_states)."""
        wlp = self.weighted_log_prob(x)
        n = wlp.shape[0]
        if len(set(self.k)) == 1:
            return _lse_inplace(wlp.reshape(n, len(self.k), self.k[0]))
        bounds = np.cumsum([0, *self.k])
        return np.stack(
            [_lse_inplace(wlp[:, bounds[i] : bounds[i + 1]][:, None, :])[:, 0] for i in range(len(self.k))],
            axis=1,
        )


def _lse_inplace(a: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """log-sum-exp over the last axis of a (n, S, K) array, overwriting it."""
    m = a.max(axis=-1)
    m[~np.isfinite(m)] = 0.0
    a -= m[..., None]
    np.exp(a, out=a)
    out = a.sum(axis=-1)
    np.log(out, out=out)
    out += m
    return out
