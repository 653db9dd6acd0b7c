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


@pytest.mark.parametrize("preset", ["digits", "afhq-sd15"])
def test_every_preset_holds_plain_values_of_the_field_types(preset: str) -> None:
    # Issue 13: a field typed int holds an int in every preset (no None filled in later), so
    # the pipeline reads it as it is; None only where the type says so (`data`, the caps).
    import dataclasses
    import typing

    from deltahall.experiments.t2i import T2IConfig

    cfg = _cfg(preset=preset)
    hints = typing.get_type_hints(T2IConfig)
    optional = {
        f.name
        for f in dataclasses.fields(T2IConfig)
        if type(None) in typing.get_args(hints[f.name])
    }
    assert optional == {"data", "max_train_images", "detector_max_per_class"}
    for f in dataclasses.fields(T2IConfig):
        v, tp = getattr(cfg, f.name), hints[f.name]
        if f.name in optional:
            continue
        if tp is int:
            assert type(v) is int, (f.name, v)
        elif tp is float:
            assert type(v) is float, (f.name, v)
        elif typing.get_origin(tp) is tuple:
            assert isinstance(v, tuple) and all(type(s) is str for s in v), (f.name, v)


def test_numbers_are_stored_as_their_field_types() -> None:
    import numpy as np

    cfg = _cfg(learning_rate=1, resolution=np.int64(8), train_steps=np.int32(300), percentile=5)
    assert type(cfg.learning_rate) is float and cfg.learning_rate == 1.0
    assert type(cfg.resolution) is int and type(cfg.train_steps) is int
    assert type(cfg.percentile) is float
    assert cfg.fingerprint()["learning_rate"] == 1.0


def test_learning_rate_schedule_reads_the_fields() -> None:
    from deltahall.experiments.t2i.train import learning_rate

    cfg = _cfg(learning_rate=1e-3, lr_warmup_steps=4)
    assert [learning_rate(cfg, s) for s in range(5)] == [2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3]
    assert learning_rate(_cfg(lr_warmup_steps=0), 0) == _cfg().learning_rate


def test_the_pipeline_has_no_fallbacks_on_config_fields() -> None:
    # `config.x or default` downstream is a second default (issue 13); None with a meaning is
    # spelled out where it is used.
    import ast
    import inspect

    from deltahall.experiments.t2i import pipeline, train

    found = []
    for mod in (pipeline, train):
        for node in ast.walk(ast.parse(inspect.getsource(mod))):
            if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
                first = node.values[0]
                if isinstance(first, ast.Attribute) and ast.unparse(first.value) in (
                    "cfg",
                    "config",
                    "self.cfg",
                ):
                    found.append(f"{mod.__name__}: {ast.unparse(node)}")
    assert not found, found
