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
