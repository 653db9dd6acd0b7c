"""Per-prompt text states end to end: rows {text, state, prompt}, refusals before any embedding."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

TOPICS = ("capital", "river", "planet")


class TopicEmbedder:
    """'<topic> <state> ...' -> a direction per (topic, state) plus text-seeded noise; counts its calls."""

    modality = "text"
    dim = 16
    name = "topic"
    fingerprint = {"spec": "topic", "dim": 16}
    calls = 0

    def embed(self, items, **kw):
        TopicEmbedder.calls += 1
        base = np.random.default_rng(7).normal(size=(len(TOPICS), 2, 16)) * 3
        out = []
        for t in items:
            rng = np.random.default_rng(int(hashlib.sha256(t.encode()).hexdigest()[:8], 16))
            topic, state = t.split()[:2]
            v = (
                base[TOPICS.index(topic), int(state == "b")]
                if state in "ab"
                else base[TOPICS.index(topic)].mean(0)
            )
            out.append(v + rng.normal(size=16) * 0.6)
        return np.asarray(out, dtype=np.float32)


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _ref(tmp_path: Path, n: int = 6) -> Path:
    rows = [
        {"text": f"{q} {s} ref {i}", "state": s, "prompt": f"q-{q}"}
        for q in TOPICS
        for s in "ab"
        for i in range(n)
    ]
    return _jsonl(tmp_path / "ref.jsonl", rows)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch):
    import deltahall.models

    monkeypatch.setattr(deltahall.models, "load_embedder", lambda spec, **kw: TopicEmbedder())
    TopicEmbedder.calls = 0
    return TopicEmbedder


def test_per_prompt_states_flag_off_topic_answers_and_keep_in_state_ones(
    cli, fake, tmp_path: Path, capsys
) -> None:
    ref = _ref(tmp_path)
    gen = [{"text": f"capital a gen {i}", "prompt": "q-capital", "id": f"in{i}"} for i in range(10)]
    gen += [{"text": f"river b gen {i}", "prompt": "q-capital", "id": f"off{i}"} for i in range(10)]
    gen += [{"text": f"planet b gen {i}", "prompt": "q-planet", "id": f"ok{i}"} for i in range(10)]
    g = _jsonl(tmp_path / "gen.jsonl", gen)
    out = tmp_path / "o"
    assert (
        cli(
            [
                "measure",
                "--reference",
                str(ref),
                "--generated",
                str(g),
                "--embedder",
                "fake",
                "--alpha",
                "0.2",
                "--out-dir",
                str(out),
                "--report",
                "false",
            ]
        )
        == 0
    ), capsys.readouterr().err
    s = json.loads((out / "measure.json").read_text())
    assert s["scope"] == "per-prompt" and s["n_states"] == 6
    rows = list(csv.DictReader(open(out / "samples.csv", newline="")))
    flagged = {r["id"]: r["flagged"] == "True" for r in rows}
    assert (
        sum(flagged[f"off{i}"] for i in range(10)) == 10
    )  # off-topic: the other question's answer
    assert sum(flagged[f"in{i}"] for i in range(10)) <= 4
    assert sum(flagged[f"ok{i}"] for i in range(10)) <= 4
    near = {r["id"]: r["nearest_state"] for r in rows}
    assert near["in0"] == "q-capital/a" and near["ok0"] == "q-planet/b"
    pp = {r["prompt"]: r for r in s["per_prompt"]}
    assert pp["q-capital"]["n"] == 20 and pp["q-planet"]["rate"] <= 0.4
    # modes lost among the prompts asked: every capital answer is state a, every planet answer state b
    assert s["states_not_reached"] == ["q-capital/b", "q-planet/a"]


@pytest.mark.parametrize(
    "case, match",
    [
        ("unknown_prompt", "generated prompt\\(s\\) with no reference states: \\['q-moon'\\]"),
        ("one_reference", "needs at least two reference texts.*'q-capital'/'a'"),
        ("mixed", "carry a 'prompt' .* and 1 do not"),
        ("unknown_key", "unknown key\\(s\\) \\['promt'\\]"),
        ("duplicate_id", "id 'x' was already used on line 1"),
        ("calibration_global", "`calibration_samples` applies to per-prompt states"),
    ],
)
def test_refusals_are_one_line_before_any_embedding(
    cli, fake, tmp_path: Path, capsys, case: str, match: str
) -> None:
    ref = _ref(tmp_path)
    gen_rows = [{"text": "capital a gen", "prompt": "q-capital"}]
    extra: list[str] = []
    if case == "unknown_prompt":
        gen_rows = [{"text": "capital a gen", "prompt": "q-moon"}]
    elif case == "one_reference":
        rows = [json.loads(line) for line in ref.read_text().splitlines()]
        rows = [r for r in rows if not (r["prompt"] == "q-capital" and r["state"] == "a")]
        rows.append({"text": "capital a only", "state": "a", "prompt": "q-capital"})
        _jsonl(ref, rows)
    elif case == "mixed":
        rows = [json.loads(line) for line in ref.read_text().splitlines()]
        del rows[0]["prompt"]
        _jsonl(ref, rows)
    elif case == "unknown_key":
        gen_rows = [{"text": "capital a gen", "promt": "q-capital"}]
    elif case == "duplicate_id":
        gen_rows = [
            {"text": "capital a 1", "prompt": "q-capital", "id": "x"},
            {"text": "capital a 2", "prompt": "q-capital", "id": "x"},
        ]
    elif case == "calibration_global":
        _jsonl(ref, [{"text": f"capital {s} {i}", "state": s} for s in "ab" for i in range(30)])
        cal = _jsonl(
            tmp_path / "cal.jsonl", [{"text": "capital a c", "state": "a", "prompt": "q-capital"}]
        )
        extra = ["--calibration-samples", str(cal)]
        gen_rows = [{"text": "capital a gen"}]
    g = _jsonl(tmp_path / "gen.jsonl", gen_rows)
    out = tmp_path / "o"
    rc = cli(
        [
            "measure",
            "--reference",
            str(ref),
            "--generated",
            str(g),
            "--embedder",
            "fake",
            "--out-dir",
            str(out),
            "--cache-dir",
            str(tmp_path / "cache"),
            *extra,
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err
    import re

    assert re.search(match, err), err
    assert TopicEmbedder.calls == 0  # refused before anything was embedded
    assert not out.exists() and not (tmp_path / "cache").exists()


def test_calibration_samples_calibrate_per_prompt_states(cli, fake, tmp_path: Path) -> None:
    ref = _ref(tmp_path, n=4)
    cal = _jsonl(
        tmp_path / "cal.jsonl",
        [
            {"text": f"{q} {s} cal {i}", "state": s, "prompt": f"q-{q}"}
            for q in TOPICS
            for s in "ab"
            for i in range(5)
        ],
    )
    g = _jsonl(
        tmp_path / "gen.jsonl", [{"text": f"river a g {i}", "prompt": "q-river"} for i in range(8)]
    )
    out = tmp_path / "o"
    assert (
        cli(
            [
                "measure",
                "--reference",
                str(ref),
                "--generated",
                str(g),
                "--embedder",
                "fake",
                "--calibration-samples",
                str(cal),
                "--alpha",
                "0.2",
                "--report",
                "false",
                "--out-dir",
                str(out),
            ]
        )
        == 0
    )
    s = json.loads((out / "measure.json").read_text())
    assert s["calibrator"]["n_calibration"] == 30 and "calibration samples" in s["floor_source"]
    assert s["rate"] <= 0.5


def test_a_folder_holding_a_measurement_is_refused_unless_redone_with_the_same_settings(
    cli, npy_inputs, tmp_path, capsys
) -> None:
    p = npy_inputs
    out = tmp_path / "o"
    base = [
        "measure",
        "--reference",
        str(p["ref"]),
        "--reference-labels",
        str(p["labels"]),
        "--generated",
        str(p["gen"]),
        "--out-dir",
        str(out),
    ]
    assert cli(base) == 0
    before = {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()}
    capsys.readouterr()
    assert cli([*base, "--report", "false"]) == 2
    assert "already holds a measurement" in capsys.readouterr().err
    assert cli([*base, "--alpha", "0.2", "--resume-from-checkpoint", "latest"]) == 2
    assert "alpha: 0.1 -> 0.2" in capsys.readouterr().err
    assert {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()} == before
    assert cli([*base, "--resume-from-checkpoint", "latest"]) == 0
    # an input inside the output folder is refused too
    assert (
        cli(
            [
                "measure",
                "--reference",
                str(p["ref"]),
                "--reference-labels",
                str(p["labels"]),
                "--generated",
                str(p["gen"]),
                "--out-dir",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert "lies inside `out_dir`" in capsys.readouterr().err
