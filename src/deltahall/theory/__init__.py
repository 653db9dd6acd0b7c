"""The δ-hallucination theory of Liu et al. (2025), Sections 3-6 and Appendices A-C, in numpy/scipy.

Submodules
----------
mixtures    latent mixtures (Definition 4.1): Gaussian, scipy.stats and discrete states
estimators  optimal estimates (Lemma B.1, Appendix C) and the δ-test (Definition 4.2)
regions     U_i^δ and HCDRs (Definition 6.2), HDR thresholds (Appendix A), covering radii (Definition 6.3)
ball        the ball maximiser: a Gaussian's largest density within ε of a point (Theorems 5.2, 5.3)
witnesses   the corrected witnesses, one per theorem (5.1, 5.2, 5.3, Corollary 5.2.1, C.1)
as_written  the paper's constructions taken literally (Sections B.1, B.3, Appendix C)
bound       Theorem 6.1: the stated bound, the union bound the lemmas justify, its ceiling
montecarlo  laws of the conditional means and a Monte-Carlo P_H^δ with its Wilson interval

The check of Theorem 6.1 over random instances is an experiment:
:mod:`deltahall.experiments.bound_sweep`. Results are plain frozen dataclasses; their JSON
form comes from :func:`deltahall.io.rundir.to_jsonable`.
"""

from deltahall.theory.estimators import (
    DeltaTest,
    cross_entropy_optimal_estimate,
    delta_hallucinates,
    max_conditional_log_density,
    quadratic_optimal_estimate,
)
from deltahall.theory.mixtures import DiscreteState, GaussianState, LatentMixture, ScipyState
from deltahall.theory.regions import covering_radius, hdr_threshold, in_hcdr, in_state_region

__all__ = [
    "DeltaTest",
    "DiscreteState",
    "GaussianState",
    "LatentMixture",
    "ScipyState",
    "covering_radius",
    "cross_entropy_optimal_estimate",
    "delta_hallucinates",
    "hdr_threshold",
    "in_hcdr",
    "in_state_region",
    "max_conditional_log_density",
    "quadratic_optimal_estimate",
]
