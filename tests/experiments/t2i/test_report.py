"""The t2i report module: the main job's reproduce command is the config it runs."""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path

from deltahall.cli.config_args import config_from_args
from deltahall.cli.main import build_parser
from deltahall.experiments.t2i.config import T2IConfig
from deltahall.experiments.t2i.report import MAIN_JOB_OVERRIDES, main_job_config, reproduce_command


def test_reproduce_command_parses_to_the_main_job_config(tmp_path: Path) -> None:
    cfg = main_job_config(tmp_path / "t2i", seed=3)
    argv = shlex.split(reproduce_command(3, out_dir=str(tmp_path / "t2i")))
    assert argv[:3] == ["deltahall", "t2i", "run"]
    parsed = config_from_args(T2IConfig, build_parser(only="t2i").parse_args(argv[1:]))
    # Only the progress bars differ (the main job turns them off; they change no result).
    assert dataclasses.replace(parsed, run=dataclasses.replace(parsed.run, progress=False)) == cfg
    assert cfg.run.out_dir == tmp_path / "t2i" and cfg.seed == 3
    assert all(getattr(cfg, k) == v for k, v in MAIN_JOB_OVERRIDES.items())


def test_known_truth_tables_moved_from_the_measure_step() -> None:
    """The main job's t2i section carries the known-truth comparison the separate measure step had."""
    from deltahall.experiments.t2i.report import known_truth_rows

    tables = known_truth_rows(0, digits_cnn=False)
    assert len(tables) == 2
    for rows in tables.values():
        methods = {r["method"] for r in rows}
        assert any(m.startswith("HCDR") for m in methods) and "lof" in methods
        assert all(0.0 <= r["recall"] <= 1.0 for r in rows)
