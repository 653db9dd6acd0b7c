"""Causal language models: ``'@gemma3-270m'`` (GGUF, cached as fp32 safetensors), folders, hub ids.

transformers reads a GGUF by dequantising every tensor (about a minute for Gemma 3 270M on
two cores) and refuses ``save_pretrained`` on such a model. So the first load writes the
fp32 state dict with ``safetensors.torch.save_model`` (tied weights stored once), the config
and the tokenizer into ``cache_dir()/gemma3-270m/fp32-<hash>/``, built in a temp folder and
renamed into place, with a ``deltahall.json`` marker naming the GGUF's SHA-256; later loads
read that folder with ``use_safetensors=True`` in seconds. A folder made from other weights
is rebuilt, never reused.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from deltahall._validation import check_choice, require
from deltahall.models.registry import (
    ALIASES,
    ModelUnavailableError,
    ResolvedModel,
    cache_dir,
    hub_unavailable,
    package_version,
    resolve_model,
)

logger = logging.getLogger(__name__)

__all__ = ["load_causal_lm"]

_DTYPES = ("float32", "bfloat16", "float16")
_MARKER = "deltahall.json"


def _torch_dtype(dtype: Any) -> Any:
    import torch

    if isinstance(dtype, torch.dtype):
        check_choice(str(dtype).removeprefix("torch."), "dtype", _DTYPES)
        return dtype
    if not isinstance(dtype, str):
        raise TypeError(f"`dtype` must be a string or torch.dtype; got {type(dtype).__name__}.")
    return getattr(torch, check_choice(dtype, "dtype", _DTYPES))


def _fp32_folder(resolved: ResolvedModel) -> Path:
    """The cached fp32 conversion of the GGUF (built on first use)."""
    assert resolved.path is not None and resolved.sha256 is not None
    assert resolved.alias is not None
    folder = cache_dir() / resolved.alias.name.lstrip("@") / f"fp32-{resolved.sha256[:16]}"
    if _is_current(folder, resolved.sha256):
        return folder
    if folder.exists():
        logger.info(
            "%s is incomplete or was converted from other weights; converting again", folder
        )
    _convert(resolved, folder)
    return folder


def _is_current(folder: Path, sha256: str) -> bool:
    """Whether ``folder`` holds a complete conversion of the GGUF with this SHA-256."""
    marker = folder / _MARKER
    if not (marker.is_file() and (folder / "model.safetensors").is_file()):
        return False
    try:
        info = json.loads(marker.read_text(encoding="utf-8"))
    except ValueError:
        return False
    return bool(info.get("source_sha256") == sha256)


def _convert(resolved: ResolvedModel, folder: Path) -> None:
    import torch
    from safetensors.torch import save_model

    assert resolved.path is not None and resolved.sha256 is not None and resolved.alias is not None
    what = f"model {resolved.alias.name!r}"
    transformers = require("transformers", resolved.alias.extra, what=what)
    require("gguf", resolved.alias.extra, what=what)
    gguf_dir, gguf_name = str(resolved.path.parent), resolved.path.name
    t0 = time.perf_counter()
    logger.info("dequantising %s (about a minute, once)", gguf_name)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        gguf_dir, gguf_file=gguf_name, dtype=torch.float32
    )
    tok = transformers.AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    mask = os.umask(0)
    os.umask(mask)
    try:
        save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        model.config.save_pretrained(tmp)
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        for f in (tmp, *tmp.iterdir()):  # mkdtemp makes 0700: give the usual permissions
            os.chmod(f, (0o777 if f.is_dir() else 0o666) & ~mask)
        info = {
            "source": gguf_name,
            "source_sha256": resolved.sha256,
            "dtype": "float32",
            "transformers": package_version("transformers"),
            "torch": package_version("torch"),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        (tmp / _MARKER).write_text(json.dumps(info, indent=2, allow_nan=False), encoding="utf-8")
        if folder.exists() and not _is_current(folder, resolved.sha256):
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=folder.parent))
            os.replace(folder, old / "x")  # a stale conversion: move it aside, then swap in
            shutil.rmtree(old, ignore_errors=True)
        if folder.exists():  # another process finished the same conversion first
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("cached the fp32 conversion in %s (%.0f s)", folder, time.perf_counter() - t0)


def load_causal_lm(spec: str, *, device: str = "cpu", dtype: Any = "float32") -> tuple[Any, Any]:
    """Load a causal LM and its tokenizer.

    Parameters
    ----------
    spec : str
        ``'@gemma3-270m'``, a local folder (safetensors weights), or a hub id (local cache,
        or downloaded when online; safetensors only).
    device : str
    dtype : {'float32', 'bfloat16', 'float16'} or torch.dtype

    Returns
    -------
    model : transformers.PreTrainedModel (eval mode, on ``device``)
    tokenizer : transformers.PreTrainedTokenizerBase

    Raises
    ------
    ValueError
        Unknown alias, hash mismatch, an alias that is not a causal LM, bad ``dtype``.
    deltahall._validation.MissingExtraError
        ``'@gemma3-270m'`` without ``deltahall[real-lm]``.
    ModelUnavailableError
        A hub id not in the local cache while offline (the message says to pass a folder).
    """
    tdtype = _torch_dtype(dtype)
    resolved = resolve_model(spec)
    transformers = require("transformers", "qa", what="causal language models")
    if resolved.alias is not None:
        if resolved.alias.kind != "causal-lm":
            causal = ", ".join(repr(a.name) for a in ALIASES.values() if a.kind == "causal-lm")
            raise ValueError(
                f"model {spec!r} is a {resolved.alias.kind}, not a causal LM; causal LMs: {causal}."
            )
        source = str(_fp32_folder(resolved))
    else:
        source = resolved.spec if resolved.path is None else str(resolved.path)
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(
            source, use_safetensors=True, dtype=tdtype
        )
        tok = transformers.AutoTokenizer.from_pretrained(source)
    except OSError as exc:
        if resolved.kind == "hub":
            raise hub_unavailable(spec, exc) from None
        raise ModelUnavailableError(
            f"cannot load causal LM {spec!r}: {' '.join(str(exc).split())[:200]}; pass a folder "
            "with config.json, tokenizer files and *.safetensors."
        ) from None
    return model.to(device).eval(), tok
