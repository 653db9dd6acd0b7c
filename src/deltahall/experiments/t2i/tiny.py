"""The tiny offline text-to-image model of the ``digits`` preset, built from configs.

Written in the diffusers layout (``unet/``, ``text_encoder/``, ``tokenizer/``,
``scheduler/``; no ``vae/``: the digits preset diffuses pixels), so it is loaded by
:func:`deltahall.experiments.t2i.modeling.load_components` exactly like Stable Diffusion.

- ``UNet2DConditionModel`` with two resolutions (32 and 64 channels) and cross-attention
  on the lower one; random initialisation, trained from scratch.
- ``CLIPTextModel`` (2 layers, width 32), randomly initialised and **frozen**, as the
  paper freezes SD's text encoder: it is a fixed featuriser of the caption that the UNet
  learns to read through cross-attention.
- A word-level tokenizer (``tokenizers`` ``WordLevel`` over the caption and prompt
  vocabulary, wrapped in ``PreTrainedTokenizerFast``) that adds ``<bos>``/``<eos>`` and pads
  to a fixed length, like CLIP's.
- ``DDPMScheduler`` with the cosine ("squaredcos_cap_v2") schedule, better suited than
  SD's scaled-linear one to images this small.

The model learns to draw the chosen digits; as a model of handwriting it is a toy.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from deltahall.experiments._checkpoint import named_os_error
from deltahall.io.atomic import atomic_dir

logger = logging.getLogger(__name__)

MARKER = "deltahall_tiny.json"
SPECIAL = ("<pad>", "<unk>", "<bos>", "<eos>")

#: Architecture of the tiny model (recorded in the marker file).
TINY_SPEC: dict[str, Any] = {
    "block_out_channels": [32, 64],
    "layers_per_block": 1,
    "cross_attention_dim": 32,
    "attention_head_dim": 8,
    "norm_num_groups": 8,
    "text_layers": 2,
    "text_heads": 4,
    "text_intermediate": 64,
    "max_length": 8,
    "num_train_timesteps": 1000,
    "beta_schedule": "squaredcos_cap_v2",
}


def words_of(texts: Iterable[str]) -> list[str]:
    """Sorted lower-case word vocabulary of ``texts`` (whitespace/punctuation split)."""
    vocab: set[str] = set()
    for t in texts:
        vocab.update(re.findall(r"\w+|[^\w\s]", t.lower()))
    return sorted(vocab)


def build_tokenizer(words: Iterable[str], max_length: int) -> Any:
    """A word-level ``PreTrainedTokenizerFast``: ``<bos> w1 ... wn <eos> <pad>...``.

    Unknown words map to ``<unk>``; ids 0-3 are ``<pad> <unk> <bos> <eos>``.
    """
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL)}
    for w in words:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>",
        special_tokens=[("<bos>", vocab["<bos>"]), ("<eos>", vocab["<eos>"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_max_length=max_length,
    )


def _spec(texts: list[str], resolution: int, seed: int) -> dict[str, Any]:
    return {
        "arch": TINY_SPEC,
        "words": words_of(texts),
        "resolution": int(resolution),
        "seed": int(seed),
    }


def ensure_tiny_model(
    folder: str | os.PathLike[str], texts: Iterable[str], *, resolution: int, seed: int
) -> Path:
    """Build the tiny model into ``folder`` unless a matching one is already there.

    Parameters
    ----------
    folder : path
        Output folder (diffusers layout).
    texts : iterable of str
        Every caption and prompt; their words form the tokenizer's vocabulary.
    resolution : int
        Image side in pixels (the UNet's ``sample_size``).
    seed : int
        Seeds the random initialisation of the UNet and the text encoder.

    Returns
    -------
    Path
        ``folder``.
    """
    folder = Path(folder)
    spec = _spec(list(texts), resolution, seed)
    marker = folder / MARKER
    if marker.is_file() and json.loads(marker.read_text(encoding="utf-8")) == spec:
        logger.info("reusing tiny model in %s", folder)
        return folder
    if folder.exists():
        logger.info("tiny model in %s was built for other settings; rebuilding", folder)
        shutil.rmtree(folder)
    # Built under a temporary name and renamed: a kill at any instant leaves no folder or a whole one.
    try:
        with atomic_dir(folder, remove_stale=True) as tmp:
            _build(tmp, spec)
            (tmp / MARKER).write_text(json.dumps(spec, indent=2, allow_nan=False), encoding="utf-8")
    except Exception as exc:  # a full disk, a read-only folder: one OSError naming the model folder
        named = named_os_error(exc, folder)
        if named is None:
            raise
        raise named from None
    return folder


def _build(folder: Path, spec: dict[str, Any]) -> None:
    import torch
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    a = spec["arch"]
    tokenizer = build_tokenizer(spec["words"], a["max_length"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec["seed"])
        unet: Any = UNet2DConditionModel(
            sample_size=spec["resolution"],
            in_channels=1,
            out_channels=1,
            block_out_channels=tuple(a["block_out_channels"]),
            layers_per_block=a["layers_per_block"],
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=a["cross_attention_dim"],
            attention_head_dim=a["attention_head_dim"],
            norm_num_groups=a["norm_num_groups"],
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=a["cross_attention_dim"],
                intermediate_size=a["text_intermediate"],
                num_hidden_layers=a["text_layers"],
                num_attention_heads=a["text_heads"],
                max_position_embeddings=a["max_length"],
                projection_dim=a["cross_attention_dim"],
                pad_token_id=tokenizer.pad_token_id,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        )
    scheduler: Any = DDPMScheduler(
        num_train_timesteps=a["num_train_timesteps"], beta_schedule=a["beta_schedule"]
    )
    folder.mkdir(parents=True, exist_ok=True)
    unet.save_pretrained(folder / "unet", safe_serialization=True)
    text_encoder.save_pretrained(folder / "text_encoder", safe_serialization=True)
    tokenizer.save_pretrained(folder / "tokenizer")
    scheduler.save_pretrained(folder / "scheduler")
    logger.info(
        "built tiny model (%d UNet parameters) in %s",
        sum(p.numel() for p in unet.parameters()),
        folder,
    )
