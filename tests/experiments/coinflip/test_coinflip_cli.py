import json

from deltahall.cli.main import main


def test_cli_run_json_and_resume(tmp_path, capsys):
    args = [
        "coinflip",
        "run",
        "--out-dir",
        str(tmp_path / "r"),
        "--m",
        "150",
        "--epochs",
        "2",
        "--n-layers",
        "1",
        "--d-model",
        "8",
        "--n-heads",
        "2",
        "--d-ff",
        "16",
        "--progress",
        "false",
        "--json",
    ]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["final"]["epoch"] == 2 and "cp_bayes_round" in out["reference"]
    assert main(args + ["--resume-from-checkpoint", "latest"]) == 0
    assert main(args) == 2  # a finished run is not overwritten
    assert "already holds a run" in capsys.readouterr().err


def test_cli_bad_config_is_one_clear_line(tmp_path, capsys):
    assert main(["coinflip", "run", "--out-dir", str(tmp_path), "--n", "0"]) == 2
    err = capsys.readouterr().err
    assert "deltahall coinflip: error: `n` must be >= 1; got 0." in err
    assert (
        main(["coinflip", "run", "--out-dir", str(tmp_path), "--m", "3", "--val-fraction", "0.1"])
        == 2
    )
    assert "large enough for the split" in capsys.readouterr().err
