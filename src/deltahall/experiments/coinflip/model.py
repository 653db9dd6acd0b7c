"""The coin-flip model: a small transformer over coin-label tokens (paper Section 7.1).

Paper: an 8-layer transformer with 64 hidden and 256 feed-forward dimensions. Here each chosen
coin is one token (an embedding per coin label, no positional encoding), so the sequence has
length N and attention has something to attend to; the encoder output is mean-pooled, which
makes the model invariant to the order of the chosen coins. The authors' code instead fed the
chosen labels as one float vector (a sequence of length 1, where attention is the identity on
one token); ``float_input=True`` reproduces that.
"""

from __future__ import annotations

from typing import Any

from deltahall.experiments.coinflip.config import CoinFlipConfig


def build_model(config: CoinFlipConfig, init_seed: int) -> Any:
    """The network of ``config`` with weights drawn from ``init_seed``.

    The global torch RNG is forked, seeded and restored, so building a model neither depends
    on nor changes the caller's global RNG state.

    Returns
    -------
    CoinTransformer
        ``forward(labels: LongTensor (B, N))`` returns ``(B,)`` regression outputs for
        ``objective="mse"`` or ``(B, N + 1)`` logits over the counts 0..N for ``"ce"``.
    """
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        return _module_class()(config)


def _module_class() -> Any:
    import torch
    from torch import nn

    class CoinTransformer(nn.Module):
        """Token transformer (or the authors' float-vector variant) with a pooled head."""

        def __init__(self, config: CoinFlipConfig) -> None:
            super().__init__()
            self.n = config.n
            self.objective = config.objective
            self.float_input = "float_input" in config.authors_bugs
            d = config.d_model
            if self.float_input:
                self.input_proj: nn.Module = nn.Linear(config.n, d)
            else:
                self.input_proj = nn.Embedding(config.n_coins, d)
            layer = nn.TransformerEncoderLayer(
                d, config.n_heads, config.d_ff, config.dropout, batch_first=True, norm_first=True
            )
            self.encoder = nn.TransformerEncoder(
                layer, config.n_layers, norm=nn.LayerNorm(d), enable_nested_tensor=False
            )
            self.head = nn.Linear(d, 1 if config.objective == "mse" else config.n + 1)

        def forward(self, labels: torch.Tensor) -> torch.Tensor:
            if self.float_input:
                h = self.input_proj(labels.to(torch.float32)).unsqueeze(1)
            else:
                h = self.input_proj(labels)
            h = self.encoder(h).mean(dim=1)
            out = self.head(h)
            return out.squeeze(-1) if self.objective == "mse" else out

    return CoinTransformer
