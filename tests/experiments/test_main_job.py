import json
import sys
import types

import pytest

from deltahall._registry import Registry
from deltahall.experiments import main_job
from deltahall.io import Section


@pytest.fixture
def fake_steps(monkeypatch):
    ok = types.ModuleType("fake_ok_step")

    def ok_section(run_dir, seed):
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "done.txt").write_text(str(seed))
        return Section("Fake OK").text(f"seed={seed}")

    ok.main_job_section = ok_section
    bad = types.ModuleType("fake_bad_step")

    def bad_section(run_dir, seed):
        raise RuntimeError("boom")

    bad.main_job_section = bad_section
    monkeypatch.setitem(sys.modules, "fake_ok_step", ok)
    monkeypatch.setitem(sys.modules, "fake_bad_step", bad)
    steps = Registry("main-job step", entries={"theory": "fake_ok_step", "qa": "fake_bad_step"})
    monkeypatch.setattr(main_job, "STEPS", steps)


def test_main_job_reports_success_and_failure(tmp_path, fake_steps):
    res = main_job.run(main_job.MainJobConfig(out_dir=tmp_path, seed=3, progress=False))
    assert (tmp_path / "theory" / "done.txt").read_text() == "3"
    assert set(res.seconds) == {"theory", "qa"}
    assert res.failed == {"qa": "RuntimeError: boom"}
    html = res.report_path.read_text()
    assert "Fake OK" in html and "seed=3" in html and "qa: FAILED" in html
    summary = json.loads((tmp_path / "main_job.json").read_text())
    assert summary["failed"] == {"qa": "RuntimeError: boom"}
    assert json.loads((tmp_path / "manifest.json").read_text())["seed"] == 3


def test_main_job_only_filters(tmp_path, fake_steps):
    res = main_job.run(main_job.MainJobConfig(out_dir=tmp_path, only=("theory",)))
    assert list(res.seconds) == ["theory"] and not res.failed


def test_cli_exit_code_on_failed_step(tmp_path, fake_steps, capsys):
    from deltahall.cli.main import main

    rc = main(["report", "--out-dir", str(tmp_path), "--only", "qa"])
    captured = capsys.readouterr()
    assert rc == 1
    assert "step qa failed: RuntimeError: boom" in captured.err
    assert "report:" in captured.out
