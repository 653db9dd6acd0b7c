"""Fixtures: a tiny Stable-Diffusion-layout model, a tiny CLIP vision model and random
cat/dog images, all built from configs into tmp folders (no download), plus one shared
digits embedder so each digits test does not retrain it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

CLASSES = ("cat", "dog")


def _cfg(preset: str = "digits", **kw):
    """The T2IConfig preset ``preset`` with ``kw`` (run options by their names go into ``run``)."""
    from deltahall.experiments.t2i import T2IConfig as _C

    return _C.from_preset(preset, **kw)


def build_tiny_sd(folder: Path) -> Path:
    """unet/ text_encoder/ tokenizer/ vae/ scheduler/ with random tiny weights (SD layout)."""
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from deltahall.experiments.t2i.config import PAPER_PROMPTS
    from deltahall.experiments.t2i.tiny import build_tokenizer, words_of

    tok = build_tokenizer(words_of([*PAPER_PROMPTS, "a photo of a cat", "a photo of a dog"]), 12)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=4,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        latent_channels=4,
        norm_num_groups=8,
        sample_size=16,
    )
    text = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tok),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=12,
            projection_dim=16,
            pad_token_id=tok.pad_token_id,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
        )
    )
    sched = DDPMScheduler(
        num_train_timesteps=100, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012
    )
    unet.save_pretrained(folder / "unet")
    vae.save_pretrained(folder / "vae")
    text.save_pretrained(folder / "text_encoder")
    tok.save_pretrained(folder / "tokenizer")
    sched.save_pretrained(folder / "scheduler")
    return folder


def build_tiny_clip(folder: Path) -> Path:
    """A tiny CLIPVisionModelWithProjection (32x32 input) + its image processor."""
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(1)
    CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            projection_dim=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        )
    ).save_pretrained(folder)
    CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(folder)
    return folder


def write_pet_images(root: Path, per_class: int = 20, seed: int = 0) -> Path:
    """Random RGB images in root/cat, root/dog; cats reddish, dogs bluish, odd sizes."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for k, name in enumerate(CLASSES):
        d = root / name
        d.mkdir(parents=True)
        for i in range(per_class):
            h, w = int(rng.integers(20, 28)), int(rng.integers(20, 28))
            arr = rng.integers(0, 120, (h, w, 3))
            arr[..., 0 if k == 0 else 2] += 120
            Image.fromarray(arr.astype(np.uint8)).save(d / f"{i:03d}.png")
    return root


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Small tensors: one thread is faster, and far faster on a busy 2-core machine."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def sd_assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import torch

    root = tmp_path_factory.mktemp("sd_assets")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {
            "model": build_tiny_sd(root / "sd"),
            "clip": build_tiny_clip(root / "clip"),
            "data": write_pet_images(root / "afhq"),
        }
    finally:
        torch.set_num_threads(old)


@pytest.fixture(scope="session")
def digits_embedder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained digits embedder folder (seed 0, resolution 8) to copy into run dirs."""
    import torch

    from deltahall.experiments.t2i.digits_embedder import ensure_digits_embedder

    root = tmp_path_factory.mktemp("digits_embedder")
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # session fixtures run before the autouse one
    try:
        ensure_digits_embedder(root / "embedder", _cfg(out_dir=root), "cpu")
    finally:
        torch.set_num_threads(old)
    return root / "embedder"


@pytest.fixture
def digits_dir(tmp_path: Path, digits_embedder_dir: Path) -> Path:
    """An empty run dir that already holds the shared trained digits embedder."""
    out = tmp_path / "run"
    shutil.copytree(digits_embedder_dir, out / "embedder")
    return out
