r"""The one instrument (:mod:`deltahall.measure`) fitted once per run on the real embeddings.

The latent states are the classes. The real embeddings are split per class (seeded) into a
*fit* part (the per-class densities), a *calibration* part (the thresholds / p-values) and
a *test* part whose flagged share is the **floor**: what a generator reproducing the real
images exactly would score. The split is fixed for the run, so every checkpoint is measured
against the same reference and the same floor.

Two rules are fitted on the same split (:data:`RULES`):

- ``"conformal"`` (default, ``T2IConfig.calibration``): split-conformal p-values, flagged at
  :math:`p(z) \le \alpha`; a fresh real image is flagged with probability at most α;
- ``"percentile"`` (the paper's rule, Section 7.3): a log-density threshold at the
  ``100 α``-th percentile of each class's calibration scores; no finite-sample statement.

The config's ``percentile`` (paper: 10) is the level: :math:`\alpha = \text{percentile}/100`.
Its ``holdout_fraction`` is the share of each class kept out of the density fit, split 3 : 2
into the calibration and test parts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from deltahall.experiments.t2i.config import T2IConfig
from deltahall.io.rundir import to_jsonable

logger = logging.getLogger(__name__)

RULES = ("conformal", "percentile")


def rules(config: T2IConfig) -> tuple[str, str]:
    """The configured rule first (the unsuffixed columns), the other beside it."""
    main = str(config.calibration)
    return main, next(r for r in RULES if r != main)


def settings(config: T2IConfig, rule: str) -> Any:
    """The instrument's :class:`~deltahall.measure.DetectorSettings` for ``config`` under ``rule``."""
    from deltahall.measure import DetectorSettings

    h = float(config.holdout_fraction)
    return DetectorSettings(
        alpha=float(config.percentile) / 100.0,
        calibration=rule,
        fit_fraction=1.0 - h,
        calibration_fraction=0.6 * h,
        test_fraction=0.4 * h,
        pca_dim=int(config.pca_dim) if config.pca_dim else None,
        n_components=int(config.n_components),
        covariance_type=str(config.covariance_type),
        normalize=True,
        seed=int(config.seed),
    )


@dataclass
class _Fitted:
    settings: Any
    scorer: Any
    calibrator: Any
    test_scores: npt.NDArray[np.float64]


class Instrument:
    """Both rules fitted on ``(X, y)`` (class indices); :meth:`measure` scores one set of samples.

    Parameters
    ----------
    config : T2IConfig
    X : ndarray (n, d)
        Real embeddings.
    y : ndarray of int (n,)
        Class index of each (``config.classes[y]``).
    """

    def __init__(
        self, config: T2IConfig, X: npt.NDArray[np.float64], y: npt.NDArray[np.int64]
    ) -> None:
        from deltahall.measure.calibration import fit_global, plan_global

        classes = list(config.classes)
        self.classes = classes
        self.rules = rules(config)
        self.labels = np.asarray([classes[int(k)] for k in y])
        self.fitted: dict[str, _Fitted] = {}
        for rule in self.rules:
            s = settings(config, rule)
            plan = plan_global(self.labels, X.shape[0], s)
            scorer, calibrator, S_test = fit_global(X, plan, s)
            self.fitted[rule] = _Fitted(s, scorer, calibrator, S_test)
        self.plan = plan
        # plan_global orders the states as np.unique does; map them back to the config's order.
        self.state_order = [plan["states"].index(c) for c in classes]

    @property
    def alpha(self) -> float:
        return float(self.fitted[self.rules[0]].settings.alpha)

    def scores(
        self, E: npt.NDArray[np.float64], rule: str | None = None
    ) -> npt.NDArray[np.float64]:
        """Per-class log-densities ``(n, n_classes)``, columns in the config's class order."""
        f = self.fitted[rule or self.rules[0]]
        return np.asarray(f.scorer.score(E))[:, self.state_order]

    def thresholds(self, rule: str | None = None) -> npt.NDArray[np.float64]:
        """Per-class score thresholds equivalent to the rule at α (inside iff score >= threshold)."""
        return np.asarray(self.fitted[rule or self.rules[0]].calibrator.thresholds_)[
            self.state_order
        ]

    def decision(
        self, E: npt.NDArray[np.float64], rule: str | None = None
    ) -> npt.NDArray[np.float64]:
        """``max_i (score_i - threshold_i)``: ``>= 0`` inside the HCDR, the more negative the less plausible."""
        with np.errstate(invalid="ignore"):
            d = (self.scores(E, rule) - self.thresholds(rule)[None, :]).max(axis=1)
        return np.asarray(d)

    def inside(self, E: npt.NDArray[np.float64], rule: str | None = None) -> npt.NDArray[np.bool_]:
        """Inside the HCDR under ``rule`` (not flagged), one bool per row of ``E``."""
        f = self.fitted[rule or self.rules[0]]
        return np.asarray(~f.calibrator.flags(f.scorer.score(E)))

    def measure(
        self, E: npt.NDArray[np.float64], prompts: list[str], rule: str | None = None
    ) -> Any:
        """The :class:`~deltahall.measure.Measurement` of generated embeddings ``E`` under ``rule``."""
        from deltahall.measure.calibration import mean_embedding_check, measure_scores

        f = self.fitted[rule or self.rules[0]]
        plan = self.plan

        mean_inside = mean_embedding_check(f.scorer, f.calibrator, E)

        return measure_scores(
            settings=f.settings,
            scorer=f.scorer,
            calibrator=f.calibrator,
            states=plan["states"],
            state_sizes=plan["sizes"],
            gen_scores=f.scorer.score(E),
            gen_allowed=None,
            prompts=list(prompts),
            test_scores=f.test_scores,
            test_allowed=None,
            test_labels=plan["y_idx"][plan["parts"]["test"]].astype(np.int64),
            mean_inside=mean_inside,
            parts=plan["parts"],
            density_models=f.scorer.summary(),
        )

    def summary(self) -> dict[str, Any]:
        """``instrument.json``: settings, split sizes, density models, and per rule the calibration
        scores, thresholds and floor (the held-out real test part)."""
        from deltahall.stats import CI_METHOD

        out: dict[str, Any] = {
            "classes": self.classes,
            "rules": list(self.rules),
            "alpha": self.alpha,
            "ci_method": CI_METHOD,
            "per_rule": {},
        }
        sizes = self.plan["sizes"]
        out["split"] = {
            k: [int(sizes[k][i]) for i in self.state_order]
            for k in ("total", "fit", "calibration", "test")
        }
        for rule, f in self.fitted.items():
            floor = self.floor(rule)
            out["per_rule"][rule] = {
                "settings": {
                    k: getattr(f.settings, k)
                    for k in (
                        "alpha",
                        "calibration",
                        "fit_fraction",
                        "calibration_fraction",
                        "test_fraction",
                        "pca_dim",
                        "n_components",
                        "covariance_type",
                        "normalize",
                        "seed",
                    )
                },
                "thresholds": [float(t) if np.isfinite(t) else None for t in self.thresholds(rule)],
                "calibration_scores": [
                    [float(v) for v in f.calibrator.cal_[i]] for i in self.state_order
                ],
                "floor": to_jsonable(floor),
            }
        out["density_models"] = self.fitted[self.rules[0]].scorer.summary()
        return out

    def floor(self, rule: str | None = None) -> Any:
        """The floor: flagged share of the held-out real test part, a :class:`~deltahall.stats.Proportion`."""
        from deltahall.stats import proportion

        f = self.fitted[rule or self.rules[0]]
        flags = f.calibrator.flags(f.test_scores)
        return proportion(int(flags.sum()), int(flags.size))
