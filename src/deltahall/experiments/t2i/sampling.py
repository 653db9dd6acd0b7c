"""Batched, seeded sampling with classifier-free guidance.

Draws ``n`` images for one prompt in batches of ``batch_size`` (never one image per
call). The initial noise comes from the caller's ``torch.Generator`` (on the CPU, so a
seed gives the same images on any device); the evaluation seeds it identically at every
checkpoint, so differences between checkpoints come from the model, not the noise.
"""

from __future__ import annotations

from typing import Any

from deltahall.experiments.t2i.modeling import Components, latents_to_images


def sample_images(
    components: Components,
    sampler: Any,
    cond: Any,
    uncond: Any,
    *,
    n: int,
    batch_size: int,
    resolution: int,
    steps: int,
    guidance_scale: float,
    generator: Any,
    device: Any,
    use_guidance: bool = True,
    progress: Any = None,
) -> Any:
    """Draw ``n`` images for one prompt.

    Parameters
    ----------
    components : Components
        UNet (used in eval mode by the caller), VAE or none.
    sampler : diffusers scheduler
        Inference scheduler (stateful; re-initialised for each batch).
    cond, uncond : Tensor of shape (1, L, D)
        Text-encoder states of the prompt and of the empty prompt.
    n, batch_size : int
        Images in total and per UNet batch (doubled inside under guidance).
    guidance_scale : float
        :math:`\\epsilon = \\epsilon_u + w(\\epsilon_c - \\epsilon_u)`; ``use_guidance=False``
        (e.g. for the empty prompt, where both branches coincide) or ``w = 1`` skips the
        unconditional branch.
    generator : torch.Generator
        CPU generator for the initial noise.
    progress : tqdm or None
        Advanced by the number of images of each finished batch.

    Returns
    -------
    Tensor of shape (n, C, resolution, resolution)
        Float32 images in [0, 1], on the CPU.
    """
    import torch

    unet = components.unet
    guided = use_guidance and guidance_scale != 1.0
    shape = components.latent_shape(resolution)
    out = []
    done = 0
    while done < n:
        b = min(batch_size, n - done)
        latents = torch.randn((b, *shape), generator=generator, dtype=torch.float32).to(device)
        sampler.set_timesteps(steps, device=device)
        latents = latents * sampler.init_noise_sigma
        emb = (
            torch.cat([uncond.expand(b, -1, -1), cond.expand(b, -1, -1)])
            if guided
            else cond.expand(b, -1, -1)
        )
        with torch.no_grad():
            for t in sampler.timesteps:
                x = torch.cat([latents, latents]) if guided else latents
                x = sampler.scale_model_input(x, t)
                eps = unet(x, t, encoder_hidden_states=emb).sample.float()
                if guided:
                    eps_u, eps_c = eps.chunk(2)
                    eps = eps_u + guidance_scale * (eps_c - eps_u)
                latents = sampler.step(eps, t, latents).prev_sample
            out.append(latents_to_images(components, latents).cpu())
        done += b
        if progress is not None:
            progress.update(b)
    return torch.cat(out)
