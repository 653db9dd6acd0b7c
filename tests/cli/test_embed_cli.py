"""``deltahall embed``: round trips (texts, images) and every bad input refused before any write."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from deltahall.cli.main import main


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embed_cache")


@pytest.fixture(autouse=True)
def _env(cache: Path, monkeypatch: pytest.MonkeyPatch):
    import torch

    monkeypatch.setenv("DELTAHALL_CACHE", str(cache))
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(["embed", "--no-progress", *argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _write_pngs(folder: Path, n: int = 5) -> list[str]:
    from PIL import Image

    rng = np.random.default_rng(0)
    names = []
    for i in range(n):
        sub = folder / ("b" if i % 2 else "a")
        sub.mkdir(parents=True, exist_ok=True)
        arr = rng.integers(0, 256, (12 + i, 10 + 2 * i, 3), dtype=np.uint8)
        Image.fromarray(arr).save(sub / f"{i}.png")
        names.append(f"{sub.name}/{i}.png")
    (folder / "notes.txt").write_text("not an image")
    return sorted(names)


def test_texts_round_trip_matches_the_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import deltahall.models

    loaded = []
    real = deltahall.models.load_embedder

    def spy(*a, **k):  # keep the model the command loaded, to call its encode directly
        loaded.append(real(*a, **k))
        return loaded[-1]

    monkeypatch.setattr(deltahall.models, "load_embedder", spy)
    texts = ["a cat sat on the mat", "a kitten is on the rug", "stock prices fell sharply"]
    src = tmp_path / "t.jsonl"
    src.write_bytes(
        ("\n".join(json.dumps({"text": t, "id": k}) for k, t in enumerate(texts)) + "\n\n").encode()
    )
    out = tmp_path / "o" / "E.npy"
    rc, stdout, err = _run(
        capsys,
        "--embedder",
        "@minilm",
        "--texts",
        str(src),
        "--out",
        str(out),
        "--batch-size",
        "2",
        "--json",
    )
    assert rc == 0, err
    e = np.load(out, allow_pickle=False)
    assert e.dtype == np.float32 and e.shape == (3, 384)
    ref = loaded[0].model.encode(texts, convert_to_numpy=True)  # the SentenceTransformer itself
    np.testing.assert_allclose(e, ref, atol=1e-5)
    side = json.loads((tmp_path / "o" / "E.json").read_text())
    assert side["ids"] == [1, 2, 3] and side["n"] == 3 and side["dim"] == 384
    assert side["embedder"]["fingerprint"]["sha256"].startswith("53aa5117")
    import hashlib

    assert side["input"]["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert json.loads(stdout)["n"] == 3


@pytest.mark.parametrize("spec, dim", [("@efficientnet-lite0", 1280), ("@digits-cnn", 32)])
def test_images_round_trip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], spec: str, dim: int
) -> None:
    from PIL import Image

    from deltahall.models import load_embedder

    names = _write_pngs(tmp_path / "imgs")
    out = tmp_path / "E.npy"
    rc, _, err = _run(
        capsys,
        "--embedder",
        spec,
        "--images",
        str(tmp_path / "imgs"),
        "--out",
        str(out),
        "--batch-size",
        "2",
    )
    assert rc == 0, err
    e = np.load(out)
    side = json.loads(out.with_suffix(".json").read_text())
    assert e.shape == (5, dim) and side["ids"] == names and side["dim"] == dim
    direct = load_embedder(spec).embed([Image.open(tmp_path / "imgs" / n) for n in names])
    np.testing.assert_allclose(e, direct, atol=1e-5)


def test_bad_inputs_are_one_line_and_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "E.npy"
    cases = {
        "empty": ("", "has no records"),
        "badjson": ('{"text": "ok"}\n{"text": \n', r"bad\.jsonl:2: invalid JSON"),
        "notext": ('{"text": "ok"}\n{"txt": "x"}\n', r"notext\.jsonl:2: has no 'text' field"),
        "notobj": ('["a"]\n', r"notobj\.jsonl:1: must be a JSON object"),
    }
    for name, (content, msg) in cases.items():
        f = tmp_path / f"{'bad' if name == 'badjson' else name}.jsonl"
        f.write_text(content)
        rc, _, err = _run(capsys, "--embedder", "@minilm", "--texts", str(f), "--out", str(out))
        assert rc == 2 and err.count("\n") == 1, err
        assert __import__("re").search(msg, err), err
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "empty_dir" / "readme.txt").write_text("x")
    for argv, msg, code in [
        (["--images", str(tmp_path / "empty_dir")], "contains no image files", 2),
        (["--images", str(tmp_path / "empty.jsonl")], "must be a folder", 2),
        (["--images", str(tmp_path / "missing")], "folder not found", 2),
    ]:
        rc, _, err = _run(capsys, "--embedder", "@efficientnet-lite0", *argv, "--out", str(out))
        assert rc == code and msg in err, err
    for argv, msg, code in [
        (["--texts", str(tmp_path / "missing.jsonl")], "file not found", 2),
        (["--texts", str(tmp_path / "empty_dir")], "must be a JSONL file", 2),
    ]:
        rc, _, err = _run(capsys, "--embedder", "@minilm", *argv, "--out", str(out))
        assert rc == code and msg in err, err
    assert not out.exists() and not out.with_suffix(".json").exists()


def test_outputs_that_are_inputs_or_folders_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_pngs(tmp_path / "imgs", n=2)
    before = sorted(p.name for p in (tmp_path / "imgs").rglob("*"))
    rc, _, err = _run(
        capsys,
        "--embedder",
        "@digits-cnn",
        "--images",
        str(tmp_path / "imgs"),
        "--out",
        str(tmp_path / "imgs" / "E.npy"),
    )
    assert rc == 2 and "inside `--images`" in err
    assert sorted(p.name for p in (tmp_path / "imgs").rglob("*")) == before
    (tmp_path / "dir.npy").mkdir()
    rc, _, err = _run(
        capsys,
        "--embedder",
        "@digits-cnn",
        "--images",
        str(tmp_path / "imgs"),
        "--out",
        str(tmp_path / "dir.npy"),
    )
    assert rc == 2 and "existing directory" in err
    src = tmp_path / "E.json"
    src.write_text('{"text": "a"}\n')
    rc, _, err = _run(
        capsys, "--embedder", "@minilm", "--texts", str(src), "--out", str(tmp_path / "E.npy")
    )
    assert rc == 2 and "sidecar" in err and src.read_text() == '{"text": "a"}\n'
    rc, _, err = _run(
        capsys, "--embedder", "@minilm", "--texts", str(src), "--out", str(tmp_path / "E.txt")
    )
    assert rc == 2 and "must end in .npy" in err
    rc, _, err = _run(
        capsys,
        "--embedder",
        "@minilm",
        "--images",
        str(tmp_path / "imgs"),
        "--out",
        str(tmp_path / "x.npy"),
    )
    assert rc == 2 and "text-embedder" in err


def test_unknown_alias_and_missing_extra_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    from deltahall.models import ALIASES

    src = tmp_path / "t.jsonl"
    src.write_text('{"text": "a"}\n')
    rc, _, err = _run(
        capsys, "--embedder", "@nope", "--texts", str(src), "--out", str(tmp_path / "E.npy")
    )
    assert rc == 2 and "known aliases: @minilm" in err
    monkeypatch.setitem(
        ALIASES, "@minilm", dataclasses.replace(ALIASES["@minilm"], module="deltahall_no_such_pkg")
    )
    rc, _, err = _run(
        capsys, "--embedder", "@minilm", "--texts", str(src), "--out", str(tmp_path / "E.npy")
    )
    assert rc == 1 and "pip install 'deltahall[text]'" in err and err.count("\n") == 1


def test_a_hub_id_not_in_the_cache_says_pass_a_local_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    src = tmp_path / "t.jsonl"
    src.write_text('{"text": "a"}\n')
    rc, _, err = _run(
        capsys,
        "--embedder",
        "nobody-xyz/not-cached",
        "--texts",
        str(src),
        "--out",
        str(tmp_path / "E.npy"),
    )
    assert rc == 1 and err.count("\n") == 1
    assert "'nobody-xyz/not-cached'" in err and "offline" in err and "pass a local folder" in err
    assert not (tmp_path / "E.npy").exists()
