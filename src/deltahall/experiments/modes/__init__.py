"""Known truth: δ-hallucination of a DDPM on the peer's mixtures of Gaussians (``deltahall modes``).

The latent states of Definition 4.2 are the mixture's components, whose densities are known, so
every sample's δ-hallucination flag is exact; detectors and recursive training are scored against
it. See :mod:`.pipeline` and docs/modes.md.
"""

from deltahall.experiments.modes.config import PRESETS, ModesConfig
from deltahall.experiments.modes.pipeline import ModesResult, run

__all__ = ["PRESETS", "ModesConfig", "ModesResult", "run"]
