import subprocess
import sys

import pytest

from deltahall.cli.main import main


def test_top_level_help_lists_every_command(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for cmd in ("theory", "coinflip", "hcdr", "t2i", "qa", "report"):
        assert cmd in out


def test_version(capsys):
    try:
        main(["--version"])
    except SystemExit as e:
        assert e.code == 0
    assert "deltahall" in capsys.readouterr().out


def test_report_bad_step_is_one_clear_line(capsys, tmp_path):
    rc = main(["report", "--only", "nope", "--out-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.strip().count("\n") == 0
    assert "`only` must name steps" in err


def test_import_deltahall_is_light():
    code = "import sys, deltahall, deltahall.io; print(sorted(m for m in ('torch','transformers','diffusers','sklearn') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    "argv",
    [
        ["coinflip", "sweep", "--m", "3"],  # would have been read as --ms 3
        ["measure", "--ref", "x.npy"],
        ["theory", "check", "--ou", "x"],
    ],
)
def test_abbreviated_options_are_refused(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments" in err and argv[-2] in err and "Traceback" not in err
