"""Input checks shared by the whole package.

Every error names the parameter, the rule and the value, e.g.
``"`delta` must be in (0, 1]; got 1.5."``. The checks raise :class:`BadInput` (a
``ValueError``) for bad values and :class:`BadType` (a ``TypeError`` and a :class:`BadInput`)
for bad types, so the command line can tell a refusal of the user's input (exit status 2)
from a bug that happens to raise ``ValueError`` deep inside a library (an internal error).
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "BadInput",
    "BadType",
    "MissingExtraError",
    "RunFailure",
    "check_delta",
    "check_output_path",
    "require",
    "check_finite_array",
    "check_int",
    "check_probability_vector",
    "check_real",
    "check_spd",
    "check_choice",
]


class BadInput(ValueError):
    """The user's input breaks a stated rule; the message names the parameter, the rule and the value.

    A ``ValueError``, so ``except ValueError`` and ``pytest.raises(ValueError)`` still catch it.
    """


class BadType(BadInput, TypeError):
    """The user's input has the wrong type: both a ``TypeError`` and a :class:`BadInput`."""


def check_real(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as a finite float inside the stated interval.

    Raises
    ------
    TypeError
        If ``value`` is not a real number (bools are refused).
    ValueError
        If ``value`` is NaN/inf or outside the interval.
    """
    if isinstance(value, bool) or not isinstance(value, (Real, np.floating, np.integer)):
        raise BadType(f"`{name}` must be a real number; got {type(value).__name__} {value!r}.")
    v = float(value)
    if not math.isfinite(v):
        raise BadInput(f"`{name}` must be finite; got {v}.")
    lo_ok = low is None or (v > low if low_open else v >= low)
    hi_ok = high is None or (v < high if high_open else v <= high)
    if not (lo_ok and hi_ok):
        lb = "-inf" if low is None else f"{low:g}"
        hb = "inf" if high is None else f"{high:g}"
        lbr = "(" if (low is None or low_open) else "["
        hbr = ")" if (high is None or high_open) else "]"
        raise BadInput(f"`{name}` must be in {lbr}{lb}, {hb}{hbr}; got {v:g}.")
    return v


def check_delta(delta: Any, name: str = "delta") -> float:
    """The hallucination tolerance δ of Definition 4.2 must lie in (0, 1]."""
    return check_real(delta, name, low=0.0, high=1.0, low_open=True)


def check_int(value: Any, name: str, *, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` as an int within ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, (Integral, np.integer)):
        raise BadType(f"`{name}` must be an integer; got {type(value).__name__} {value!r}.")
    v = int(value)
    if low is not None and v < low:
        raise BadInput(f"`{name}` must be >= {low}; got {v}.")
    if high is not None and v > high:
        raise BadInput(f"`{name}` must be <= {high}; got {v}.")
    return v


def check_choice(value: Any, name: str, choices: tuple[str, ...] | list[str]) -> str:
    """``value`` must be one of ``choices``."""
    if value not in choices:
        raise BadInput(f"`{name}` must be one of {', '.join(map(repr, choices))}; got {value!r}.")
    return str(value)


def check_finite_array(
    x: Any, name: str, *, ndim: int | None = None, dtype: Any = np.float64
) -> npt.NDArray[Any]:
    """Convert to an array, require finite entries, and (optionally) a dimension.

    The error for a non-finite entry names the first offending index
    (the row, for 2-d input).
    """
    try:
        arr = np.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise BadInput(
            f"`{name}` must be an array of {np.dtype(dtype).name} numbers; {exc}."
        ) from None
    if ndim is not None and arr.ndim != ndim:
        raise BadInput(f"`{name}` must be {ndim}-dimensional; got shape {arr.shape}.")
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = np.argwhere(bad)[0]
        where = f"row {int(idx[0])}" if arr.ndim == 2 else f"index {tuple(int(i) for i in idx)}"
        n_bad = (
            int(bad.any(axis=tuple(range(1, arr.ndim))).sum()) if arr.ndim > 1 else int(bad.sum())
        )
        raise BadInput(
            f"`{name}` must contain only finite values; found NaN/inf at {where} "
            f"({n_bad} {'rows' if arr.ndim == 2 else 'entries'} affected)."
        )
    return arr


def check_probability_vector(
    p: Any, name: str = "weights", *, atol: float = 1e-8
) -> npt.NDArray[np.float64]:
    """A 1-d vector of non-negative, finite entries that sums to 1 (within ``atol``)."""
    arr = check_finite_array(p, name, ndim=1)
    if arr.size == 0:
        raise BadInput(f"`{name}` must not be empty.")
    if (arr < 0).any():
        raise BadInput(f"`{name}` must be non-negative; got {arr.tolist()}.")
    s = float(arr.sum())
    if abs(s - 1.0) > atol:
        raise BadInput(f"`{name}` must sum to 1; got sum {s:.10g} for {arr.tolist()}.")
    return arr


def check_spd(cov: Any, name: str = "cov") -> npt.NDArray[np.float64]:
    """A symmetric positive-definite matrix; returns it as float64."""
    arr = check_finite_array(cov, name, ndim=2)
    if arr.shape[0] != arr.shape[1]:
        raise BadInput(f"`{name}` must be square; got shape {arr.shape}.")
    if not np.allclose(arr, arr.T, rtol=1e-10, atol=1e-12):
        raise BadInput(
            f"`{name}` must be symmetric; got max asymmetry {np.abs(arr - arr.T).max():.3g}."
        )
    try:
        np.linalg.cholesky(arr)
    except np.linalg.LinAlgError:
        eig = float(np.linalg.eigvalsh(arr).min())
        raise BadInput(
            f"`{name}` must be positive definite; got smallest eigenvalue {eig:.6g}."
        ) from None
    return arr


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


class RunFailure(RuntimeError):
    """A run could not complete for a reason outside the user's input (exit status 1 in the CLI)."""


def require(module: str, extra: str, *, what: str | None = None) -> Any:
    """Import ``module`` or raise :class:`MissingExtraError` naming the pip extra to install.

    Examples
    --------
    >>> require("math", "core").sqrt(4.0)
    2.0
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        if exc.name not in (None, top, module) and not str(exc.name or "").startswith(top):
            raise
        purpose = f" for {what}" if what else ""
        raise MissingExtraError(
            f"`{top}` is not installed{purpose}; install it with: pip install 'deltahall[{extra}]'."
        ) from None


def check_output_path(out: Any, name: str, *, inputs: Any = (), allow_dir: bool = False) -> Any:
    """Refuse an output path that equals or lies inside one of ``inputs``, or is a directory.

    ``inputs`` is an iterable of ``(parameter_name, path)`` pairs (``None`` paths are skipped).
    Returns ``out`` as a :class:`pathlib.Path`. Nothing is written.

    Raises
    ------
    ValueError
        If ``out`` is one of the inputs or inside an input folder, or an existing directory
        where a file is expected (``allow_dir=False``).
    """
    import os
    from pathlib import Path

    p = Path(out)
    rp = Path(os.path.realpath(p))
    for in_name, in_path in inputs:
        if in_path is None:
            continue
        ri = Path(os.path.realpath(Path(in_path)))
        if rp == ri or ri in rp.parents:
            raise BadInput(
                f"`{name}` must not be an input of this command; got {os.fspath(p)!r}, "
                f"which is {'the same as' if rp == ri else 'inside'} `{in_name}` {os.fspath(in_path)!r}."
            )
    if not allow_dir and p.is_dir():
        raise BadInput(
            f"`{name}` must be a file path; got the existing directory {os.fspath(p)!r}."
        )
    return p
