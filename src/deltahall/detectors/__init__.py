"""Fitted detectors on embedding arrays ``(n_samples, n_features)``.

:class:`HCDRDetector` flags δ-hallucinations (Definition 4.2) as embeddings outside
the union of per-state highest-density regions (Definition 6.2, Section 7.3). It is
built from the one instrument's two parts, importable from their modules:
:class:`~deltahall.detectors.densities.StateDensities` (the scorer) and
:class:`~deltahall.detectors.calibrators.Calibrator` (conformal or percentile rule).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deltahall.detectors.hcdr import HCDRDetector

__all__ = ["HCDRDetector"]


def __getattr__(name: str) -> Any:
    """Import :class:`HCDRDetector` (and scikit-learn) only when it is used, so that importing a
    submodule such as :mod:`deltahall.detectors.calibrators` stays light."""
    if name == "HCDRDetector":
        from deltahall.detectors.hcdr import HCDRDetector

        return HCDRDetector
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
