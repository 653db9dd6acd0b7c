"""Fixtures: one cache dir per test session (so the digit CNN trains once), one torch thread."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("deltahall_cache")


@pytest.fixture(autouse=True)
def _cache_and_threads(shared_cache: Path, monkeypatch: pytest.MonkeyPatch):
    """Every test writes its cache artefacts to the session's tmp cache, never ~/.cache."""
    import torch

    monkeypatch.setenv("DELTAHALL_CACHE", str(shared_cache))
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def minilm():
    from deltahall.models import load_embedder

    return load_embedder("@minilm")


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CLIPVisionModelWithProjection (32x32 input) + its image processor, random weights."""
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    folder = tmp_path_factory.mktemp("clip")
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
