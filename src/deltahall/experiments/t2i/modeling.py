"""Load the text-to-image components and move images in and out of latent space.

One loader for both presets: a diffusers folder or hub id holding ``unet/``,
``text_encoder/``, ``tokenizer/``, ``scheduler/`` and (paper scale) ``vae/``. The UNet is
the only trainable part; text encoder and VAE are frozen (Section 7.3).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)


@dataclass
class Components:
    """The parts of a latent (or pixel) text-to-image diffusion model."""

    unet: Any
    text_encoder: Any
    tokenizer: Any
    noise_scheduler: Any
    vae: Any | None

    @property
    def latent_scale(self) -> int:
        """Pixels per latent cell (8 for SD's VAE, 1 without a VAE)."""
        if self.vae is None:
            return 1
        return int(2 ** (len(self.vae.config.block_out_channels) - 1))

    def latent_shape(self, resolution: int) -> tuple[int, int, int]:
        """``(channels, height, width)`` of one latent for ``resolution``-pixel images."""
        side = resolution // self.latent_scale
        return (int(self.unet.config.in_channels), side, side)

    @property
    def image_channels(self) -> int:
        """Channels of the images the model produces (3 with a VAE, the UNet's otherwise)."""
        if self.vae is None:
            return int(self.unet.config.out_channels)
        return int(self.vae.config.in_channels)


def load_components(model: str, *, use_vae: bool) -> Components:
    """Load a diffusers text-to-image model by hub id or local folder.

    Parameters
    ----------
    model : str
        Hub id or folder with ``unet/ text_encoder/ tokenizer/ scheduler/`` (+ ``vae/``).
    use_vae : bool
        Load ``vae/`` (latent diffusion) or diffuse pixels directly.

    Returns
    -------
    Components
        Text encoder and VAE frozen (``requires_grad_(False)``, eval mode); the UNet in
        train mode with gradients.
    """
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import AutoTokenizer, CLIPTextModel

    unet = UNet2DConditionModel.from_pretrained(model, subfolder="unet", use_safetensors=True)
    text_encoder = CLIPTextModel.from_pretrained(
        model, subfolder="text_encoder", use_safetensors=True
    )
    tokenizer = AutoTokenizer.from_pretrained(model, subfolder="tokenizer")
    noise_scheduler = DDPMScheduler.from_pretrained(model, subfolder="scheduler")
    vae = (
        AutoencoderKL.from_pretrained(model, subfolder="vae", use_safetensors=True)
        if use_vae
        else None
    )
    text_encoder.requires_grad_(False).eval()
    if vae is not None:
        vae.requires_grad_(False).eval()
    unet.train()
    return Components(
        unet=unet,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        noise_scheduler=noise_scheduler,
        vae=vae,
    )


def encode_text(components: Components, texts: list[str], device: Any) -> Any:
    """Frozen text-encoder hidden states, shape ``(len(texts), max_length, hidden)``.

    Padded to the tokenizer's ``model_max_length`` as Stable Diffusion does.
    """
    import torch

    tok = components.tokenizer(
        list(texts),
        padding="max_length",
        max_length=components.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )
    enc = components.text_encoder
    with torch.no_grad():
        out = enc(tok.input_ids.to(device))[0]
    return out


def make_sampler(noise_scheduler: Any, kind: str) -> Any:
    """A fast inference scheduler built from the training scheduler's config."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    if kind == "dpm":
        return DPMSolverMultistepScheduler.from_config(
            noise_scheduler.config, algorithm_type="dpmsolver++"
        )
    if kind == "ddim":
        return DDIMScheduler.from_config(noise_scheduler.config)
    raise ValueError(f"`sampler` must be 'dpm' or 'ddim'; got {kind!r}.")


def images_to_latents(components: Components, images: Any, generator: Any) -> Any:
    """Images in [0, 1] ``(n, C, H, W)`` -> model latents (VAE sample x scaling, or [-1, 1] pixels)."""
    import torch

    x = images * 2.0 - 1.0
    if components.vae is None:
        return x
    vae = components.vae
    with torch.no_grad():
        dist = vae.encode(x.to(dtype=vae.dtype)).latent_dist
        lat = dist.sample(generator=generator)
    return lat * vae.config.scaling_factor


def latents_to_images(components: Components, latents: Any) -> Any:
    """Model latents -> images in [0, 1], float32 on the latents' device."""
    import torch

    if components.vae is None:
        x = latents
    else:
        vae = components.vae
        with torch.no_grad():
            x = vae.decode((latents / vae.config.scaling_factor).to(dtype=vae.dtype)).sample
    return ((x.float() + 1.0) / 2.0).clamp(0.0, 1.0)
