"""Derived writes into an existing run folder (``_derived.rewrite``) and new folders built from
other runs (``qa intervals``, ``qa arms-merge``) through the one runner: refusals that change
nothing, ``derived.json``, and the manifest of a folder made from other runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from deltahall.cli.main import main
from deltahall.experiments._derived import DERIVED, rewrite
from deltahall.experiments.qa.generate import save_answers

QUESTIONS = [f"Question number {i}?" for i in range(4)]
INCORRECT = [["the moon is cheese"], ["cats rule"], ["water is dry"], ["the earth is flat"]]
CORRECT = [["the moon is rock"], ["nobody rules"], ["water is wet"], ["the earth is round"]]


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _refuse(name: str) -> None:
    raise ValueError(f"not strict JSON: {name}")


def _strict(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=_refuse)


def _run(root: Path, experiment: str | None, **more: Any) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    manifest = {} if experiment is None else {"experiment": experiment}
    (root / "manifest.json").write_text(json.dumps({**manifest, **more}))
    return root


def _answers(root: Path, seed: int, epoch: int, answers: list[str]) -> None:
    rows = [
        {
            "model": "m",
            "seed": seed,
            "epoch": epoch,
            "question": q,
            "answer": a,
            "full_text": f"{q} {a}",
            "incorrect_answers": inc,
            "correct_answers": cor,
            "prompt": q,
        }
        for q, a, inc, cor in zip(QUESTIONS, answers, INCORRECT, CORRECT, strict=True)
    ]
    save_answers(root / f"answers/m/seed-{seed}/epoch-{epoch}.jsonl", rows)


def _qa_run(root: Path, seed: int) -> Path:
    _run(root, "qa", plumbing=True)
    _answers(root, seed, 0, ["rock"] * 4)
    _answers(root, seed, 1, [inc[0] for inc in INCORRECT])
    return root


# --------------------------------------------------------------------------- rewrite itself
def test_rewrite_writes_through_the_run_dir_and_records_each_rebuild(tmp_path: Path) -> None:
    root = _run(tmp_path / "r", "demo")
    manifest = (root / "manifest.json").read_bytes()
    outside = tmp_path / "elsewhere" / "report.html"

    def write(rd: Any, m: dict[str, Any]) -> str:
        assert m == {"experiment": "demo"}
        rd.write_csv("table.csv", [{"a": 1}])
        rd.write_json("summary.json", {"x": float("nan")})
        outside.parent.mkdir()
        outside.write_text("<html></html>")
        return "value"

    args: dict[str, Any] = {
        "experiment": ("other", "demo"),
        "command": "demo table",
        "write": write,
    }
    assert rewrite(root, outputs=[("out", outside)], **args) == "value"
    record = _strict(root / DERIVED)
    (entry,) = record["rebuilds"]
    assert entry["command"] == "demo table" and entry["deltahall"]
    assert entry["files"] == ["table.csv", "summary.json", str(outside)]
    assert entry["started_at"].endswith("+00:00") and isinstance(entry["argv"], list)
    assert (root / "manifest.json").read_bytes() == manifest  # never modified

    (outside.parent / "report.html").unlink()
    outside.parent.rmdir()
    rewrite(root, outputs=[("out", outside)], **args)
    assert len(_strict(root / DERIVED)["rebuilds"]) == 2


@pytest.mark.parametrize(
    ("setup", "error", "match"),
    [
        (lambda d: None, FileNotFoundError, r"'.*/r' does not exist"),
        (lambda d: (d / "r").write_text("x"), ValueError, "must be a run folder; got the file"),
        (lambda d: (d / "r").mkdir(), FileNotFoundError, "holds no manifest.json"),
        (lambda d: _run(d / "r", "modes"), ValueError, "holds a 'modes' run, not 't2i'"),
        (lambda d: _run(d / "r", None), ValueError, "names no experiment"),
        (
            lambda d: (_run(d / "r", "t2i") / "manifest.json").write_text("{bad"),
            ValueError,
            "unreadable manifest.json",
        ),
        (
            lambda d: [
                (_run(d / "r", "t2i") / n).write_text("[]") for n in (DERIVED, "metrics.csv")
            ],
            ValueError,
            "derived.json that is not a JSON object",
        ),
        (lambda d: _run(d / "r", "t2i"), FileNotFoundError, "holds no metrics.csv"),
    ],
    ids=[
        "missing",
        "file",
        "no-manifest",
        "other-experiment",
        "old-manifest",
        "bad",
        "derived",
        "marker",
    ],
)
def test_a_refused_rewrite_changes_nothing_and_never_calls_the_writer(
    tmp_path: Path, setup: Any, error: type[Exception], match: str
) -> None:
    setup(tmp_path)
    before = _snapshot(tmp_path)
    called = []
    with pytest.raises(error, match=match):
        rewrite(
            tmp_path / "r",
            experiment="t2i",
            command="t2i report",
            requires=("metrics.csv",),
            write=lambda rd, m: called.append(1),
        )
    assert called == [] and _snapshot(tmp_path) == before


def test_outputs_are_checked_first_and_the_runner_files_cannot_be_written(tmp_path: Path) -> None:
    root = _run(tmp_path / "r", "demo")
    (tmp_path / "dir.html").mkdir()
    before = _snapshot(tmp_path)
    args: dict[str, Any] = {"experiment": "demo", "command": "demo report"}
    with pytest.raises(ValueError, match="`out` must be a file path; got the existing folder"):
        rewrite(root, outputs=[("out", tmp_path / "dir.html")], write=lambda rd, m: 1, **args)
    with pytest.raises(ValueError, match="`out` must not be the run's manifest.json"):
        rewrite(root, outputs=[("out", root / "manifest.json")], write=lambda rd, m: 1, **args)
    for name in ("manifest.json", DERIVED):

        def write(rd: Any, m: dict[str, Any], name: str = name) -> Any:
            return rd.write_json(name, {})

        with pytest.raises(ValueError, match=f"must not write {name}"):
            rewrite(root, write=write, **args)
    assert _snapshot(tmp_path) == before  # and no derived.json for a writer that failed


# --------------------------------------------------------------------------- qa table / reports
def test_qa_table_rebuilds_the_tables_and_records_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _qa_run(tmp_path / "r", 1)
    assert main(["qa", "table", "--run-dir", str(root)]) == 0
    assert "plumbing" in capsys.readouterr().out.lower()
    (entry,) = _strict(root / DERIVED)["rebuilds"]
    assert entry["command"] == "qa table"
    assert {"scores.csv", "table1.csv", "table1.md", "figures/figure4.png"} <= set(entry["files"])
    assert all((root / f).is_file() for f in entry["files"])


@pytest.mark.parametrize(
    ("argv", "held", "words"),
    [
        (["qa", "table", "--run-dir", "{r}"], "modes", "holds a 'modes' run, not 'qa'"),
        (["t2i", "report", "--run-dir", "{r}"], "modes", "holds a 'modes' run, not 't2i'"),
        (["modes", "report", "--run-dir", "{r}"], "t2i", "holds a 't2i' run, not 'modes'"),
        (["modes", "report", "--run-dir", "{r}"], None, "names no experiment"),
    ],
)
def test_a_command_refuses_a_run_of_another_experiment_byte_identical(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], held: str, words: str
) -> None:
    root = _run(tmp_path / "r", held)
    for name in ("result.json", "metrics.csv"):
        (root / name).write_text("{}")
    _answers(root, 1, 0, ["rock"] * 4)
    before = _snapshot(tmp_path)
    assert main([a.replace("{r}", str(root)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert words in err and str(root) in err and len(err.strip().splitlines()) == 1, err
    assert _snapshot(tmp_path) == before


# --------------------------------------------------------------------------- qa intervals
def _intervals(runs: list[Path], out: Path, *more: str) -> int:
    argv = ["qa", "intervals", "--run-dir", *map(str, runs), "--out-dir", str(out)]
    return main([*argv, "--n-boot", "50", "--n-perm", "19", *more])


@pytest.fixture()
def two_runs(tmp_path: Path) -> list[Path]:
    return [_qa_run(tmp_path / "s1", 1), _qa_run(tmp_path / "s2", 2)]


def test_qa_intervals_is_a_run_with_a_manifest_of_its_inputs(
    two_runs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ci"
    assert _intervals(two_runs, out) == 0
    manifest = _strict(out / "manifest.json")
    assert manifest["experiment"] == "qa-intervals"
    assert manifest["config"]["run_dirs"] == [str(p.resolve()) for p in two_runs]
    assert manifest["fingerprint"] == {
        "run_dirs": [str(p.resolve()) for p in two_runs],
        "n_boot": 50,
        "n_perm": 19,
        "seed": 0,
    }
    assert [i["experiment"] for i in manifest["inputs"]] == ["qa", "qa"]
    assert manifest["versions"]["deltahall"]
    result = _strict(out / "result.json")
    assert result["files"]["table1_ci_md"] == "table1_ci.md"
    assert (out / "figures" / "figure4_ci.png").is_file()

    before = _snapshot(tmp_path)
    capsys.readouterr()
    assert _intervals(two_runs, out) == 2  # a folder that holds a run
    assert "already holds a table of intervals" in capsys.readouterr().err
    assert _intervals(two_runs, out, "--resume-from-checkpoint", "latest", "--n-boot", "60") == 2
    assert "n_boot: 50 -> 60" in capsys.readouterr().err
    assert _snapshot(tmp_path) == before
    assert _intervals(two_runs, out, "--resume-from-checkpoint", "latest") == 0  # recomputed
    assert len(_strict(out / "manifest.json")["sessions"]) == 2


@pytest.mark.parametrize(
    ("out", "words"),
    [
        ("s1/ci", "is inside `run_dir`"),
        ("s1", "is the same as `run_dir`"),
        (".", "lies inside `out_dir`"),
    ],
)
def test_qa_intervals_refuses_an_out_dir_inside_or_around_a_run(
    two_runs: list[Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    out: str,
    words: str,
) -> None:
    before = _snapshot(tmp_path)
    assert _intervals(two_runs, tmp_path / out) == 2
    assert words in capsys.readouterr().err
    assert _snapshot(tmp_path) == before and not (tmp_path / "s1" / "ci").exists()


def test_qa_intervals_refuses_a_folder_holding_another_run(
    two_runs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = _run(tmp_path / "other", "qa")
    before = _snapshot(other)
    assert _intervals(two_runs, other) == 2
    assert "holds a 'qa' run, not 'qa-intervals'" in capsys.readouterr().err
    assert _snapshot(other) == before


# --------------------------------------------------------------------------- qa arms-merge
def test_arms_merge_refuses_before_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = _run(tmp_path / "a", "qa-arms"), _run(tmp_path / "b", "qa")
    before = _snapshot(tmp_path)
    argv = ["qa", "arms-merge", "--run-dir", str(a), str(b), "--out-dir"]
    assert main([*argv, str(a / "pooled")]) == 2
    assert "is inside `run_dir`" in capsys.readouterr().err
    assert main([*argv, str(tmp_path / "pooled")]) == 2
    assert "holds a 'qa' run, not a `qa arms` run" in capsys.readouterr().err
    assert main(["qa", "arms-merge", "--run-dir", str(a), "--out-dir", str(tmp_path / "p")]) == 2
    assert "at least two runs; got 1" in capsys.readouterr().err
    assert _snapshot(tmp_path) == before and not (tmp_path / "pooled").exists()
