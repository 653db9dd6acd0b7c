"""deltahall: measure δ-hallucination in generative models.

A toolkit accompanying "Are Hallucinations Bad Estimations?" (Liu, Hu, Zhang,
Song, Liu, 2025). ``import deltahall`` is light: the theory (numpy/scipy) and
the detectors load on demand, the torch-based experiments only when used.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
