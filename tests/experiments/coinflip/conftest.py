"""Coin-flip tests: torch on one thread (the machine is shared; more threads than free
cores makes these tiny models many times slower), tiny networks where size does not matter."""

from __future__ import annotations

import pytest

from deltahall.experiments.coinflip.config import CoinFlipConfig


@pytest.fixture(autouse=True)
def _one_torch_thread():
    torch = pytest.importorskip("torch")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _tiny(**kw) -> CoinFlipConfig:
    base = dict(n=2, m=200, epochs=2, batch_size=32, n_layers=1, d_model=16, n_heads=2, d_ff=32)
    base.update(kw)
    return CoinFlipConfig(**base)


@pytest.fixture
def tiny():
    """Factory of configs that train in well under a second."""
    return _tiny
