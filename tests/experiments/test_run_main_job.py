"""The main job's run lifecycle: a folder holding a main-job run is refused unless resumed, and a
resumed job says which steps it reused, with their original times labelled as such."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from deltahall._registry import Registry
from deltahall.experiments import main_job
from deltahall.io import Section


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Two fake steps; ``calls`` counts how often each ran, ``fail`` makes one fail once."""
    state = {"theory": 0, "qa": 0, "fail_qa": 1}

    def make(name: str) -> types.ModuleType:
        mod = types.ModuleType(f"fake_{name}_step")

        def section(run_dir: Path, seed: int) -> Section:
            state[name] += 1
            if name == "qa" and state["fail_qa"]:
                state["fail_qa"] -= 1
                raise RuntimeError("boom")
            run_dir.mkdir(parents=True, exist_ok=True)
            return Section(f"Fake {name}").text(f"seed={seed}")

        mod.main_job_section = section  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, mod.__name__, mod)
        return mod

    steps = Registry("main-job step", entries={n: make(n).__name__ for n in ("theory", "qa")})
    monkeypatch.setattr(main_job, "STEPS", steps)
    return state


def test_a_folder_holding_a_main_job_is_refused_without_resume(
    tmp_path: Path, steps: dict[str, int]
) -> None:
    main_job.run(main_job.MainJobConfig(out_dir=tmp_path, progress=False))
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(
        ValueError, match="already holds a main-job run; pass --resume-from-checkpoint latest"
    ):
        main_job.run(main_job.MainJobConfig(out_dir=tmp_path, progress=False))
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_resume_reuses_finished_steps_and_labels_their_original_times(
    tmp_path: Path, steps: dict[str, int]
) -> None:
    first = main_job.run(main_job.MainJobConfig(out_dir=tmp_path, progress=False))
    assert first.failed == {"qa": "RuntimeError: boom"} and first.reused == {}
    original = first.seconds["theory"]
    second = main_job.run(
        main_job.MainJobConfig(out_dir=tmp_path, progress=False, resume_from_checkpoint="latest")
    )
    assert second.reused == {
        "theory": original
    }  # qa failed before: it ran again, it was not reused
    assert not second.failed
    summary = json.loads((tmp_path / "main_job.json").read_text())
    assert summary["reused"] == ["theory"] and summary["original_seconds"]["theory"] == original
    assert summary["original_seconds"]["qa"] == second.seconds["qa"]
    html = second.report_path.read_text()
    assert "original seconds" in html and "reused" in html and "Reused steps (theory)" in html
    # A third session reuses both, and keeps the times they took when they really ran.
    third = main_job.run(
        main_job.MainJobConfig(out_dir=tmp_path, progress=False, resume_from_checkpoint="latest")
    )
    assert third.reused == {"theory": original, "qa": second.seconds["qa"]}


def test_cli_prints_which_steps_were_reused(
    tmp_path: Path, steps: dict[str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    from deltahall.cli.main import main

    steps["fail_qa"] = 0
    assert main(["report", "--out-dir", str(tmp_path), "--progress", "false"]) == 0
    capsys.readouterr()
    assert (
        main(
            [
                "report",
                "--out-dir",
                str(tmp_path),
                "--progress",
                "false",
                "--resume-from-checkpoint",
                "latest",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "theory     reused" in out and "originally" in out
    assert "reused 2 steps finished by an earlier session: theory, qa" in out


def test_a_killed_job_knows_the_steps_it_finished(
    tmp_path: Path, steps: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    steps["fail_qa"] = 0
    real = sys.modules["fake_qa_step"].main_job_section

    def killed(run_dir: Path, seed: int) -> Section:
        raise KeyboardInterrupt

    monkeypatch.setattr(sys.modules["fake_qa_step"], "main_job_section", killed)
    with pytest.raises(KeyboardInterrupt):
        main_job.run(main_job.MainJobConfig(out_dir=tmp_path, progress=False))
    assert json.loads((tmp_path / "main_job.json").read_text())["finished"] == ["theory"]
    monkeypatch.setattr(sys.modules["fake_qa_step"], "main_job_section", real)
    res = main_job.run(
        main_job.MainJobConfig(out_dir=tmp_path, progress=False, resume_from_checkpoint="latest")
    )
    assert list(res.reused) == ["theory"]
