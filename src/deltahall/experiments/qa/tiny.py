"""A tiny causal chat LM built offline, so the QA pipeline runs end to end without a hub.

The model is a Qwen2 architecture (2 layers, hidden size 64) with random weights;
the tokenizer is a byte-level BPE trained here with ``tokenizers`` on the given
texts (the fine-tuning questions/answers and TruthfulQA text), with a ChatML chat
template like Qwen's. Both are saved in the ``transformers`` layout, so the folder
loads with ``AutoModelForCausalLM`` / ``AutoTokenizer`` like any hub model.

Its answers are gibberish at first and parrot the training text after a few epochs:
the numbers it produces check the plumbing, they are **not** findings.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from deltahall.io.atomic import atomic_dir

logger = logging.getLogger(__name__)

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
MARKER = "deltahall_tiny.json"


def build_tiny_model(
    folder: str | os.PathLike[str],
    texts: Iterable[str],
    *,
    seed: int = 0,
    vocab_size: int = 1024,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    initializer_range: float = 0.3,
) -> Path:
    """Train a tokenizer on ``texts``, build a random tiny Qwen2 model, save both to ``folder``.

    Parameters
    ----------
    folder : path
        Output folder (transformers layout: ``config.json``, ``model.safetensors``,
        ``tokenizer.json``, ``tokenizer_config.json``, ``generation_config.json``).
    texts : iterable of str
        Text to train the BPE tokenizer on.
    seed : int
        Seeds the weight initialisation (through a forked torch RNG).
    initializer_range : float
        Standard deviation of the random weights. Larger than the usual 0.02 so that the
        tied output layer can express non-uniform next-token distributions at all (with
        RMS-normalised hidden states, logits are bounded by the embedding norms), which
        lets a LoRA fine-tuning visibly lower the loss.

    Returns
    -------
    pathlib.Path
        ``folder``.
    """
    final = Path(folder)
    if final.is_dir() and not any(final.iterdir()):
        final.rmdir()  # an empty placeholder folder (e.g. a test's temporary dir)
    # Built under a temporary name and renamed: a kill at any instant leaves no folder or a whole one.
    with atomic_dir(final, remove_stale=True) as tmp:
        _build(
            tmp,
            list(texts),
            seed=seed,
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            num_layers=num_layers,
            num_heads=num_heads,
            initializer_range=initializer_range,
        )
    return final


def _build(
    folder: Path,
    texts: list[str],
    *,
    seed: int,
    vocab_size: int,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    initializer_range: float,
) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        GenerationConfig,
        PreTrainedTokenizerFast,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )
    hf_tok.chat_template = CHAT_TEMPLATE
    hf_tok.save_pretrained(folder)

    eos_id = int(hf_tok.convert_tokens_to_ids("<|im_end|>"))  # type: ignore[arg-type]
    pad_id = int(hf_tok.convert_tokens_to_ids("<|endoftext|>"))  # type: ignore[arg-type]
    cfg = Qwen2Config(
        vocab_size=len(hf_tok),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=max(1, num_heads // 2),
        max_position_embeddings=512,
        tie_word_embeddings=True,
        initializer_range=initializer_range,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        bos_token_id=None,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(cfg)
    model.generation_config = GenerationConfig(eos_token_id=eos_id, pad_token_id=pad_id)
    model.save_pretrained(folder)
    (folder / MARKER).write_text(
        json.dumps(
            {
                "note": "tiny random Qwen2 built by deltahall for offline plumbing; not a real model",
                "seed": seed,
                "vocab_size": len(hf_tok),
                "n_texts": len(texts),
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("tiny model: %d parameters, vocab %d, built in %s", n_params, len(hf_tok), folder)
