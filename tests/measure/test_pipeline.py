"""`deltahall measure` end to end: .npy, image folders and JSONL (fake and real embedders), outputs, errors."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from .conftest import MEANS


# ----------------------------------------------------------------- fake embedders
class FakeTextEmbedder:
    """'<state word> ...' -> MEANS[state] + noise seeded by the text; 'blend' texts sit between states."""

    modality = "text"
    dim = 4
    name = "fake-text"
    fingerprint = {"spec": "fake-text", "family": "fake", "dim": 4}
    calls = 0

    def embed(self, items, **kw):
        FakeTextEmbedder.calls += 1
        out = []
        for t in items:
            rng = np.random.default_rng(int(hashlib.sha256(t.encode()).hexdigest()[:8], 16))
            word = t.split()[0]
            v = 0.5 * (MEANS[0] + MEANS[1]) if word == "blend" else MEANS["abc".index(word)]
            out.append(v + rng.normal(size=4) * (0.5 if word == "blend" else 1.0))
        return np.asarray(out, dtype=np.float32)


class FakeImageEmbedder:
    """Mean intensity of the four quadrants of a gray image."""

    modality = "image"
    dim = 4
    name = "fake-image"
    fingerprint = {"spec": "fake-image", "family": "fake", "dim": 4}

    def embed(self, items, **kw):
        out = []
        for im in items:
            a = np.asarray(im.convert("L"), dtype=np.float64) / 255.0
            h, w = a.shape[0] // 2, a.shape[1] // 2
            out.append([a[:h, :w].mean(), a[:h, w:].mean(), a[h:, :w].mean(), a[h:, w:].mean()])
        return np.asarray(out, dtype=np.float32) * 6


def _fake(monkeypatch: pytest.MonkeyPatch, emb: object) -> None:
    import deltahall.models

    monkeypatch.setattr(deltahall.models, "load_embedder", lambda spec, **kw: emb)


def _image(rng: np.random.Generator, quadrants: list[int]) -> np.ndarray:
    a = rng.uniform(0, 0.15, (16, 16))
    for q in quadrants:
        r, c = divmod(q, 2)
        a[r * 8 : (r + 1) * 8, c * 8 : (c + 1) * 8] += 0.7 + rng.uniform(-0.1, 0.1)
    return (np.clip(a, 0, 1) * 255).astype(np.uint8)


def _save(a: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)


# ----------------------------------------------------------------- .npy
def test_npy_end_to_end(cli, npy_inputs, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    p = npy_inputs
    rc = cli(
        [
            "measure",
            "--reference",
            str(p["ref"]),
            "--reference-labels",
            str(p["labels"]),
            "--generated",
            str(p["gen"]),
            "--generated-prompts",
            str(p["prompts"]),
            "--pca-dim",
            "0",
            "--select",
            "hcdr",
            "--baselines",
            "true",
            "--out-dir",
            str(out),
            "--json",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    s = json.loads(capsys.readouterr().out)
    on_disk = json.loads((out / "measure.json").read_text())
    for key in (
        "rate",
        "rate_ci",
        "ci_method",
        "n_generated",
        "floor",
        "floor_ci",
        "excess_p_value",
        "alpha",
        "calibration",
        "states",
        "per_prompt",
        "selection",
        "baselines",
    ):
        assert key in s and key in on_disk
    assert s["n_generated"] == 100 and s["calibration"] == "conformal" and s["alpha"] == 0.1
    pp = {r["prompt"]: r for r in s["per_prompt"]}
    assert pp["bad"]["rate"] > 0.8 > 0.25 > pp["good"]["rate"]
    assert set(pp["good"]) >= {"prompt", "n", "rate", "rate_ci", "mean_embedding_inside"}
    assert s["selection"]["rate_before"] == pytest.approx(s["rate"])
    assert {b["method"] for b in s["baselines"]} >= {
        "mahalanobis",
        "lof",
        "knn-radius",
        "elliptic-envelope",
    }
    json.loads(
        (out / "measure.json").read_text(), parse_constant=lambda c: pytest.fail(f"non-strict {c}")
    )
    with open(out / "samples.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 100
    assert list(rows[0])[:6] == ["id", "prompt", "p_value", "nearest_state", "flagged", "kept"]
    assert {"log_density_a", "log_density_b", "log_density_c"} <= set(rows[0])
    assert sum(r["flagged"] == "True" for r in rows) == round(s["rate"] * 100)
    html = (out / "report.html").read_text()
    assert "Wilson" in html and html.count("<img") >= 3


def test_percentile_calibration_and_states_auto(
    cli, npy_inputs, tmp_path: Path, capsys, caplog
) -> None:
    p = npy_inputs
    rc = cli(
        [
            "measure",
            "--reference",
            str(p["ref"]),
            "--generated",
            str(p["gen"]),
            "--states",
            "auto",
            "--max-states",
            "5",
            "--calibration",
            "percentile",
            "--normalize",
            "false",
            "--pca-dim",
            "0",
            "--report",
            "false",
            "--out-dir",
            str(tmp_path / "o"),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "3 states (BIC)" in out and "estimate of the latent variable" in out
    s = json.loads((tmp_path / "o" / "measure.json").read_text())
    assert s["calibration"] == "percentile" and s["discovered_states"]["n_states"] == 3
    assert sorted(s["discovered_states"]["sizes"]) == [150, 150, 150]
    assert not (tmp_path / "o" / "report.html").exists()


# ----------------------------------------------------------------- JSONL and images (fake embedders)
def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_jsonl_end_to_end_with_cache(cli, monkeypatch, tmp_path: Path, capsys) -> None:
    _fake(monkeypatch, FakeTextEmbedder())
    ref = _jsonl(
        tmp_path / "ref.jsonl",
        [{"text": f"{s} sample {i}", "state": s} for s in "abc" for i in range(40)],
    )
    gen = _jsonl(
        tmp_path / "gen.jsonl",
        [{"text": f"a gen {i}", "prompt": "ok"} for i in range(20)]
        + [{"text": f"blend gen {i}", "prompt": "mix", "id": f"m{i}"} for i in range(20)],
    )
    args = [
        "measure",
        "--reference",
        str(ref),
        "--generated",
        str(gen),
        "--embedder",
        "fake",
        "--pca-dim",
        "0",
        "--normalize",
        "false",
        "--out-dir",
        str(tmp_path / "o"),
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    FakeTextEmbedder.calls = 0
    assert cli(args) == 0
    assert FakeTextEmbedder.calls == 2 and len(list((tmp_path / "cache").glob("emb-*.npy"))) == 2
    assert (
        cli(
            [
                *args[:-4],
                "--alpha",
                "0.2",
                "--out-dir",
                str(tmp_path / "o2"),
                "--cache-dir",
                str(tmp_path / "cache"),
            ]
        )
        == 0
    )
    assert FakeTextEmbedder.calls == 2  # both inputs came from the cache
    s = json.loads((tmp_path / "o" / "measure.json").read_text())
    pp = {r["prompt"]: r for r in s["per_prompt"]}
    assert pp["mix"]["rate"] > 0.8 and pp["ok"]["rate"] < 0.3
    rows = list(csv.DictReader(open(tmp_path / "o" / "samples.csv", newline="")))
    assert rows[20]["id"] == "m0" and rows[20]["text"] == "blend gen 0"
    html = (tmp_path / "o" / "report.html").read_text()
    assert "blend gen" in html  # the list of flagged texts
    capsys.readouterr()


def test_image_folders_end_to_end(cli, monkeypatch, tmp_path: Path) -> None:
    _fake(monkeypatch, FakeImageEmbedder())
    monkeypatch.setattr(
        "deltahall.measure.inputs._LOAD_BATCH", 7
    )  # images are opened batch by batch
    rng = np.random.default_rng(0)
    for s, q in (("zero", 0), ("one", 1), ("two", 2)):
        for i in range(34):
            _save(_image(rng, [q]), tmp_path / "ref" / s / f"{i}.png")
    for i in range(10):
        _save(_image(rng, [0]), tmp_path / "gen" / "p-zero" / f"{i}.png")
        _save(_image(rng, [0, 1]), tmp_path / "gen" / "p-blend" / f"{i}.png")
    out = tmp_path / "o"
    assert (
        cli(
            [
                "measure",
                "--reference",
                str(tmp_path / "ref"),
                "--generated",
                str(tmp_path / "gen"),
                "--embedder",
                "fake",
                "--pca-dim",
                "0",
                "--normalize",
                "false",
                "--out-dir",
                str(out),
            ]
        )
        == 0
    )
    s = json.loads((out / "measure.json").read_text())
    assert [st["name"] for st in s["states"]] == ["one", "two", "zero"]
    pp = {r["prompt"]: r for r in s["per_prompt"]}
    assert pp["p-blend"]["rate"] == 1.0 and pp["p-zero"]["rate"] <= 0.3
    assert (out / "figures" / "grid_flagged.png").is_file() and (
        out / "figures" / "grid_accepted.png"
    ).is_file()
    rows = list(csv.DictReader(open(out / "samples.csv", newline="")))
    assert rows[0]["id"].startswith("p-blend/")


# ----------------------------------------------------------------- errors: one line, exit 2, nothing written
def _err(cli, capsys, args: list[str]) -> str:
    rc = cli(["measure", *args])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("\n") == 1 and err.startswith("deltahall measure: error: ")
    return err


def test_bad_inputs(cli, npy_inputs, tmp_path: Path, capsys, monkeypatch) -> None:
    p = npy_inputs
    base = ["--reference", str(p["ref"]), "--reference-labels", str(p["labels"])]
    out = ["--out-dir", str(tmp_path / "o")]
    np.save(tmp_path / "g3.npy", np.zeros((5, 3), np.float32))
    assert "dimension 4; got 3" in _err(
        cli, capsys, [*base, "--generated", str(tmp_path / "g3.npy"), *out]
    )
    np.save(tmp_path / "g0.npy", np.zeros((0, 4), np.float32))
    assert "at least one sample" in _err(
        cli, capsys, [*base, "--generated", str(tmp_path / "g0.npy"), *out]
    )
    np.save(tmp_path / "one.npy", np.array(["a"] * 450))
    assert "at least two latent states" in _err(
        cli,
        capsys,
        [
            "--reference",
            str(p["ref"]),
            "--reference-labels",
            str(tmp_path / "one.npy"),
            "--generated",
            str(p["gen"]),
            *out,
        ],
    )
    assert "m+1 < 1/alpha = 100" in _err(
        cli, capsys, [*base, "--generated", str(p["gen"]), "--alpha", "0.01", *out]
    )
    assert "must not be an input" in _err(
        cli, capsys, [*base, "--generated", str(p["gen"]), "--out-dir", str(p["ref"])]
    )
    assert "not found" in _err(
        cli, capsys, [*base, "--generated", str(tmp_path / "nope.npy"), *out]
    )
    assert "`reference_labels` is required" in _err(
        cli, capsys, ["--reference", str(p["ref"]), "--generated", str(p["gen"]), *out]
    )
    (tmp_path / "imgs").mkdir()
    assert "`generated` is required" in _err(cli, capsys, base)
    assert "exclude each other" in _err(
        cli, capsys, [*base, "--generated", str(p["gen"]), "--states", "auto", *out]
    )
    bad = np.load(p["gen"])
    bad[3, 1] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    assert "finite" in _err(cli, capsys, [*base, "--generated", str(tmp_path / "nan.npy"), *out])
    assert "needs an embedder" in _err(
        cli, capsys, [*base, "--generated", str(tmp_path / "imgs"), *out]
    )
    assert not (tmp_path / "o").exists()
    # a reference folder with one state
    _fake(monkeypatch, FakeImageEmbedder())
    _save(_image(np.random.default_rng(0), [0]), tmp_path / "ref1" / "only" / "0.png")
    assert "at least two state subfolders" in _err(
        cli,
        capsys,
        [
            "--reference",
            str(tmp_path / "ref1"),
            "--generated",
            str(tmp_path / "ref1"),
            "--embedder",
            "fake",
            "--out-dir",
            str(tmp_path / "o"),
        ],
    )
    # output folder inside an input folder
    assert "inside `reference`" in _err(
        cli,
        capsys,
        [
            "--reference",
            str(tmp_path / "ref1"),
            "--generated",
            str(p["gen"]),
            "--embedder",
            "fake",
            "--out-dir",
            str(tmp_path / "ref1" / "out"),
        ],
    )


# ----------------------------------------------------------------- real embedders (offline)
@pytest.mark.slow
def test_jsonl_with_minilm(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real @minilm, loaded once from the local hub cache (skipped where it is not cached).

    Slow only because importing sentence-transformers takes 5-10 s; the fake-embedder tests above
    cover the JSONL path in the default suite."""
    pytest.importorskip("sentence_transformers")
    import deltahall.models
    from deltahall.models import ModelUnavailableError, load_embedder

    try:
        emb = load_embedder("@minilm")
    except (ModelUnavailableError, OSError, ValueError) as exc:
        pytest.skip(f"@minilm unavailable offline: {exc}")
    monkeypatch.setattr(
        deltahall.models, "load_embedder", lambda spec, **kw: emb if spec == "@minilm" else None
    )
    animals = [
        "cat",
        "dog",
        "horse",
        "cow",
        "sheep",
        "goat",
        "rabbit",
        "mouse",
        "duck",
        "hen",
        "pig",
        "fox",
    ]
    code = [
        "Python",
        "Rust",
        "Java",
        "Go",
        "C",
        "Haskell",
        "Ruby",
        "Perl",
        "Scala",
        "Kotlin",
        "Swift",
        "Lua",
    ]
    ref = [{"text": f"The {a} is sleeping in the barn.", "state": "farm"} for a in animals] + [
        {"text": f"{c} compiles this program quickly.", "state": "code"} for c in code
    ]
    gen = [
        {"text": "The lamb is sleeping in the barn.", "prompt": "farm"},
        {"text": "Volcanic eruptions reshape islands over centuries.", "prompt": "odd"},
    ]
    r, g = _jsonl(tmp_path / "r.jsonl", ref), _jsonl(tmp_path / "g.jsonl", gen)
    out = tmp_path / "o"
    assert (
        cli(
            [
                "measure",
                "--reference",
                str(r),
                "--generated",
                str(g),
                "--embedder",
                "@minilm",
                "--alpha",
                "0.25",
                "--pca-dim",
                "4",
                "--n-components",
                "1",
                "--out-dir",
                str(out),
                "--report",
                "false",
            ]
        )
        == 0
    )
    s = json.loads((out / "measure.json").read_text())
    assert s["n_generated"] == 2 and s["embedder"] == "@minilm"
    man = json.loads((out / "manifest.json").read_text())
    assert man["embedder_fingerprint"]["dim"] == 384


