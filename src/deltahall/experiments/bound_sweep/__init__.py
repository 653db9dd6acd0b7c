"""Theorem 6.1 over random instances: the stated bound against a Monte-Carlo ``P_H^δ``.

``sweep``    the instances, the comparison and its config (``deltahall theory check``)
``results``  the rows and the summary as strict-JSON-ready dicts

The bound and the estimator are the theory's (:mod:`deltahall.theory.bound`,
:mod:`deltahall.theory.montecarlo`); this package only draws instances and compares.
"""

from deltahall.experiments.bound_sweep.results import check_payload, row_payload
from deltahall.experiments.bound_sweep.sweep import (
    MAX_CHECK_DRAWS,
    MAX_CHECK_INSTANCES,
    CheckConfig,
    CheckResult,
    CheckRow,
    check_theorem_6_1,
    random_instance,
    run_check,
)

__all__ = [
    "MAX_CHECK_DRAWS",
    "MAX_CHECK_INSTANCES",
    "CheckConfig",
    "CheckResult",
    "CheckRow",
    "check_payload",
    "check_theorem_6_1",
    "random_instance",
    "row_payload",
    "run_check",
]
