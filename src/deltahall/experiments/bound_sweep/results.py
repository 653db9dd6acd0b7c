"""The Theorem 6.1 sweep's results as JSON-ready rows and one summary.

The column names are the paper's symbols (``N``, ``r``, ``d``, ``bound``); every value goes
through :func:`deltahall.io.rundir.to_jsonable`, so a non-finite number is ``null``.
"""

from __future__ import annotations

from typing import Any

from deltahall.experiments.bound_sweep.sweep import CheckResult, CheckRow
from deltahall.io.rundir import to_jsonable

__all__ = ["check_payload", "row_payload"]


def row_payload(row: CheckRow) -> dict[str, Any]:
    """One instance as a CSV/JSON row (weights rounded to 4 places).

    Parameters
    ----------
    row : CheckRow

    Returns
    -------
    dict
    """
    out = {
        "N": row.n_states,
        "dim": row.dim,
        "delta": row.delta,
        "laws": row.laws,
        "weights": [round(x, 4) for x in row.weights],
        "r": row.radius,
        "d": row.optimum_spread,
        "bound": row.stated_bound,
        "union_bound": row.union_bound,
        "p_hat": row.p_hat,
        "ci_low": row.ci_low,
        "ci_high": row.ci_high,
        "holds": row.holds,
        "counterexample": row.counterexample,
    }
    return to_jsonable(out)  # type: ignore[no-any-return]


def check_payload(res: CheckResult) -> dict[str, Any]:
    """Strict-JSON-ready summary of a check (``null_fields`` says why a value is null).

    Parameters
    ----------
    res : CheckResult

    Returns
    -------
    dict
    """
    out: dict[str, Any] = {
        "n_tried": res.n_tried,
        "n_applicable": res.n_applicable,
        "n_held": res.n_held,
        "n_counterexamples": len(res.counterexamples),
        "min_ratio_p_hat_over_bound": res.min_ratio,
        "union_violations": res.union_violations,
        "counterexamples": [row_payload(r) for r in res.counterexamples],
        "rows": [row_payload(r) for r in res.rows],
    }
    if res.min_ratio is None:
        out["null_fields"] = {
            "min_ratio_p_hat_over_bound": "no applicable instance with a positive bound"
        }
    return to_jsonable(out)  # type: ignore[no-any-return]
