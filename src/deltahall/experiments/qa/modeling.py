"""Load a causal chat model and its tokenizer (the ``Accelerator`` comes from
:func:`deltahall.experiments._run.make_accelerator`, shared by every experiment).

``trust_remote_code`` is off unless the config asks for it. The base model is
loaded in bfloat16 on CUDA (``dtype="auto"``) and float32 on CPU; LoRA weights are
kept in float32 by peft (``autocast_adapter_dtype``).
"""

from __future__ import annotations

import logging
from typing import Any

from deltahall._validation import require

logger = logging.getLogger(__name__)


def resolve_dtype(dtype: str, device_type: str) -> Any:
    """torch dtype for the base model: 'auto' = bfloat16 on CUDA, float32 elsewhere."""
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device_type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def load_model_and_tokenizer(
    model_id: str, *, device: Any, dtype: str = "auto", trust_remote_code: bool = False
) -> tuple[Any, Any]:
    """Load ``model_id`` (hub id or local folder) onto ``device``; returns ``(model, tokenizer)``.

    The tokenizer gets a pad token (its eos token) when it has none.
    """
    import torch

    device = torch.device(device)
    if model_id.startswith(
        "@"
    ):  # a registry alias (e.g. '@gemma3-270m'): pinned weights, cached conversion
        from deltahall.models import load_causal_lm

        model, tokenizer = load_causal_lm(
            model_id, device=str(device), dtype=resolve_dtype(dtype, device.type)
        )
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        return model, tokenizer
    transformers = require("transformers", "qa", what="the QA experiment")
    AutoModelForCausalLM, AutoTokenizer = (
        transformers.AutoModelForCausalLM,
        transformers.AutoTokenizer,
    )
    tokenizer = AutoTokenizer.from_pretrained(model_id, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(
                f"model {model_id!r}: the tokenizer has neither a pad nor an eos token."
            )
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(
        model_id,
        dtype=resolve_dtype(dtype, device.type),
        trust_remote_code=trust_remote_code,
        use_safetensors=True,  # never unpickle weights
    )
    model.to(device)
    logger.info("loaded %s on %s (%s)", model_id, device, next(model.parameters()).dtype)
    return model, tokenizer


def check_models(config: Any) -> None:
    """Refuse, before a run writes anything, a model that cannot be loaded here (one line each)."""
    from deltahall.experiments.qa.config import TINY_MODEL
    from deltahall.models.registry import check_loadable

    for spec in config.models:
        if spec != TINY_MODEL:
            check_loadable(spec)
