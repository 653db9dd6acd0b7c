"""T2IConfig: preset resolution, cross-field checks, fingerprint."""

from __future__ import annotations

from pathlib import Path

import pytest

from deltahall.experiments.t2i import PRESETS
from deltahall.experiments.t2i.config import PAPER_PROMPTS


def _cfg(preset: str = "digits", **kw):
    """The preset ``preset`` with ``kw`` applied (run options by their names go into ``run``)."""
    return PRESETS.get(preset).replace(**kw)


def test_the_digits_preset_is_the_field_defaults() -> None:
    from deltahall.experiments.t2i import T2IConfig

    cfg = _cfg()
    assert PRESETS.names() == ("digits", "afhq-sd15") and cfg == T2IConfig()
    assert cfg.run_dir == Path("runs/t2i_digits") and cfg.run.threads == 1
    assert not cfg.uses_vae
    assert PRESETS.get("afhq-sd15").run.out_dir == Path("runs/t2i_afhq")


def test_afhq_without_data_is_refused_before_a_run() -> None:
    cfg = _cfg(preset="afhq-sd15")
    with pytest.raises(ValueError, match=r"`data` must be given for preset 'afhq-sd15'"):
        cfg.check_data_given()


def test_afhq_preset_uses_paper_prompts_and_keeps_explicit_values() -> None:
    cfg = _cfg(preset="afhq-sd15", data="/data/afhq", train_steps=50, checkpoint_every=10)
    assert cfg.prompts == PAPER_PROMPTS
    assert cfg.captions == ("a photo of a cat", "a photo of a dog")
    assert cfg.caption_dropout == 0.1 and cfg.percentile == 10.0 and cfg.holdout_fraction == 0.5
    assert cfg.calibration == "conformal"
    assert (cfg.train_steps, cfg.checkpoint_every, cfg.mixed_precision) == (50, 10, "fp16")
    assert cfg.uses_vae


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        (
            dict(model="runwayml/stable-diffusion-v1-5"),
            ValueError,
            r"`model` must be '@tiny' for preset 'digits'",
        ),
        (
            dict(preset="afhq-sd15", data="x", model="@tiny"),
            ValueError,
            r"only works with preset 'digits'",
        ),
        (dict(classes=("0",), captions=("a",)), ValueError, r"at least two latent states"),
        (dict(classes=("0", "a"), captions=("x", "y")), ValueError, r"digit characters"),
        (dict(captions=("only one",)), ValueError, r"one caption per class \(2\)"),
        (dict(prompts=("a", "a")), ValueError, r"`prompts` must not repeat"),
        (dict(prompts="a handwritten digit"), TypeError, r"sequence of strings"),
        (
            dict(train_steps=10, checkpoint_every=20),
            ValueError,
            r"`checkpoint_every` must be <= `train_steps` \(10\); got 20",
        ),
        (dict(caption_dropout=1.0), ValueError, r"caption_dropout"),
        (dict(num_samples=0), ValueError, r"num_samples"),
        (dict(guidance_scale=0.5), ValueError, r"guidance_scale"),
        (
            dict(percentile=0.0),
            ValueError,
            r"`percentile` must be",
        ),  # alpha = percentile / 100 must be > 0
        (dict(calibration="margin"), ValueError, r"`calibration` must be one of"),
        (
            dict(device="tpu"),
            ValueError,
            r"`device` must be 'auto', 'cpu', 'cuda', 'cuda:i' or 'mps'; got 'tpu'",
        ),
        (dict(device="cpu", mixed_precision="fp16"), ValueError, r"'fp16' needs a GPU"),
        (dict(progress="yes"), TypeError, r"`progress` must be a bool"),
        (dict(preset="afhq-sd15", data="x", resolution=500), ValueError, r"multiple of 8"),
        (dict(resume_from_checkpoint=" "), ValueError, r"resume_from_checkpoint"),
        (dict(preset="sdxl"), ValueError, r"preset"),
    ],
)
def test_config_errors_name_the_parameter(kwargs: dict, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        _cfg(**kwargs)


def test_fingerprint_ignores_only_resume_free_fields() -> None:
    a = _cfg()
    b = a.replace(
        out_dir=Path("elsewhere"), train_steps=2400, progress=False, resume_from_checkpoint="latest"
    )
    assert a.fingerprint() == b.fingerprint()
    assert not {"train_steps", "num_workers", "run", "out_dir", "progress"} & set(a.fingerprint())
    assert {"learning_rate", "seed", "prompts"} <= set(a.fingerprint())
    assert a.fingerprint() != a.replace(learning_rate=5e-4).fingerprint()
