"""The shared run lifecycle: acceptance, refusal with the changed key named, resume resolution."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from deltahall.experiments._run import (
    RunOptions,
    World,
    changed_keys,
    check_run,
    fingerprint,
    free,
    open_run,
)


@dataclass(frozen=True)
class Cfg:
    lr: float = 0.1
    steps: int = field(default=10, metadata=free("may grow on resume"))
    seed: int = 0
    run: RunOptions = field(default_factory=RunOptions, metadata={"resume": "free"})


def _cfg(tmp_path: Path, **kw) -> Cfg:
    run = kw.pop("run", {})
    return Cfg(run=RunOptions(out_dir=tmp_path / "r", **run), **kw)


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_fingerprint_skips_free_fields():
    assert fingerprint(Cfg()) == {"lr": 0.1, "seed": 0}


def test_changed_keys_names_old_and_new():
    assert changed_keys({"lr": 0.1, "a": 1}, {"lr": 0.2, "a": 1}) == ["lr: 0.1 -> 0.2"]
    assert changed_keys({}, {"x": "s"}) == ["x: <unset> -> 's'"]


def test_fresh_run_writes_manifest_with_config_and_world(tmp_path):
    r = open_run(_cfg(tmp_path), experiment="demo", world=World(rank=0, size=1))
    m = json.loads((r.root / "manifest.json").read_text())
    assert m["experiment"] == "demo" and m["fingerprint"] == {"lr": 0.1, "seed": 0}
    assert m["config"]["run"]["out_dir"].endswith("r") and m["world_size"] == 1
    assert r.checkpoint is None and not r.resumed


def test_existing_run_without_resume_is_refused_untouched(tmp_path):
    open_run(_cfg(tmp_path), experiment="demo")
    before = _snapshot(tmp_path / "r")
    with pytest.raises(
        ValueError, match="already holds a run; pass --resume-from-checkpoint latest"
    ):
        open_run(_cfg(tmp_path), experiment="demo")
    assert _snapshot(tmp_path / "r") == before


def test_changed_setting_is_refused_with_the_key_named_and_nothing_written(tmp_path):
    open_run(_cfg(tmp_path), experiment="demo")
    before = _snapshot(tmp_path / "r")
    with pytest.raises(ValueError, match=r"differ in 1 key: lr: 0.1 -> 0.5\."):
        open_run(
            _cfg(tmp_path, lr=0.5, run={"resume_from_checkpoint": "latest"}), experiment="demo"
        )
    assert _snapshot(tmp_path / "r") == before


def test_free_field_may_change_on_resume_and_sessions_are_recorded(tmp_path):
    open_run(_cfg(tmp_path), experiment="demo")
    ck = tmp_path / "r" / "checkpoint-5"
    ck.mkdir()
    (ck / "state.json").write_text("{}")
    r = open_run(
        _cfg(tmp_path, steps=20, run={"resume_from_checkpoint": "latest"}), experiment="demo"
    )
    assert r.checkpoint == ck and r.resumed
    m = json.loads((r.root / "manifest.json").read_text())
    assert len(m["sessions"]) == 2 and m["sessions"][1]["resumed_from"] == str(ck)


def test_latest_without_a_run_starts_fresh_with_one_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        r = open_run(_cfg(tmp_path, run={"resume_from_checkpoint": "latest"}), experiment="demo")
    assert r.checkpoint is None
    assert [rec.getMessage() for rec in caplog.records if "starts a fresh one" in rec.getMessage()]


def test_missing_explicit_checkpoint_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"got '.*nope' \(no such folder\)"):
        open_run(
            _cfg(tmp_path, run={"resume_from_checkpoint": str(tmp_path / "nope")}),
            experiment="demo",
        )
    assert not (tmp_path / "r").exists()


def test_out_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "r").write_text("x")
    with pytest.raises(ValueError, match="must be a folder; got the existing file"):
        open_run(_cfg(tmp_path), experiment="demo")


def test_other_experiment_run_is_refused(tmp_path):
    open_run(_cfg(tmp_path), experiment="demo")
    with pytest.raises(ValueError, match="holds a 'demo' run, not 'other'"):
        open_run(_cfg(tmp_path, run={"resume_from_checkpoint": "latest"}), experiment="other")


def test_a_manifest_without_a_fingerprint_cannot_be_resumed(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "manifest.json").write_text('{"config": {"lr": 0.1}}')
    with pytest.raises(ValueError, match="without a run fingerprint"):
        check_run(_cfg(tmp_path, run={"resume_from_checkpoint": "latest"}), experiment="demo")


def test_check_run_is_read_only_and_names_held_outputs(tmp_path):
    root = tmp_path / "r"
    root.mkdir()
    (root / "samples.csv").write_text("id\n")
    with pytest.raises(ValueError, match=r"already holds a run \(samples.csv\)"):
        check_run(_cfg(tmp_path), experiment="demo", outputs=("measure.json", "samples.csv"))
    d = check_run(_cfg(tmp_path), experiment="demo", outputs=("measure.json",))
    assert d.checkpoint is None and not d.resumed and d.fingerprint == {"lr": 0.1, "seed": 0}
    assert _snapshot(root) == {"samples.csv": b"id\n"}


def test_non_main_process_writes_nothing(tmp_path):
    calls = []
    w = World(rank=1, size=2, barrier=lambda: calls.append(1))
    (tmp_path / "r").mkdir()
    open_run(_cfg(tmp_path), experiment="demo", world=w)
    assert calls == [1, 1] and not (tmp_path / "r" / "manifest.json").exists()


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"device": "gpu"}, "`device` must be"),
        ({"threads": 0}, "`threads` must be >= 1"),
        (
            {"resume_from_checkpoint": " "},
            "`resume_from_checkpoint` must be 'latest' or a checkpoint folder",
        ),
        ({"progress": "yes"}, "`progress` must be a bool"),
    ],
)
def test_run_options_validation(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        RunOptions(**kw)


@pytest.mark.parametrize(
    ("argv", "missing", "extra"),
    [
        (["qa", "run", "--preset", "tiny"], "peft", "qa"),
        (["t2i", "run", "--train-steps", "2", "--checkpoint-every", "2"], "diffusers", "t2i"),
    ],
)
def test_missing_package_names_the_extra(argv, missing, extra, tmp_path, monkeypatch, capsys):
    import sys

    from deltahall.cli.main import main

    monkeypatch.setitem(sys.modules, missing, None)  # `import missing` now raises ImportError
    rc = main([*argv, "--out-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "\n" not in err and "Traceback" not in err
    assert f"`{missing}` is not installed" in err and f"pip install 'deltahall[{extra}]'" in err
    assert not (tmp_path / "r").exists()
