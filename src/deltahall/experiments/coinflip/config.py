"""Configuration of one coin-flip run (paper Section 7.1, Figure 3).

Every default of the experiment lives here; the CLI and the sweep build on it. The field
defaults are the one preset, ``"paper"`` (:data:`PRESETS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from deltahall._registry import Registry
from deltahall._validation import check_choice, check_delta, check_int, check_real
from deltahall.experiments._config import ExperimentConfig, presets_for
from deltahall.experiments._run import RESUME_FREE, RunOptions

#: Objectives: ``"mse"`` is the paper's squared loss (estimate = rounded regression output);
#: ``"ce"`` is the mode-seeking variant (cross-entropy over counts 0..N, estimate = argmax).
OBJECTIVES: tuple[str, ...] = ("mse", "ce")

#: Flags that reproduce the authors' code (Section 7.1 as released), one bug each:
#: ``"scoring"`` scores with head probabilities i/(2N) while the data use (i+1)/(2N);
#: ``"ceil"`` makes the integer estimate ``ceil`` of the regression output (mse only);
#: ``"float_input"`` feeds the chosen labels as one float vector (a sequence of length 1).
AUTHORS_BUGS: tuple[str, ...] = ("scoring", "ceil", "float_input")

#: The run options of the ``"paper"`` preset: no folder (``run(config)`` from Python keeps
#: everything in memory; ``deltahall coinflip run`` needs ``--out-dir``) and one torch thread
#: (these models are tiny: more threads than free cores makes them many times slower).
DEFAULT_RUN = RunOptions(out_dir=None, threads=1)


@dataclass(frozen=True)
class CoinFlipConfig(ExperimentConfig):
    """One coin-flip training run.

    2N coins with head probabilities (i+1)/(2N), i = 0..2N-1; each sample picks N distinct
    coins uniformly at random, flips them and records the number of heads Y. The model sees
    the chosen coins' labels X and predicts Y. ``m`` samples are drawn and split into
    ``m - n_val`` training and ``n_val = round(val_fraction * m)`` validation samples.

    Raises
    ------
    ValueError
        For out-of-range values or a split that leaves either part empty.
    TypeError
        For values of the wrong type.
    """

    n: int = field(default=2, metadata={"help": "N: coins chosen per sample (2N coins in all)"})
    m: int = field(default=20000, metadata={"help": "M: samples drawn in all (train + validation)"})
    val_fraction: float = field(
        default=0.2, metadata={"help": "fraction of the M samples held out for validation"}
    )
    objective: Literal["mse", "ce"] = field(
        default="mse",
        metadata={
            "help": "mse: squared loss, estimate = round(output); ce: cross-entropy over 0..N, estimate = argmax"
        },
    )
    epochs: int = field(default=20, metadata={"help": "training epochs"})
    batch_size: int = field(default=256, metadata={"help": "minibatch size"})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate"})
    weight_decay: float = field(
        default=0.0, metadata={"help": "AdamW weight decay (0: plain Adam)"}
    )
    n_layers: int = field(default=8, metadata={"help": "transformer encoder layers (paper: 8)"})
    d_model: int = field(default=64, metadata={"help": "hidden size (paper: 64)"})
    n_heads: int = field(default=4, metadata={"help": "attention heads"})
    d_ff: int = field(default=256, metadata={"help": "feed-forward size (paper: 256)"})
    dropout: float = field(
        default=0.0,
        metadata={
            "help": "dropout inside the encoder layers (0 lets each minibatch run one forward pass per distinct coin set, exactly; the paper gives no value)"
        },
    )
    deltas: tuple[float, ...] = field(
        default=(0.1, 0.25, 0.5),
        metadata={"help": "tolerances δ in (0, 1] for the δ-hallucination rate (Definition 4.2)"},
    )
    seed: int = field(
        default=0,
        metadata={"help": "seed of the data, the initial weights, the data order and dropout"},
    )
    authors_bugs: tuple[str, ...] = field(
        default=(),
        metadata={"help": "reproduce the authors' code: any of scoring ceil float_input"},
    )
    run: RunOptions = field(default_factory=lambda: DEFAULT_RUN, metadata=RESUME_FREE)

    def __post_init__(self) -> None:
        self._check_run()
        if self.run.resume_from_checkpoint is not None and self.run.out_dir is None:
            raise ValueError(
                "`resume_from_checkpoint` needs `out_dir`: checkpoints live in the run directory."
            )
        check_int(self.n, "n", low=1, high=64)
        check_int(self.m, "m", low=2)
        check_real(
            self.val_fraction, "val_fraction", low=0.0, high=1.0, low_open=True, high_open=True
        )
        check_choice(self.objective, "objective", OBJECTIVES)
        check_int(self.epochs, "epochs", low=1)
        check_int(self.batch_size, "batch_size", low=1)
        check_real(self.lr, "lr", low=0.0, low_open=True)
        check_real(self.weight_decay, "weight_decay", low=0.0)
        check_int(self.n_layers, "n_layers", low=1)
        check_int(self.d_model, "d_model", low=1)
        check_int(self.n_heads, "n_heads", low=1)
        check_int(self.d_ff, "d_ff", low=1)
        check_real(self.dropout, "dropout", low=0.0, high=1.0, high_open=True)
        check_int(self.seed, "seed", low=0)
        if self.d_model % self.n_heads:
            raise ValueError(
                f"`d_model` must be divisible by `n_heads`; got d_model={self.d_model}, n_heads={self.n_heads}."
            )
        if not isinstance(self.deltas, tuple) or not self.deltas:
            raise ValueError(
                f"`deltas` must be a non-empty tuple of numbers in (0, 1]; got {self.deltas!r}."
            )
        for d in self.deltas:
            check_delta(d, "deltas")
        if len(set(self.deltas)) != len(self.deltas):
            raise ValueError(f"`deltas` must not repeat a value; got {self.deltas!r}.")
        if not isinstance(self.authors_bugs, tuple):
            raise TypeError(
                f"`authors_bugs` must be a tuple of strings; got {type(self.authors_bugs).__name__}."
            )
        for b in self.authors_bugs:
            check_choice(b, "authors_bugs", AUTHORS_BUGS)
        if "ceil" in self.authors_bugs and self.objective != "mse":
            raise ValueError(
                f"`authors_bugs` 'ceil' applies to the regression output only; got objective={self.objective!r}."
            )
        n_val = self.n_val
        if n_val < 1 or self.m - n_val < 1:
            raise ValueError(
                f"`m` must be large enough for the split: val_fraction={self.val_fraction:g} of m={self.m} "
                f"gives {n_val} validation and {self.m - n_val} training samples; both must be >= 1."
            )

    @property
    def n_val(self) -> int:
        """Validation samples: ``round(val_fraction * m)``."""
        return int(round(self.val_fraction * self.m))

    @property
    def n_train(self) -> int:
        """Training samples: ``m - n_val``."""
        return self.m - self.n_val

    @property
    def n_coins(self) -> int:
        """2N coins in all."""
        return 2 * self.n


#: The presets (:class:`deltahall._registry.Registry`): ``"paper"`` is Section 7.1's setting
#: (the field defaults).
PRESETS: Registry[CoinFlipConfig] = presets_for(CoinFlipConfig, "coinflip", {}, first="paper")
CoinFlipConfig.PRESETS = PRESETS
