"""Pretrained models by name: the registry, embedders and causal language models.

>>> from deltahall.models import ALIASES
>>> sorted(ALIASES)
['@digits-cnn', '@efficientnet-lite0', '@gemma3-270m', '@minilm', '@smollm2-135m-instruct']

- :func:`resolve_model`: alias / local folder / hub id -> :class:`ResolvedModel`, with the
  alias's pinned SHA-256 checked;
- :func:`load_embedder`: texts or images -> float32 embeddings (:class:`Embedder`);
- :func:`load_causal_lm`: ``(model, tokenizer)``;
- :func:`cache_dir`: ``$DELTAHALL_CACHE`` or the user cache dir.

Heavy libraries (torch, transformers, sentence-transformers) are imported inside functions.
"""

from __future__ import annotations

from deltahall.models.base import Embedder
from deltahall.models.embedders import load_embedder
from deltahall.models.gemma import load_causal_lm
from deltahall.models.registry import (
    ALIASES,
    AliasSpec,
    ModelUnavailableError,
    ResolvedModel,
    cache_dir,
    resolve_model,
)

__all__ = [
    "ALIASES",
    "AliasSpec",
    "Embedder",
    "ModelUnavailableError",
    "ResolvedModel",
    "cache_dir",
    "load_causal_lm",
    "load_embedder",
    "resolve_model",
]
