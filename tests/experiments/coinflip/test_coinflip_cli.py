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


# --------------------------------------------------------------------------- the sweep's [base]
def _sweep(tmp_path, text: str, *argv: str, name: str = "c.toml"):
    from deltahall.cli.coinflip import _sweep_config
    from deltahall.cli.main import build_parser

    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    args = build_parser(only="coinflip").parse_args(
        ["coinflip", "sweep", "--config", str(path), *argv]
    )
    return _sweep_config(args)


def test_sweep_base_table_goes_through_the_one_resolver(tmp_path):
    import pytest

    from deltahall.experiments.coinflip.config import CoinFlipConfig

    cfg = _sweep(tmp_path, "rounds = 2\n[base]\nepochs = 3\nlr = 0.01\n[run]\nthreads = 2\n")
    assert (cfg.rounds, cfg.base.epochs, cfg.base.lr, cfg.run.threads) == (2, 3, 0.01, 2)
    assert cfg.base == CoinFlipConfig(epochs=3, lr=0.01)  # the preset under the file
    # the command line wins over the file; run settings may also be given flat, like on the CLI
    cfg = _sweep(tmp_path, "[base]\nepochs = 3\nlr = 0.01\n", "--epochs", "5")
    assert (cfg.base.epochs, cfg.base.lr) == (5, 0.01)
    assert _sweep(tmp_path, "epochs = 4\n").base.epochs == 4
    with pytest.raises(
        ValueError,
        match=r"table \[base\] has unknown keys \['learning_rate'\]; known keys are \[.*'lr'",
    ):
        _sweep(tmp_path, "[base]\nlearning_rate = 0.1\n")
    with pytest.raises(ValueError, match=r"table \[base\] must not set 'n': the sweep sets it"):
        _sweep(tmp_path, "[base]\nn = 3\n")
    with pytest.raises(ValueError, match=r"must not set 'seed': the sweep sets it"):
        _sweep(tmp_path, "seed = 3\n")
    with pytest.raises(ValueError, match=r"table \[base\] must not set 'run'"):
        _sweep(tmp_path, "[base.run]\nthreads = 4\n")
    with pytest.raises(ValueError, match=r"table \[base\] has unknown keys \['out_dir'\]"):
        _sweep(tmp_path, "[base]\nout_dir = 'x'\n")
    with pytest.raises(ValueError, match=r"`base` must be a table"):
        _sweep(tmp_path, '{"base": 3}', name="c.json")
    with pytest.raises(
        ValueError, match=r"unknown key 'lrr'; known keys are \[.*'lr'.*\[base\], \[run\]"
    ):
        _sweep(tmp_path, "lrr = 3\n")


def test_sweep_command_line_has_no_option_for_the_varied_settings():
    from deltahall.cli.main import build_parser

    p = build_parser(only="coinflip")
    sweep = next(a for a in p._actions if a.dest == "command").choices["coinflip"]
    sweep = next(a for a in sweep._actions if a.dest == "coinflip_command").choices["sweep"]
    flags = {o for a in sweep._actions for o in a.option_strings}
    assert {"--ns", "--ms", "--objectives", "--base-seed", "--epochs", "--lr"} <= flags
    assert not {"--n", "--m", "--objective", "--seed", "--run"} & flags
