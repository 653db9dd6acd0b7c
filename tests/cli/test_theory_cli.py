"""`deltahall theory ...` through the dispatcher."""

from __future__ import annotations

import json
import math

import pytest

from deltahall.cli.main import main


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["theory", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.parametrize(
    "args",
    [
        ["--theorem", "5.1", "--delta", "0.01", "--states", "3", "--dim", "2"],
        ["--theorem", "5.2", "--delta", "1e-300", "--states", "4", "--eps", "2.5", "--weights", "0.1", "0.2", "0.3", "0.4"],
        ["--theorem", "5.3", "--delta", "0.5", "--states", "2", "--lipschitz", "3", "--hint-bound", "2", "--scale", "1e-5"],
        ["--theorem", "C.1", "--delta", "0.01", "--states", "3"],
        ["--theorem", "5.1", "--delta", "1", "--states", "2", "--dim", "2", "--cov", "2", "0.5", "0.5", "1"],
    ],
)
def test_witness_json_has_density_per_state(capsys, args) -> None:
    rc, out, _ = _run(capsys, "witness", *args, "--json")
    assert rc == 0
    res = json.loads(out)
    delta = float(args[args.index("--delta") + 1])
    assert res["hallucinates"] is True
    assert len(res["states"]) == int(args[args.index("--states") + 1])
    for s in res["states"]:
        assert s["density"] <= delta and s["log_density"] <= math.log(delta)


def test_witness_table_and_out_dir(capsys, tmp_path) -> None:
    rc, out, _ = _run(capsys, "witness", "--theorem", "5.2", "--delta", "0.01", "--states", "2", "--eps", "1", "--out-dir", str(tmp_path))
    assert rc == 0 and "max density over the ε-ball" in out and "verdict: the estimate δ-hallucinates" in out
    saved = json.loads((tmp_path / "witness.json").read_text())
    assert saved["theorem"] == "5.2" and (tmp_path / "manifest.json").exists()


def test_as_written_shows_failure(capsys) -> None:
    rc, out, _ = _run(capsys, "witness", "--theorem", "C.1", "--delta", "0.01", "--states", "2", "--as-written", "--json")
    res = json.loads(out)
    assert rc == 0 and res["hallucinates"] is False
    assert res["extra"]["paper_formula_density"] == pytest.approx(0.01712, rel=1e-3)


def test_corollary_lists_inputs(capsys) -> None:
    rc, out, _ = _run(capsys, "witness", "--theorem", "5.2.1", "--delta", "0.1", "--states", "2", "--inputs", "3", "--json")
    res = json.loads(out)
    assert rc == 0 and res["hallucinates"] and len(res["inputs"]) == 3


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--delta", "1.5", "--states", "2"], r"`delta` must be in \(0, 1\]; got 1.5"),
        (["--delta", "0", "--states", "2"], r"`delta` must be in \(0, 1\]"),
        (["--delta", "nan", "--states", "2"], "`delta` must be finite"),
        (["--delta", "0.1", "--states", "1"], "`n_states` must be >= 2"),
        (["--delta", "0.1", "--states", "2", "--weights", "0.5", "0.6"], "`weights` must sum to 1"),
        (["--delta", "0.1", "--states", "2", "--weights", "nan", "0.5"], "`weights` must be finite"),
        (["--delta", "0.1", "--states", "2", "--dim", "2", "--cov", "1", "2", "2", "1"], "must be positive definite"),
        (["--delta", "0.1", "--states", "2", "--scale", "nan"], "`scale` must be finite"),
        (["--delta", "0.1", "--states", "2", "--eps", "1"], "`--eps` does not apply to Theorem 5.1"),
    ],
)
def test_bad_arguments_one_line_exit_2(capsys, args, match) -> None:
    rc, out, err = _run(capsys, "witness", "--theorem", "5.1", *args)
    assert rc == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deltahall theory: error:")
    import re

    assert re.search(match, lines[0])


def test_bound_and_check(capsys, tmp_path) -> None:
    rc, out, _ = _run(capsys, "bound", "--delta", "0.5", "--states", "2", "--within-scale", "0.05", "--mean-law", "cube",
                      "--mean-scale", "1", "--mc-samples", "20000", "--json")
    res = json.loads(out)
    assert rc == 0 and res["applicable"] and res["holds"] and 0 < res["bound"] < res["p_hat"]
    assert res["ci"][0] <= 0.5 <= res["ci"][1]  # see tests/theory/test_bound.py for why P_H = 1/2
    rc, out, _ = _run(capsys, "check", "--instances", "2", "--mc-samples", "1000", "--out-dir", str(tmp_path))
    assert rc == 0 and "Theorem 6.1 check" in out and (tmp_path / "check.csv").exists()


def test_figures(capsys, tmp_path) -> None:
    rc, out, _ = _run(capsys, "figures", "--out-dir", str(tmp_path))
    assert rc == 0 and (tmp_path / "figures" / "figure_8.svg").exists() and "figure_2" in out


def test_help_teaches(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["theory", "witness", "--help"])
    out = capsys.readouterr().out
    assert "Definition 4.2" in out and "examples:" in out
