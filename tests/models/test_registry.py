"""The registry: aliases, pinned hashes, missing extras, cache dir, specs that are not aliases."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from deltahall._validation import MissingExtraError
from deltahall.models import (
    ALIASES,
    ModelUnavailableError,
    cache_dir,
    load_embedder,
    registry,
    resolve_model,
)


def test_aliases_name_kind_extra_and_a_pinned_hash() -> None:
    assert set(ALIASES) == {
        "@minilm",
        "@gemma3-270m",
        "@smollm2-135m-instruct",
        "@efficientnet-lite0",
        "@digits-cnn",
    }
    assert ALIASES["@minilm"].sha256.startswith("53aa5117")
    assert ALIASES["@gemma3-270m"].extra == "real-lm"
    for a in ALIASES.values():
        assert a.sha256 is None or len(a.sha256) == 64


def test_unknown_alias_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown model alias '@nope'.*@minilm.*@gemma3-270m"):
        resolve_model("@nope")


def test_minilm_resolves_to_its_verified_weights() -> None:
    r = resolve_model("@minilm")
    assert r.kind == "alias" and r.path is not None and r.path.name == "model.safetensors"
    assert r.sha256 == ALIASES["@minilm"].sha256


def _fake_package(root: Path, name: str, rel: str, payload: bytes) -> None:
    pkg = root / name
    (pkg / Path(rel).parent).mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / rel).write_bytes(payload)


def test_a_weights_file_with_another_hash_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_package(tmp_path, "fake_minilm_pkg", "model/model.safetensors", b"not the real weights")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(
        ALIASES, "@minilm", dataclasses.replace(ALIASES["@minilm"], module="fake_minilm_pkg")
    )
    with pytest.raises(
        ValueError, match=r"model\.safetensors' has SHA-256 [0-9a-f]{64}, expected 53aa5117"
    ):
        resolve_model("@minilm")
    with pytest.raises(ValueError, match="refusing to load it"):
        load_embedder("@minilm")


def test_a_pth_with_another_hash_is_never_unpickled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    spec = ALIASES["@efficientnet-lite0"]
    _fake_package(
        tmp_path, "fake_effnet_pkg", spec.weights, b"\x80\x04 a pickle that must not be opened"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(ALIASES, spec.name, dataclasses.replace(spec, module="fake_effnet_pkg"))

    def boom(*a: object, **k: object) -> None:
        raise AssertionError("torch.load called on an unverified file")

    monkeypatch.setattr(torch, "load", boom)
    with pytest.raises(
        ValueError, match=r"efficientnet-lite0-57934424\.pth' has SHA-256 .* expected 57934424"
    ):
        load_embedder("@efficientnet-lite0")


def test_a_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        ALIASES, "@minilm", dataclasses.replace(ALIASES["@minilm"], module="deltahall_no_such_pkg")
    )
    with pytest.raises(MissingExtraError, match=r"pip install 'deltahall\[text\]'"):
        resolve_model("@minilm")
    spec = ALIASES["@efficientnet-lite0"]
    monkeypatch.setitem(
        ALIASES, spec.name, dataclasses.replace(spec, module="deltahall_no_such_pkg")
    )
    with pytest.raises(MissingExtraError, match=r"deltahall\[vision\]"):
        load_embedder("@efficientnet-lite0")


def test_cache_dir_is_the_env_var_or_the_user_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DELTAHALL_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c" and (tmp_path / "c").is_dir()
    monkeypatch.delenv("DELTAHALL_CACHE")
    if os.name == "posix" and os.uname().sysname == "Linux":
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert cache_dir() == tmp_path / "xdg" / "deltahall"


def test_atomic_target_leaves_nothing_behind_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "w.safetensors"
    with pytest.raises(RuntimeError):
        with registry.atomic_target(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    with registry.atomic_target(target) as tmp:
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole" and list(tmp_path.iterdir()) == [target]


def test_folders_hub_ids_and_missing_paths(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.safetensors").write_bytes(b"x")
    r = resolve_model(str(tmp_path / "m"))
    assert r.kind == "folder" and r.path == (tmp_path / "m").resolve()
    assert r.sha256 == registry.file_sha256(tmp_path / "m" / "model.safetensors")
    h = resolve_model("sentence-transformers/all-MiniLM-L6-v2")
    assert h.kind == "hub" and h.path is None and h.sha256 is None
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_model(str(tmp_path / "nope" / "model"))
    with pytest.raises(FileNotFoundError, match="is a file"):
        resolve_model(str(tmp_path / "m" / "model.safetensors"))
    with pytest.raises(TypeError, match="`spec` must be a string"):
        resolve_model(3)  # type: ignore[arg-type]


def test_a_hub_id_that_is_not_cached_is_one_line_saying_pass_a_folder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        ModelUnavailableError, match=r"'nobody-xyz/not-cached-model'.*offline.*pass a local folder"
    ) as ei:
        load_embedder("nobody-xyz/not-cached-model")
    assert "\n" not in str(ei.value)


def test_a_causal_lm_alias_is_not_an_embedder() -> None:
    with pytest.raises(
        ValueError, match=r"'@gemma3-270m' is a causal-lm, not an embedder; embedders: @minilm"
    ):
        load_embedder("@gemma3-270m")


def test_a_folder_of_no_known_family_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ValueError, match="cannot tell which embedder family"):
        load_embedder(str(tmp_path))
