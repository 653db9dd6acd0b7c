"""A DDPM with a small MLP denoiser for low-dimensional data (the peer's toy setting).

The denoiser follows the design of Aithal et al. (2024, ``gaussian_experiments``), written anew:
a linear embedding of the point, a sinusoidal time embedding passed through a linear layer and a
LeakyReLU, ``n_blocks`` residual blocks (LayerNorm, LeakyReLU, linear; plus the time embedding;
LayerNorm, LeakyReLU, linear; plus the skip), and a LayerNorm + linear read-out of ε. The peer's
code builds its blocks as ``[block] * n``, i.e. one block applied ``n`` times with shared weights;
``tied_blocks=True`` keeps that.

The diffusion is the peer's: a linear β schedule, ε-prediction trained with the mean squared error
over uniformly drawn timesteps, ancestral sampling with the "fixed-large" variance (β_t, with the
posterior variance at t = 1 for t = 0) and no clipping of the predicted x̂₀.

All randomness comes from explicit ``torch.Generator`` objects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

FloatArray = npt.NDArray[np.float64]


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps, shape ``(B, dim)`` (sines then cosines)."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(10000.0) * torch.arange(half, dtype=torch.float32) / max(half - 1, 1)
    )
    arg = t.to(torch.float32)[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(arg), torch.cos(arg)], dim=1)
    if dim % 2:
        emb = torch.nn.functional.pad(emb, (0, 1))
    return emb


class _Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width, bias=False)
        self.norm2 = nn.LayerNorm(width)
        self.fc2 = nn.Linear(width, width, bias=False)
        self.time = nn.Linear(width, width)
        self.act = nn.LeakyReLU(0.02)

    def forward(self, h: torch.Tensor, t_emb: torch.Tensor) -> torch.Tensor:
        out = self.fc1(self.act(self.norm1(h))) + self.time(t_emb)
        return h + self.fc2(self.act(self.norm2(out)))


class Denoiser(nn.Module):
    """ε-prediction MLP: ``forward(x (B, d), t (B,)) -> ε̂ (B, d)``."""

    def __init__(self, dim: int, *, width: int, n_blocks: int, tied_blocks: bool) -> None:
        super().__init__()
        self.width = width
        self.n_blocks = n_blocks
        self.tied_blocks = tied_blocks
        self.inp = nn.Linear(dim, width, bias=False)
        self.t_proj = nn.Sequential(nn.Linear(width, width), nn.LeakyReLU(0.02))
        self.blocks = nn.ModuleList([_Block(width) for _ in range(1 if tied_blocks else n_blocks)])
        self.out_norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t_emb = self.t_proj(timestep_embedding(t, self.width))
        h = self.inp(x)
        for i in range(self.n_blocks):
            h = self.blocks[0 if self.tied_blocks else i](h, t_emb)
        return self.out(self.out_norm(h))  # type: ignore[no-any-return]


def build_denoiser(
    dim: int, *, width: int, n_blocks: int, tied_blocks: bool, seed: int
) -> Denoiser:
    """A freshly initialised :class:`Denoiser` (weights a function of ``seed`` only)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Denoiser(dim, width=width, n_blocks=n_blocks, tied_blocks=tied_blocks)


