"""The measurement instrument: a calibrated δ-hallucination rate of your own model.

``deltahall measure`` reads real samples with their latent states and generated samples
(embeddings, image folders or JSONL texts), fits per-state densities on part of the real
set, calibrates them with split-conformal p-values on another part and reports the
generated rate with a Wilson interval against the floor of a held-out real part
(:mod:`.calibration`), per prompt, with optional state discovery, HCDR-guided selection
(:mod:`.selection`), baselines (:mod:`.compare`) and an HTML report (:mod:`.report`).
A measurement into a folder runs through the experiments' shared runner:
:func:`deltahall.experiments.measure_run.run`.
"""

from deltahall.measure.calibration import DetectorSettings, Measurement, measure_embeddings
from deltahall.measure.pipeline import MeasureConfig, MeasureResult
from deltahall.measure.selection import Selection, select_candidates

__all__ = [
    "DetectorSettings",
    "MeasureConfig",
    "MeasureResult",
    "Measurement",
    "measure_embeddings",
    "select_candidates",
    "Selection",
]
