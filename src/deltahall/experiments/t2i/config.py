"""Configuration of the text-to-image experiment (Section 7.3, Figures 5-7).

One frozen dataclass holds every knob; the CLI is built from it. Two presets (:data:`PRESETS`,
the one registry) share one code path and differ only in their values:

``"digits"`` (offline, the field defaults)
    scikit-learn's bundled 8x8 digits, classes 0 and 1, a tiny class-conditional
    ``UNet2DConditionModel`` trained from scratch with a tiny frozen ``CLIPTextModel``
    (see :mod:`.tiny`), no VAE (identity latents), and a small CNN digit classifier's
    penultimate features as the image embedding (see :mod:`.digits_embedder`).
``"afhq-sd15"`` (paper scale)
    Stable Diffusion v1.5's UNet fine-tuned on AFHQ cats and dogs (text encoder and VAE
    frozen, class captions with 10 % empty-caption dropout), CLIP ViT-B/32 image
    embeddings, the paper's three prompts. The paper states the data, the prompts, the
    frozen parts, CLIP ViT-B/32 and the detector recipe; it does not state steps, batch,
    learning rate or sampler, so ours follow diffusers' ``train_text_to_image`` example
    (learning rate 1e-5, fp16) with 25 DPM-Solver++ steps at guidance 7.5 for sampling.
    Its ``data`` is not known here: the run refuses to start until ``--data`` names the
    AFHQ images (``data`` is ``None``: required, not a default filled in later).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from deltahall._registry import Registry
from deltahall._validation import BadInput, check_choice, check_int, check_real
from deltahall.experiments._config import ExperimentConfig, presets_for
from deltahall.experiments._run import RESUME_FREE, RunOptions, free
from deltahall.models.registry import (
    ALIASES,
    BUILT_MODELS,
    DATA_ALIASES,
    check_data_alias,
    check_model_alias,
)

#: Builds the tiny offline text-to-image model (:mod:`.tiny`) instead of loading one.
TINY_MODEL = "@tiny"
#: scikit-learn's bundled digits (``sklearn.datasets.load_digits``).
SKLEARN_DIGITS = "@sklearn-digits"
#: The small CNN digit classifier's penultimate features (:mod:`.digits_embedder`).
DIGITS_CNN = "@digits-cnn"
# The names above are registered in deltahall.models.registry; a renamed entry fails here.
for _reg, _name in (
    (BUILT_MODELS, TINY_MODEL),
    (DATA_ALIASES, SKLEARN_DIGITS),
    (ALIASES, DIGITS_CNN),
):
    _reg.get(_name)

SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
CLIP_B32 = "openai/clip-vit-base-patch32"
PAPER_PROMPTS = (
    "a realistic photo of a friendly dog",
    "a fluffy cat sitting on a sofa",
    "a cute pet animal",
)
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


#: Integer fields that must be >= 1, and those that must be >= 0.
_POSITIVE_INTS = (
    "resolution",
    "train_steps",
    "train_batch_size",
    "gradient_accumulation_steps",
    "checkpoint_every",
    "num_samples",
    "sample_batch_size",
    "inference_steps",
    "embed_batch_size",
    "n_components",
    "grid_max",
)
_NON_NEGATIVE_INTS = (
    "lr_warmup_steps",
    "checkpoints_total_limit",
    "pca_dim",
    "num_workers",
    "seed",
)
#: Real fields and their interval (:func:`deltahall._validation.check_real` keywords).
_REALS: dict[str, dict[str, Any]] = {
    "caption_dropout": dict(low=0.0, high=1.0, high_open=True),
    "learning_rate": dict(low=0.0, low_open=True),
    "adam_weight_decay": dict(low=0.0),
    "max_grad_norm": dict(low=0.0, low_open=True),
    "guidance_scale": dict(low=1.0),
    "percentile": dict(low=0.0, high=100.0, low_open=True, high_open=True),
    "holdout_fraction": dict(low=0.0, high=1.0, low_open=True, high_open=True),
}


def _h(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class T2IConfig(ExperimentConfig):
    """Everything one text-to-image run needs; ``run(config)`` executes it (Section 7.3)."""

    preset: str = field(
        default="digits",
        metadata=_h(
            "the preset these values came from: 'digits' (offline, CPU; pixel space) or 'afhq-sd15' (paper scale; latent space through the VAE)"
        ),
    )
    model: str = field(
        default=TINY_MODEL,
        metadata=_h(
            "diffusers model id or local folder (unet/ text_encoder/ tokenizer/ vae/ scheduler/); '@tiny' builds the offline digits model"
        ),
    )
    embedder: str = field(
        default=DIGITS_CNN,
        metadata=_h(
            "CLIP vision model id or folder (CLIPVisionModelWithProjection + preprocessor); '@digits-cnn' trains the offline digit embedder"
        ),
    )
    data: str | None = field(
        default=SKLEARN_DIGITS,
        metadata=_h(
            "image folder with one subfolder per class, or a `datasets` id; '@sklearn-digits' for the bundled digits (unset, as in preset afhq-sd15: the run refuses to start until it is given)"
        ),
    )
    data_split: str = field(default="train", metadata=_h("split of a `datasets` id"))
    image_column: str = field(default="image", metadata=_h("image column of a `datasets` id"))
    label_column: str = field(
        default="label", metadata=_h("label column of a `datasets` id (class names or ClassLabel)")
    )
    classes: tuple[str, ...] = field(
        default=("0", "1"),
        metadata=_h("the latent states: class subfolders / label names (digits: digit characters)"),
    )
    captions: tuple[str, ...] = field(
        default=("a handwritten digit zero", "a handwritten digit one"),
        metadata=_h("training caption of each class, in the order of --classes"),
    )
    prompts: tuple[str, ...] = field(
        default=("a handwritten digit zero", "a handwritten digit one", "a handwritten digit", ""),
        metadata=_h("evaluation prompts ('' = unconditional)"),
    )
    caption_dropout: float = field(
        default=0.1, metadata=_h("probability that a training caption is replaced by ''")
    )
    resolution: int = field(default=8, metadata=_h("training and sampling image size in pixels"))
    random_flip: bool = field(
        default=False, metadata=_h("random horizontal flips of training images")
    )
    max_train_images: int | None = field(
        default=None,
        metadata=_h("use at most this many images per class for training (unset: all of them)"),
    )
    train_steps: int = field(
        default=1200, metadata=free("optimizer steps in total (may be raised when resuming)")
    )
    train_batch_size: int = field(default=64, metadata=_h("images per device per micro-batch"))
    gradient_accumulation_steps: int = field(
        default=1, metadata=_h("micro-batches per optimizer step")
    )
    learning_rate: float = field(
        default=1e-3, metadata=_h("AdamW learning rate (constant after warm-up)")
    )
    lr_warmup_steps: int = field(default=100, metadata=_h("linear warm-up steps"))
    adam_weight_decay: float = field(default=1e-2, metadata=_h("AdamW weight decay"))
    max_grad_norm: float = field(default=1.0, metadata=_h("gradient clipping norm"))
    checkpoint_every: int = field(
        default=150,
        metadata=_h("save checkpoint-{step}/ and evaluate every S steps (and at the last step)"),
    )
    checkpoints_total_limit: int = field(
        default=3,
        metadata=_h(
            "keep at most this many checkpoint folders (0 = no limit: keep all); metrics of every checkpoint are kept"
        ),
    )
    eval_initial: bool = field(
        default=True, metadata=_h("also evaluate the model before the first step (step 0)")
    )
    num_samples: int = field(default=200, metadata=_h("K: images drawn per prompt per checkpoint"))
    sample_batch_size: int = field(
        default=200,
        metadata=_h("images per sampling call (doubled inside for classifier-free guidance)"),
    )
    inference_steps: int = field(default=15, metadata=_h("sampler steps"))
    guidance_scale: float = field(
        default=2.0, metadata=_h("classifier-free guidance scale (1 = none)")
    )
    sampler: Literal["dpm", "ddim"] = field(
        default="dpm", metadata=_h("sampling scheduler: DPM-Solver++ (2M) or DDIM")
    )
    embed_batch_size: int = field(default=512, metadata=_h("images per embedder call"))
    detector_max_per_class: int | None = field(
        default=None,
        metadata=_h(
            "fit the detector on at most this many real images per class (unset: all of them)"
        ),
    )
    pca_dim: int = field(default=8, metadata=_h("detector PCA dimension (0 = no PCA)"))
    n_components: int = field(
        default=2, metadata=_h("detector Gaussian-mixture components per class")
    )
    covariance_type: Literal["full", "diag", "tied", "spherical"] = field(
        default="diag", metadata=_h("detector covariance type")
    )
    percentile: float = field(
        default=10.0,
        metadata=_h(
            "the level: alpha = percentile / 100 (paper: the 10th percentile of held-out log-densities)"
        ),
    )
    calibration: Literal["conformal", "percentile"] = field(
        default="conformal",
        metadata=_h(
            "rule of the headline rate columns: split-conformal p-values at alpha, or the paper's percentile threshold; the other rule is written beside it (columns suffixed _percentile / _conformal)"
        ),
    )
    holdout_fraction: float = field(
        default=0.5,
        metadata=_h(
            "share of each class's real embeddings kept out of the density fit, split 3:2 into the calibration part and the test part that gives the floor (the paper held out 0.2 and had no test part)"
        ),
    )
    grid_max: int = field(
        default=36, metadata=_h("at most this many flagged samples per grid image")
    )
    seed: int = field(
        default=0, metadata=_h("seed of data order, noise, dropout, sampling and the detector")
    )
    mixed_precision: Literal["no", "fp16", "bf16"] = field(
        default="no",
        metadata=_h(
            "autocast for the frozen parts and the forward pass; trainable weights stay float32"
        ),
    )
    num_workers: int = field(default=0, metadata=free("data-loader worker processes"))
    #: Digits: one torch thread per process, faster than two on its small tensors and far faster
    #: on a busy machine.
    run: RunOptions = field(
        default_factory=lambda: RunOptions(out_dir=Path("runs/t2i_digits"), threads=1),
        metadata=RESUME_FREE,
    )

    def __post_init__(self) -> None:
        self._check_preset_name()
        for name in ("classes", "captions", "prompts"):
            v = getattr(self, name)
            if isinstance(v, str):
                raise TypeError(f"`{name}` must be a sequence of strings; got the string {v!r}.")
            object.__setattr__(self, name, tuple(str(s) for s in v))
        self._check_run()
        if self.run.out_dir is None:
            raise BadInput("`out_dir` must be a folder path; got None.")
        self._check_sources()
        self._check_numbers()

    def _check_sources(self) -> None:
        digits = self.preset == "digits"
        check_model_alias(self.model, "model", kinds=())  # '@' names: only built models
        check_model_alias(self.embedder, "embedder", kinds=("image-embedder",), built=False)
        if self.data is not None:
            check_data_alias(self.data, "data", allowed=(SKLEARN_DIGITS,))
        for name, marker in (
            ("model", TINY_MODEL),
            ("embedder", DIGITS_CNN),
            ("data", SKLEARN_DIGITS),
        ):
            value = getattr(self, name)
            if digits and value != marker:
                raise ValueError(f"`{name}` must be {marker!r} for preset 'digits'; got {value!r}.")
            if not digits and value == marker:
                raise ValueError(
                    f"`{name}` {marker!r} only works with preset 'digits'; got preset {self.preset!r}."
                )
        if self.data is not None and not str(self.data).strip():
            raise ValueError(
                "`data` must be an image folder with one subfolder per class or a `datasets` id; got ''."
            )
        if len(self.classes) < 2:
            raise ValueError(f"`classes` must name at least two latent states; got {self.classes}.")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"`classes` must not repeat; got {self.classes}.")
        if digits:
            bad = [c for c in self.classes if c not in "0123456789" or len(c) != 1]
            if bad:
                raise ValueError(
                    f"`classes` must be digit characters '0'-'9' for preset 'digits'; got {bad}."
                )
        if len(self.captions) != len(self.classes):
            raise ValueError(
                f"`captions` must give one caption per class ({len(self.classes)}); "
                f"got {len(self.captions)}: {self.captions}."
            )
        if not self.prompts:
            raise ValueError("`prompts` must list at least one prompt; got ().")
        if len(set(self.prompts)) != len(self.prompts):
            raise ValueError(f"`prompts` must not repeat; got {self.prompts}.")

    def _check_numbers(self) -> None:
        # Each number is stored as the checker returns it (a Python int or float), so code
        # downstream reads the field as it is typed.
        for name, low in (
            *((n, 1) for n in _POSITIVE_INTS),
            *((n, 0) for n in _NON_NEGATIVE_INTS),
        ):
            object.__setattr__(self, name, check_int(getattr(self, name), name, low=low))
        for name in ("max_train_images", "detector_max_per_class"):  # None: no cap
            if getattr(self, name) is not None:
                object.__setattr__(self, name, check_int(getattr(self, name), name, low=1))
        if self.preset == "afhq-sd15" and self.resolution % 8:
            raise ValueError(
                f"`resolution` must be a multiple of 8 (the VAE's downsampling); got {self.resolution}."
            )
        for name, kw in _REALS.items():
            object.__setattr__(self, name, check_real(getattr(self, name), name, **kw))
        check_choice(self.calibration, "calibration", ("conformal", "percentile"))
        check_choice(self.sampler, "sampler", ("dpm", "ddim"))
        check_choice(self.covariance_type, "covariance_type", ("full", "diag", "tied", "spherical"))
        check_choice(self.mixed_precision, "mixed_precision", ("no", "fp16", "bf16"))
        for name in ("random_flip", "eval_initial"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"`{name}` must be a bool; got {getattr(self, name)!r}.")
        if self.run.device == "cpu" and self.mixed_precision == "fp16":
            raise ValueError(
                "`mixed_precision` 'fp16' needs a GPU; got device 'cpu' (use 'no' or 'bf16')."
            )
        if self.checkpoint_every > self.train_steps:
            raise ValueError(
                f"`checkpoint_every` must be <= `train_steps` ({self.train_steps}); got {self.checkpoint_every}."
            )

    # ------------------------------------------------------------------ helpers
    @property
    def run_dir(self) -> Path:
        """The run directory (``run.out_dir``, always set after construction)."""
        return Path(self.run.out_dir)  # type: ignore[arg-type]

    @property
    def progress(self) -> bool:
        """Progress bars on (``run.progress``)."""
        return self.run.progress

    @property
    def device(self) -> str:
        """The requested device (``run.device``)."""
        return self.run.device

    def check_data_given(self) -> None:
        """Refuse a run without data (the ``afhq-sd15`` preset cannot know where AFHQ lives).

        Raises
        ------
        deltahall._validation.BadInput
            ``data`` is ``None``.
        """
        if self.data is None:
            raise BadInput(
                f"`data` must be given for preset {self.preset!r}: an image folder with one subfolder "
                f"per class ({', '.join(self.classes)}) or a `datasets` id; got None."
            )

    def fingerprint(self) -> dict[str, Any]:
        """The settings a run's files depend on (fields not marked resume-free); see
        :func:`deltahall.experiments._run.fingerprint`."""
        from deltahall.experiments._run import fingerprint

        return fingerprint(self)

    @property
    def uses_vae(self) -> bool:
        """Latent diffusion through a frozen VAE (paper scale) or pixel-space (digits)."""
        return self.preset == "afhq-sd15"


#: The presets (:class:`deltahall._registry.Registry`): ``"digits"`` is the field defaults.
PRESETS: Registry[T2IConfig] = presets_for(
    T2IConfig,
    "t2i",
    {
        "afhq-sd15": dict(
            preset="afhq-sd15",
            model=SD15,
            embedder=CLIP_B32,
            data=None,
            classes=("cat", "dog"),
            captions=("a photo of a cat", "a photo of a dog"),
            prompts=PAPER_PROMPTS,
            resolution=512,
            random_flip=True,
            train_steps=5000,
            train_batch_size=8,
            learning_rate=1e-5,
            lr_warmup_steps=0,
            checkpoint_every=500,
            num_samples=200,
            sample_batch_size=25,
            inference_steps=25,
            guidance_scale=7.5,
            embed_batch_size=64,
            pca_dim=50,
            n_components=6,
            mixed_precision="fp16",
            run=RunOptions(out_dir=Path("runs/t2i_afhq")),
        ),
    },
    first="digits",
)
T2IConfig.PRESETS = PRESETS