@dataclass(frozen=True)
class Schedule:
    """The β schedule and the quantities sampling needs (float64, as in the peer's code)."""

    betas: torch.Tensor
    alphas_bar: torch.Tensor

    @classmethod
    def linear(cls, timesteps: int, beta_start: float, beta_end: float) -> Schedule:
        betas = torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64)
        return cls(betas=betas, alphas_bar=torch.cumprod(1.0 - betas, dim=0))

    @property
    def timesteps(self) -> int:
        return int(self.betas.shape[0])

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Draw :math:`x_t = \\sqrt{\\bar\\alpha_t} x_0 + \\sqrt{1-\\bar\\alpha_t} ε`."""
        ab = self.alphas_bar[t].to(x0.dtype)[:, None]
        return ab.sqrt() * x0 + (1.0 - ab).sqrt() * noise


def diffusion_loss(
    model: nn.Module, x0: torch.Tensor, schedule: Schedule, gen: torch.Generator
) -> torch.Tensor:
    """Mean squared error of the ε-prediction at uniform timesteps (the DDPM "simple" loss)."""
    t = torch.randint(0, schedule.timesteps, (x0.shape[0],), generator=gen)
    noise = torch.randn(x0.shape, generator=gen, dtype=x0.dtype)
    return torch.mean((model(schedule.q_sample(x0, t, noise), t) - noise) ** 2)


@dataclass(frozen=True)
class Samples:
    """Output of :func:`sample`: final points and the variance of x̂₀ over the last steps."""

    x: FloatArray
    trajectory_variance: FloatArray


@torch.inference_mode()
def sample(
    model: nn.Module,
    schedule: Schedule,
    *,
    n: int,
    dim: int,
    window: int,
    batch_size: int,
    gen: torch.Generator,
    x0: torch.Tensor | None = None,
) -> Samples:
    """Ancestral sampling; keeps x̂₀ of the last ``window`` steps and returns its variance.

    The trajectory variance of a sample is the variance over the last ``window`` reverse steps
    (t = window-1, ..., 0) of the predicted :math:`\\hat x_0(x_t, t)`, averaged over coordinates
    (the peer's ``np.mean(np.var(pred_x0[:, -w:], axis=1), axis=1)``).

    With ``x0`` given (real points, ``(n, dim)``), each is first noised to step ``window - 1`` by
    the forward process and only the last ``window`` steps are run: the trajectory variance a real
    point gets, for calibrating a threshold on real samples.
    """
    model.eval()
    T = schedule.timesteps
    betas = schedule.betas
    ab = schedule.alphas_bar
    ab_prev = torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])
    post_var = betas * (1.0 - ab_prev) / (1.0 - ab)
    var = torch.cat([post_var[1:2], betas[1:]])  # fixed-large
    c_x0 = betas * ab_prev.sqrt() / (1.0 - ab)
    c_xt = (1.0 - ab_prev) * (1.0 - betas).sqrt() / (1.0 - ab)
    xs, vs = [], []
    start = T - 1 if x0 is None else window - 1
    for lo in range(0, n, batch_size):
        b = min(batch_size, n - lo)
        if x0 is None:
            x = torch.randn((b, dim), generator=gen, dtype=torch.float32)
        else:
            tt = torch.full((b,), start, dtype=torch.int64)
            x = schedule.q_sample(
                x0[lo : lo + b], tt, torch.randn((b, dim), generator=gen, dtype=torch.float32)
            )
        preds = []
        for ti in range(start, -1, -1):
            t = torch.full((b,), ti, dtype=torch.int64)
            eps = model(x, t)
            x0_hat = (x - math.sqrt(1.0 - float(ab[ti])) * eps) / math.sqrt(float(ab[ti]))
            if ti < window:
                preds.append(x0_hat.to(torch.float64))
            mean = float(c_x0[ti]) * x0_hat + float(c_xt[ti]) * x
            if ti > 0:
                x = mean + math.sqrt(float(var[ti])) * torch.randn(
                    (b, dim), generator=gen, dtype=torch.float32
                )
            else:
                x = mean
        traj = torch.stack(preds, dim=1)  # (b, window, dim)
        vs.append(traj.var(dim=1, unbiased=False).mean(dim=1).numpy())
        xs.append(x.to(torch.float64).numpy())
    return Samples(x=np.concatenate(xs), trajectory_variance=np.concatenate(vs))


def train_steps(
    model: nn.Module,
    opt: Any,
    data: torch.Tensor,
    schedule: Schedule,
    *,
    first: int,
    last: int,
    batch_size: int,
    seed_of: Any,
) -> list[float]:
    """Optimizer steps ``first+1 .. last`` on ``data`` (model units); returns each step's loss.

    Step ``s`` uses minibatch ``s mod (n // batch)`` of the permutation of epoch
    ``s // (n // batch)``; the permutation and the step's timesteps and noise come from
    generators seeded by ``seed_of("perm", epoch)`` and ``seed_of("step", s)``, so any range of
    steps gives the same result whether or not it is run in one go (resume needs no RNG state).
    """
    model.train()
    n = data.shape[0]
    per_epoch = max(1, n // batch_size)
    losses = []
    perm: torch.Tensor | None = None
    perm_epoch = -1
    for s in range(first, last):
        epoch, j = divmod(s, per_epoch)
        if epoch != perm_epoch:
            perm = torch.randperm(
                n, generator=torch.Generator().manual_seed(seed_of("perm", epoch))
            )
            perm_epoch = epoch
        assert perm is not None
        idx = perm[j * batch_size : (j + 1) * batch_size]
        gen = torch.Generator().manual_seed(seed_of("step", s))
        loss = diffusion_loss(model, data[idx], schedule, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


@torch.inference_mode()
def fixed_loss(
    model: nn.Module, data: torch.Tensor, schedule: Schedule, *, seed: int, batch_size: int
) -> float:
    """The loss on ``data`` with timesteps and noise fixed by ``seed`` (comparable across checkpoints)."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    total = 0.0
    for lo in range(0, data.shape[0], batch_size):
        x = data[lo : lo + batch_size]
        total += float(diffusion_loss(model, x, schedule, gen)) * x.shape[0]
    return total / data.shape[0]
