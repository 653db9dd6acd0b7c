"""Configuration of the known-truth experiment ``deltahall modes`` (mixtures of Gaussians).

One frozen dataclass holds every knob; the CLI is built from it. A preset is a complete config:
:data:`PRESETS` (the one registry) maps ``"tiny"`` (the field defaults, well under a minute: tests
and the main job) and ``"cpu"`` (sized from a measured pilot to run in about 25 minutes on 2 shared
CPU cores, as close to the peer's setting as that allows; see docs/modes.md) to configs; values
from a config file and the command line are applied on top (preset < file < command line).

The peer (Aithal et al., NeurIPS 2024, ``gaussian_experiments``) trains for 10,000 epochs of
10 batches of 10,000 points (100,000 steps) with T = 1000 diffusion steps; the sizes here are
smaller and every difference is recorded in the manifest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from deltahall._registry import Registry
from deltahall._validation import check_choice, check_int, check_real
from deltahall.experiments._config import ExperimentConfig, presets_for
from deltahall.experiments._run import RESUME_FREE, RunOptions

DATA_CHOICES: tuple[str, ...] = ("2d", "1d")
STRATEGIES: tuple[str, ...] = ("none", "random", "variance", "hcdr")


def _h(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class ModesConfig(ExperimentConfig):
    """Everything one ``modes`` run needs; ``run(config)`` executes it.

    Raises
    ------
    ValueError
        Out-of-range values, or combinations that cannot run (a δ above 1, a checkpoint interval
        that does not divide the training steps, too few real samples per state for α).
    TypeError
        Values of the wrong type.
    """

    preset: str = field(
        default="tiny",
        metadata=_h("the preset these values came from (recorded; chosen with --preset)"),
    )
    data: Literal["2d", "1d"] = field(
        default="2d",
        metadata=_h("2d: the peer's 5 x 5 grid of 25 Gaussians; 1d: three Gaussians at 1, 2, 3"),
    )
    n_train: int = field(
        default=2000,
        metadata=_h(
            "training points drawn from the mixture (peer: 100,000 in 2-D, 20,000-50,000 in 1-D)"
        ),
    )
    timesteps: int = field(default=50, metadata=_h("diffusion steps T (peer: 1000)"))
    beta_start: float = field(
        default=0.001, metadata=_h("first β of the linear schedule (peer: 0.001)")
    )
    beta_end: float = field(default=0.2, metadata=_h("last β of the linear schedule (peer: 0.2)"))
    width: int = field(default=32, metadata=_h("MLP width (peer: 128)"))
    n_blocks: int = field(default=3, metadata=_h("residual blocks (peer: 3)"))
    tied_blocks: bool = field(
        default=True,
        metadata=_h("one block applied n_blocks times, as the peer's code does ([block] * n)"),
    )
    batch_size: int = field(default=200, metadata=_h("training minibatch (peer: 10,000)"))
    lr: float = field(default=1e-3, metadata=_h("Adam learning rate (peer: 1e-3)"))
    train_steps: int = field(default=400, metadata=_h("optimizer steps of the main run"))
    checkpoint_every: int = field(
        default=200,
        metadata=_h("save a checkpoint and evaluate every S steps (S must divide train_steps)"),
    )
    eval_initial: bool = field(
        default=True, metadata=_h("also evaluate the untrained model (step 0)")
    )
    num_samples: int = field(
        default=500, metadata=_h("K: samples drawn at every checkpoint (the same noise at each)")
    )
    sample_batch_size: int = field(default=2000, metadata=_h("samples per sampling batch"))
    variance_window: int = field(
        default=10,
        metadata=_h(
            "last reverse steps whose predicted x0 enter the trajectory variance (peer: 10)"
        ),
    )
    n_reference: int = field(
        default=2500,
        metadata=_h("labelled real samples the instrument and the kNN detector are fitted on"),
    )
    n_holdout: int = field(
        default=500,
        metadata=_h(
            "further real samples that set every detector's threshold at the same false-flag rate"
        ),
    )
    n_val: int = field(default=500, metadata=_h("real points for the fixed-noise validation loss"))
    delta_sigmas: float = field(
        default=4.0,
        metadata=_h(
            "δ = the density of a component at this many standard deviations from its mean"
        ),
    )
    sensitivity_sigmas: tuple[float, ...] = field(
        default=(3.0, 4.0, 5.0, 6.0, 8.0, 10.0),
        metadata=_h("the true rate is also reported at δ for each of these distances"),
    )
    alpha: float = field(
        default=0.05,
        metadata=_h(
            "the instrument's level α, and every detector's false-flag rate on real samples"
        ),
    )
    knn_k: int = field(default=5, metadata=_h("k of the kNN distance detector"))
    keep_in_support: float = field(
        default=0.96,
        metadata=_h(
            "the peer's headline: at the threshold that keeps this share of truly in-support samples, the share of true hallucinations removed"
        ),
    )
    generations: int = field(
        default=2,
        metadata=_h(
            "recursive training: generations including generation 0 (trained on real points); 1 = none"
        ),
    )
    strategies: tuple[str, ...] = field(
        default=STRATEGIES,
        metadata=_h("filters of each generation's training set: none random variance hcdr"),
    )
    recursive_train_steps: int = field(
        default=200,
        metadata=_h(
            "optimizer steps of every generation of the recursion, each trained from scratch as the peer's"
        ),
    )
    recursive_n_train: int = field(
        default=1000,
        metadata=_h(
            "training points of every generation: generation 0 real points, later ones kept from recursive_n_train / recursive_keep candidates"
        ),
    )
    recursive_keep: float = field(
        default=100_000 / 102_500,
        metadata=_h("share of candidates kept by a filter (peer: 100,000 of 102,500)"),
    )
    coverage_share: float = field(
        default=0.5,
        metadata=_h(
            "a component is covered when it holds at least this share of its true weight among in-support samples"
        ),
    )
    seed: int = field(
        default=0,
        metadata=_h("seed of the data, the weights, the data order and the sampling noise"),
    )
    #: One torch thread: these tensors are small.
    run: RunOptions = field(
        default_factory=lambda: RunOptions(out_dir=Path("runs/modes_tiny"), threads=1),
        metadata=RESUME_FREE,
    )

    def __post_init__(self) -> None:
        self._check_run()
        if self.run.resume_from_checkpoint is not None and self.run.out_dir is None:
            raise ValueError(
                "`resume_from_checkpoint` needs `out_dir`: checkpoints live in the run directory."
            )
        self._check_preset_name()
        check_choice(self.data, "data", DATA_CHOICES)
        for name, low in (
            ("n_train", 2),
            ("timesteps", 2),
            ("width", 2),
            ("n_blocks", 1),
            ("batch_size", 1),
            ("train_steps", 1),
            ("checkpoint_every", 1),
            ("num_samples", 2),
            ("sample_batch_size", 1),
            ("variance_window", 2),
            ("n_reference", 10),
            ("n_holdout", 10),
            ("n_val", 1),
            ("knn_k", 1),
            ("generations", 1),
            ("recursive_train_steps", 1),
            ("recursive_n_train", 2),
            ("seed", 0),
        ):
            check_int(getattr(self, name), name, low=low)
        if not isinstance(self.tied_blocks, bool):
            raise TypeError(f"`tied_blocks` must be a bool; got {self.tied_blocks!r}.")
        if not isinstance(self.eval_initial, bool):
            raise TypeError(f"`eval_initial` must be a bool; got {self.eval_initial!r}.")
        check_real(self.beta_start, "beta_start", low=0.0, high=1.0, low_open=True)
        check_real(self.beta_end, "beta_end", low=0.0, high=1.0, low_open=True, high_open=True)
        if self.beta_end < self.beta_start:
            raise ValueError(
                f"`beta_end` must be >= `beta_start` = {self.beta_start}; got {self.beta_end}."
            )
        check_real(self.lr, "lr", low=0.0, low_open=True)
        check_real(self.alpha, "alpha", low=0.0, high=0.5, low_open=True, high_open=True)
        check_real(
            self.keep_in_support,
            "keep_in_support",
            low=0.0,
            high=1.0,
            low_open=True,
            high_open=True,
        )
        check_real(self.recursive_keep, "recursive_keep", low=0.0, high=1.0, low_open=True)
        check_real(self.coverage_share, "coverage_share", low=0.0, high=1.0, low_open=True)
        if self.variance_window > self.timesteps:
            raise ValueError(
                f"`variance_window` must be <= `timesteps` = {self.timesteps}; got {self.variance_window}."
            )
        if self.train_steps % self.checkpoint_every:
            raise ValueError(
                f"`checkpoint_every` must divide `train_steps` = {self.train_steps}; got {self.checkpoint_every}."
            )
        if self.batch_size > min(self.n_train, self.recursive_n_train):
            raise ValueError(
                f"`batch_size` must be <= `n_train` and `recursive_n_train` "
                f"({self.n_train}, {self.recursive_n_train}); got {self.batch_size}."
            )
        if not isinstance(self.strategies, tuple) or not self.strategies:
            raise ValueError(
                f"`strategies` must be a non-empty tuple among {list(STRATEGIES)}; got {self.strategies!r}."
            )
        for s in self.strategies:
            check_choice(s, "strategies", STRATEGIES)
        if len(set(self.strategies)) != len(self.strategies):
            raise ValueError(f"`strategies` must not repeat a value; got {self.strategies!r}.")
        if not isinstance(self.sensitivity_sigmas, tuple) or not self.sensitivity_sigmas:
            raise ValueError(
                f"`sensitivity_sigmas` must be a non-empty tuple of distances; got {self.sensitivity_sigmas!r}."
            )
        for r in (self.delta_sigmas, *self.sensitivity_sigmas):
            check_real(r, "delta_sigmas", low=0.0, low_open=True)
            log_delta = log_delta_at(self.data, r)
            if log_delta > 0.0:
                raise ValueError(
                    f"`delta_sigmas` must give δ <= 1 (Definition 4.2's range): at {r:g} standard deviations the "
                    f"{self.data} components' density is {math.exp(log_delta):.3g}; use a larger distance."
                )
        per_state = self.n_reference // n_components(self.data)
        need = math.ceil(1.0 / self.alpha) - 1
        if int(per_state * 0.3) < need:
            raise ValueError(
                f"`n_reference` must give every state at least {need} calibration samples for alpha={self.alpha:g} "
                f"(30 % of {per_state} per state gives {int(per_state * 0.3)}); got n_reference={self.n_reference}."
            )

    @property
    def log_delta(self) -> float:
        """:math:`\\log δ` of the run: the log-density at ``delta_sigmas`` standard deviations from a mode."""
        return log_delta_at(self.data, self.delta_sigmas)


#: The mixture's components: ``(mode spacing unit, component std)`` in the data's own units.
#: 2-D: the peer's ``Gaussian25``: means 2 * (i, j), i, j in -2..2, std 0.05; 1-D: means 1, 2, 3, std 0.05.
COMPONENT_STD = 0.05


def n_components(data: str) -> int:
    return 25 if data == "2d" else 3


def data_dim(data: str) -> int:
    return 2 if data == "2d" else 1


def log_delta_at(data: str, sigmas: float) -> float:
    """Log-density of an isotropic component at ``sigmas`` standard deviations from its mean."""
    d = data_dim(data)
    return -0.5 * d * math.log(2.0 * math.pi * COMPONENT_STD**2) - 0.5 * float(sigmas) ** 2


#: The presets (:class:`deltahall._registry.Registry`): ``"tiny"`` is the field defaults;
#: ``"cpu"`` is sized from the pilot in docs/modes.md (2 heavily shared CPU cores, one torch thread).
PRESETS: Registry[ModesConfig] = presets_for(
    ModesConfig,
    "modes",
    {
        "cpu": dict(
            preset="cpu",
            n_train=20_000,
            timesteps=100,
            width=64,
            batch_size=500,
            train_steps=4000,
            checkpoint_every=500,
            num_samples=2000,
            n_reference=5000,
            n_holdout=2000,
            n_val=2000,
            generations=5,
            recursive_train_steps=1000,
            recursive_n_train=5000,
            out_dir=Path("runs/modes_cpu"),
        )
    },
    first="tiny",
)
ModesConfig.PRESETS = PRESETS
