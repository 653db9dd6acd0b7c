"""``deltahall t2i``: run, report, config files, errors, and the documented paper-scale command."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from deltahall.cli.config_args import config_from_args
from deltahall.cli.main import build_parser, main
from deltahall.experiments.t2i import T2IConfig

RUN_ARGS = [
    "--train-steps",
    "2",
    "--checkpoint-every",
    "2",
    "--num-samples",
    "4",
    "--sample-batch-size",
    "4",
    "--inference-steps",
    "2",
    "--progress",
    "false",
    "--device",
    "cpu",
]


def test_cli_run_json_then_report(digits_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "t2i",
                "run",
                "--out-dir",
                str(digits_dir),
                *RUN_ARGS,
                "--prompts",
                "a handwritten digit one",
                "",
                "--json",
            ]
        )
        == 0
    )
    rows = json.loads(capsys.readouterr().out)
    assert [(r["step"], r["prompt"]) for r in rows] == [
        (0, "a handwritten digit one"),
        (0, ""),
        (2, "a handwritten digit one"),
        (2, ""),
    ]
    assert main(["t2i", "report", "--run-dir", str(digits_dir)]) == 0
    html = (digits_dir / "report.html").read_text()
    assert (
        "Figure 5" in html and "data:image/png;base64" in html and "a handwritten digit one" in html
    )


def test_cli_config_file_and_explicit_options(tmp_path: Path) -> None:
    f = tmp_path / "t2i.toml"
    f.write_text(
        'preset = "afhq-sd15"\ndata = "/data/afhq"\ntrain_steps = 40\ncheckpoint_every = 10\n'
    )
    p = build_parser(only="t2i")
    args = p.parse_args(["t2i", "run", "--config", str(f), "--train-steps", "80"])
    cfg = config_from_args(T2IConfig, args, config_file=args.config)
    assert (cfg.preset, cfg.data, cfg.train_steps, cfg.checkpoint_every) == (
        "afhq-sd15",
        "/data/afhq",
        80,
        10,
    )
    f.write_text('preset = "digits"\nstepz = 3\n')
    with pytest.raises(ValueError, match=r"unknown key 'stepz'"):
        config_from_args(
            T2IConfig, p.parse_args(["t2i", "run", "--config", str(f)]), config_file=str(f)
        )


def test_cli_user_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["t2i", "run", "--preset", "afhq-sd15"]) == 2
    assert "`data` must be given" in capsys.readouterr().err
    assert (
        main(
            [
                "t2i",
                "run",
                "--out-dir",
                str(tmp_path),
                "--resume-from-checkpoint",
                str(tmp_path / "nope"),
                *RUN_ARGS,
            ]
        )
        == 2
    )
    assert "`resume_from_checkpoint` must be 'latest'" in capsys.readouterr().err
    assert main(["t2i", "report", "--run-dir", str(tmp_path / "empty")]) == 2


def test_documented_paper_scale_commands_parse() -> None:
    doc = (Path(__file__).parents[3] / "docs" / "t2i.md").read_text()
    cmds = [
        line.strip().rstrip("\\").strip()
        for line in doc.splitlines()
        if "t2i run" in line and "--preset afhq-sd15" in line
    ]
    assert cmds, "docs/t2i.md documents no paper-scale command"
    p = build_parser(only="t2i")
    for cmd in cmds:
        argv = shlex.split(cmd)
        argv = argv[argv.index("t2i") :]
        args = p.parse_args(argv)
        cfg = config_from_args(T2IConfig, args, config_file=args.config)
        assert cfg.preset == "afhq-sd15" and cfg.uses_vae
