"""Fitted detectors on embedding arrays ``(n_samples, n_features)``.

:class:`HCDRDetector` flags δ-hallucinations (Definition 4.2) as embeddings outside
the union of per-state highest-density regions (Definition 6.2, Section 7.3).
"""

from deltahall.detectors._gmm import GaussianMixtureParams
from deltahall.detectors.hcdr import HCDRDetector

__all__ = ["GaussianMixtureParams", "HCDRDetector"]