@pytest.mark.slow
def test_image_folder_with_digits_cnn(cli, tmp_path: Path) -> None:
    """Real @digits-cnn embeddings (trains the CNN once into the private cache: ~10 s)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    for i, (img, t) in enumerate(zip(d.images, d.target, strict=True)):
        if t in (0, 1) and i % 2 == 0:
            _save((img * 15.9).astype(np.uint8), tmp_path / "ref" / str(t) / f"{i}.png")
    zeros = d.images[d.target == 0][-10:]
    ones = d.images[d.target == 1][-10:]
    for k in range(10):
        _save((zeros[k] * 15.9).astype(np.uint8), tmp_path / "gen" / "zero" / f"{k}.png")
        _save(
            ((zeros[k] + ones[k]) / 2 * 15.9).astype(np.uint8),
            tmp_path / "gen" / "blend" / f"{k}.png",
        )
    out = tmp_path / "o"
    assert (
        cli(
            [
                "measure",
                "--reference",
                str(tmp_path / "ref"),
                "--generated",
                str(tmp_path / "gen"),
                "--embedder",
                "@digits-cnn",
                "--pca-dim",
                "8",
                "--out-dir",
                str(out),
            ]
        )
        == 0
    )
    s = json.loads((out / "measure.json").read_text())
    pp = {r["prompt"]: r for r in s["per_prompt"]}
    assert pp["blend"]["rate"] > pp["zero"]["rate"]


def test_bad_jsonl_is_named_with_its_line(cli, monkeypatch, tmp_path: Path, capsys) -> None:
    _fake(monkeypatch, FakeTextEmbedder())
    ref = _jsonl(tmp_path / "ref.jsonl", [{"text": "a x", "state": "a"}, {"text": "b y"}])
    gen = _jsonl(tmp_path / "gen.jsonl", [{"text": "a z"}])
    err = _err(
        cli,
        capsys,
        [
            "--reference",
            str(ref),
            "--generated",
            str(gen),
            "--embedder",
            "fake",
            "--out-dir",
            str(tmp_path / "o"),
        ],
    )
    assert "ref.jsonl:2: needs a string 'state' field" in err
    (tmp_path / "gen.jsonl").write_text('{"text": "a"}\n{oops\n', encoding="utf-8")
    ref = _jsonl(tmp_path / "ref.jsonl", [{"text": "a x", "state": "a"}])
    assert "gen.jsonl:2" in _err(
        cli,
        capsys,
        [
            "--reference",
            str(ref),
            "--generated",
            str(gen),
            "--embedder",
            "fake",
            "--out-dir",
            str(tmp_path / "o"),
        ],
    )


# --------------------------------------------------------------------------- the run lifecycle
def _measure_argv(p: dict[str, Path], out: Path, *more: str) -> list[str]:
    return [
        "measure",
        "--reference",
        str(p["ref"]),
        "--reference-labels",
        str(p["labels"]),
        "--generated",
        str(p["gen"]),
        "--generated-prompts",
        str(p["prompts"]),
        "--report",
        "false",
        "--out-dir",
        str(out),
        *more,
    ]


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()
    }


def test_measure_runs_through_the_shared_lifecycle_and_keeps_its_output_contract(
    cli, npy_inputs, tmp_path: Path, capsys
) -> None:
    p, out = npy_inputs, tmp_path / "o"
    assert cli(_measure_argv(p, out)) == 0
    s = json.loads((out / "measure.json").read_text())
    assert {"rate", "rate_ci", "n_generated", "floor", "excess_p_value", "per_prompt"} <= set(s)
    with open(out / "samples.csv", newline="") as fh:
        header = next(csv.reader(fh))
    assert {"id", "prompt", "p_value", "flagged"} <= set(header)
    man = json.loads((out / "manifest.json").read_text())
    assert man["experiment"] == "measure" and man["fingerprint"]["alpha"] == 0.1
    assert (
        "out_dir" not in man["fingerprint"] and "resume_from_checkpoint" not in man["fingerprint"]
    )
    assert not (out / "result.json").exists()  # measure.json is the result file
    before = _files(out)
    capsys.readouterr()
    # refused: a folder holding a measurement, without resume; with resume and another setting
    assert cli(_measure_argv(p, out)) == 2
    assert "already holds a measurement" in capsys.readouterr().err
    assert cli(_measure_argv(p, out, "--seed", "3", "--resume-from-checkpoint", "latest")) == 2
    assert "seed: 0 -> 3" in capsys.readouterr().err
    # the device is checked first: before the folder, before any input is read
    assert cli(_measure_argv(p, out, "--embedder", "@minilm", "--device", "nonsense")) == 2
    assert "`device`" in capsys.readouterr().err
    assert _files(out) == before
    # redone with the same settings: the same numbers, measure.json rewritten
    assert cli(_measure_argv(p, out, "--resume-from-checkpoint", "latest")) == 0
    again = json.loads((out / "measure.json").read_text())
    assert again["rate"] == s["rate"] and again["per_prompt"] == s["per_prompt"]
    assert len(json.loads((out / "manifest.json").read_text())["sessions"]) == 2


def test_a_measurement_refused_after_the_folder_check_writes_nothing(
    cli, npy_inputs, tmp_path: Path, capsys
) -> None:
    p, out = npy_inputs, tmp_path / "o"
    np.save(tmp_path / "g3.npy", np.zeros((100, 3), dtype=np.float32))  # another dimension
    argv = _measure_argv(p, out)
    argv[argv.index(str(p["gen"]))] = str(tmp_path / "g3.npy")
    assert cli(argv) == 2
    assert "dimension" in capsys.readouterr().err
    assert not out.exists()


def test_an_input_inside_the_output_folder_is_refused(cli, npy_inputs, tmp_path: Path, capsys):
    p = npy_inputs
    assert cli(_measure_argv(p, tmp_path)) == 2  # the inputs lie in tmp_path
    assert "lies inside `out_dir`" in capsys.readouterr().err
    assert not (tmp_path / "manifest.json").exists()


def test_a_measurement_killed_at_any_commit_event_is_redone_to_the_same_files(
    npy_inputs, tmp_path: Path
) -> None:
    """SIGKILL at every commit event of a measurement (on a seeded side of it: just before the
    rename, with the temporary torn in half, or just after it), then ``--resume-from-checkpoint latest``: the same
    ``samples.csv`` and ``measure.json`` (but its timings) as an uninterrupted run's."""
    import os
    import signal
    import subprocess
    import sys

    hook = Path(__file__).parents[1] / "experiments" / "_kill_at_event.py"
    p = npy_inputs
    argv = _measure_argv(p, tmp_path / "placeholder")[:-2]  # without --out-dir

    def launch(out: Path, *extra: str, kill: str = "0:after") -> int:
        env = dict(
            os.environ,
            OMP_NUM_THREADS="1",
            DELTAHALL_CACHE=str(tmp_path / "cache"),
            DELTAHALL_EVENT_SCOPE=str(out),
            DELTAHALL_EVENT_LOG=str(out.with_suffix(".events")),
            DELTAHALL_KILL_AT=kill,
        )
        proc = subprocess.run(
            [sys.executable, str(hook), *argv, "--out-dir", str(out), *extra],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=600,
            start_new_session=True,
        )
        assert proc.returncode in (0, -signal.SIGKILL), proc.stderr[-2000:]
        return proc.returncode

    def outputs(out: Path) -> tuple[bytes, dict]:
        s = json.loads((out / "measure.json").read_text())
        s.pop("seconds")
        return (out / "samples.csv").read_bytes(), s

    whole = tmp_path / "whole"
    assert launch(whole) == 0
    events = whole.with_suffix(".events").read_text().splitlines()
    assert [e.split()[1] for e in events] == ["manifest.json", "samples.csv", "measure.json"]
    expected = outputs(whole)
    phases = np.random.default_rng(0).choice(["before", "after"], size=len(events))
    for k, phase in enumerate(phases.tolist(), start=1):  # every event, a seeded side of it
        out = tmp_path / f"k{k}{phase}"
        assert launch(out, kill=f"{k}:{phase}") == -signal.SIGKILL
        assert not (out / "measure.json").exists() or (k, phase) == (len(events), "after")
        assert launch(out, "--resume-from-checkpoint", "latest") == 0
        assert outputs(out) == expected, (k, phase)
