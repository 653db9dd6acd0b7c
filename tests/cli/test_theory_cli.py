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
        [
            "--theorem",
            "5.2",
            "--delta",
            "1e-300",
            "--states",
            "4",
            "--eps",
            "2.5",
            "--weights",
            "0.1",
            "0.2",
            "0.3",
            "0.4",
        ],
        [
            "--theorem",
            "5.3",
            "--delta",
            "0.5",
            "--states",
            "2",
            "--lipschitz",
            "3",
            "--hint-bound",
            "2",
            "--scale",
            "1e-5",
        ],
        ["--theorem", "C.1", "--delta", "0.01", "--states", "3"],
        [
            "--theorem",
            "5.1",
            "--delta",
            "1",
            "--states",
            "2",
            "--dim",
            "2",
            "--cov",
            "2",
            "0.5",
            "0.5",
            "1",
        ],
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
    rc, out, _ = _run(
        capsys,
        "witness",
        "--theorem",
        "5.2",
        "--delta",
        "0.01",
        "--states",
        "2",
        "--eps",
        "1",
        "--out-dir",
        str(tmp_path),
    )
    assert (
        rc == 0
        and "max density over the ε-ball" in out
        and "verdict: the estimate δ-hallucinates" in out
    )
    saved = json.loads((tmp_path / "witness.json").read_text())
    assert saved["theorem"] == "5.2" and (tmp_path / "manifest.json").exists()


def test_as_written_shows_failure(capsys) -> None:
    rc, out, _ = _run(
        capsys,
        "witness",
        "--theorem",
        "C.1",
        "--delta",
        "0.01",
        "--states",
        "2",
        "--as-written",
        "--json",
    )
    res = json.loads(out)
    assert rc == 0 and res["hallucinates"] is False
    assert res["details"]["paper_formula_density"] == pytest.approx(0.01712, rel=1e-3)


def test_corollary_lists_inputs(capsys) -> None:
    rc, out, _ = _run(
        capsys,
        "witness",
        "--theorem",
        "5.2.1",
        "--delta",
        "0.1",
        "--states",
        "2",
        "--inputs",
        "3",
        "--json",
    )
    res = json.loads(out)
    assert rc == 0 and res["hallucinates"] and len(res["inputs"]) == 3


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--delta", "1.5", "--states", "2"], r"`delta` must be in \(0, 1\]; got 1.5"),
        (["--delta", "0", "--states", "2"], r"`delta` must be in \(0, 1\]"),
        (["--delta", "nan", "--states", "2"], "`delta` must be finite"),
        (["--delta", "0.1", "--states", "1"], "`states` must be >= 2"),
        (["--delta", "0.1", "--states", "2", "--weights", "0.5", "0.6"], "`weights` must sum to 1"),
        (
            ["--delta", "0.1", "--states", "2", "--weights", "nan", "0.5"],
            "`weights` must be finite",
        ),
        (
            ["--delta", "0.1", "--states", "2", "--dim", "2", "--cov", "1", "2", "2", "1"],
            "must be positive definite",
        ),
        (["--delta", "0.1", "--states", "2", "--scale", "nan"], "`scale` must be finite"),
        (
            ["--delta", "0.1", "--states", "2", "--eps", "1"],
            "`--eps` does not apply to Theorem 5.1",
        ),
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
    rc, out, _ = _run(
        capsys,
        "bound",
        "--delta",
        "0.5",
        "--states",
        "2",
        "--within-scale",
        "0.05",
        "--mean-law",
        "cube",
        "--mean-scale",
        "1",
        "--mc-samples",
        "20000",
        "--json",
    )
    res = json.loads(out)
    assert rc == 0 and res["applicable"] and res["holds"] and 0 < res["bound"] < res["p_hat"]
    assert res["ci"][0] <= 0.5 <= res["ci"][1]  # see tests/theory/test_bound.py for why P_H = 1/2
    rc, out, _ = _run(
        capsys, "check", "--instances", "2", "--mc-samples", "1000", "--out-dir", str(tmp_path)
    )
    assert rc == 0 and "Theorem 6.1 check" in out and (tmp_path / "check.csv").exists()


def test_figures(capsys, tmp_path) -> None:
    rc, out, _ = _run(capsys, "figures", "--out-dir", str(tmp_path))
    assert rc == 0 and (tmp_path / "figures" / "figure_8.svg").exists() and "figure_2" in out


def test_help_teaches(capsys) -> None:
    assert main(["theory", "witness", "--help"]) == 0
    out = capsys.readouterr().out
    assert "Definition 4.2" in out and "examples:" in out


def _strict_loads(text: str):
    def refuse(name: str):
        raise ValueError(f"non-strict JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


# (sub-command argv, exit code, regex the one stderr line must match). Every row is a bad
# input or an input whose size or scale cannot be handled: one line, no traceback.
BAD = [
    (
        ["witness", "--theorem", "5.1", "--delta", "0.1", "--states", "1000000"],
        2,
        "`states` must be <= 10000",
    ),
    (
        ["witness", "--theorem", "5.1", "--delta", "0.1", "--states", "2", "--dim", "1000000"],
        2,
        "`dim` must be <= 1024",
    ),
    (
        ["witness", "--theorem", "5.2", "--delta", "0.1", "--states", "5000", "--dim", "100"],
        2,
        r"`states` \* `dim`\*\*2 must be <= 4194304",
    ),
    (
        ["witness", "--theorem", "C.1", "--delta", "0.1", "--states", "1000"],
        2,
        r"`states` \* `dim \(classes\)`\*\*2",
    ),
    (
        ["witness", "--theorem", "C.1", "--delta", "1e-300", "--states", "2", "--scale", "1e200"],
        2,
        r"`scale` = 1e\+200 .*outside \[1e-300, 1e\+300\].*use `scale` in \[5.28e-299, 2.51e\+150\]",
    ),
    (
        ["witness", "--theorem", "C.1", "--delta", "1e-301", "--states", "2", "--scale", "1e250"],
        2,
        "`scale` = 1e[+]250",
    ),
    (
        ["witness", "--theorem", "5.1", "--delta", "0.1", "--states", "2", "--scale", "1e-310"],
        2,
        r"`scale` must be in \[1e-300, 1e\+300\]",
    ),
    (
        ["witness", "--theorem", "5.2", "--delta", "0.1", "--states", "3", "--scale", "1e300"],
        2,
        "puts a mean at distance",
    ),
    (
        ["witness", "--theorem", "5.2", "--delta", "0.1", "--states", "2", "--eps", "1e308"],
        2,
        "`eps`|puts a mean",
    ),
    (
        [
            "witness",
            "--theorem",
            "5.3",
            "--delta",
            "0.1",
            "--states",
            "2",
            "--lipschitz",
            "1e200",
            "--hint-bound",
            "1e200",
        ],
        2,
        "must be finite",
    ),
    (
        ["witness", "--theorem", "5.2.1", "--delta", "0.1", "--states", "2", "--inputs", "1000000"],
        2,
        "`n_inputs` must be <= 1000",
    ),
    (
        ["witness", "--theorem", "5.3", "--delta", "0.1", "--states", "2", "--as-written"],
        2,
        "`--as-written` exists for",
    ),
    (
        [
            "witness",
            "--theorem",
            "C.1",
            "--delta",
            "0.1",
            "--states",
            "2",
            "--as-written",
            "--weights",
            "0.5",
            "0.5",
        ],
        2,
        "`--weights` does not apply to Theorem C.1 as written",
    ),
    (
        [
            "witness",
            "--theorem",
            "5.1",
            "--delta",
            "0.1",
            "--states",
            "2",
            "--dim",
            "2",
            "--cov",
            "1",
            "0",
            "1",
        ],
        2,
        "`cov` must have dim",
    ),
    (["witness", "--delta", "0.1", "--states", "2"], 2, "required: --theorem"),
    (["witness", "--theorem", "5.9", "--delta", "0.1", "--states", "2"], 2, "invalid choice"),
    (
        ["witness", "--theorem", "5.1", "--delta", "0.1", "--states", "2", "--lipschitz", "1"],
        2,
        "`--lipschitz` does not apply",
    ),
    (
        ["witness", "--theorem", "5.1", "--delta", "inf", "--states", "2"],
        2,
        "`delta` must be finite",
    ),
    (
        ["bound", "--delta", "0.5", "--within-scale", "0"],
        2,
        r"`within_scale` must be in \(0, inf\); got 0",
    ),
    (["bound", "--delta", "0.5", "--within-scale", "-1", "1"], 2, "`within_scale` must be in"),
    (
        ["bound", "--delta", "0.5", "--states", "3", "--within-scale", "1", "1"],
        2,
        "`within_scale` must have 1 or N = 3",
    ),
    (["bound", "--delta", "0.5", "--mean-scale", "0"], 2, "`mean_scale` must be in"),
    (["bound", "--delta", "0.5", "--states", "1000000"], 2, "`states` must be <= 10000"),
    (["bound", "--delta", "0.5", "--dim", "1000000"], 2, "`dim` must be <= 1024"),
    (
        ["bound", "--delta", "0.5", "--mc-samples", "1000000000000"],
        2,
        "`mc_samples` must be <= 100000000",
    ),
    (
        ["bound", "--delta", "0.5", "--mean-law", "student_t", "--law-param", "3"],
        2,
        "`law_param \\(nu of student_t\\)`",
    ),
    (["bound", "--delta", "0.5", "--confidence", "1"], 2, r"`confidence` must be in \(0, 1\)"),
    (["bound", "--delta", "2"], 2, r"`delta` must be in \(0, 1\]"),
    (["bound", "--delta", "0.5", "--weights", "0.5", "0.5", "0.0"], 2, "`weights` must have N = 2"),
    (["check", "--instances", "1000000"], 2, "`instances` must be <= 10000"),
    (
        ["check", "--instances", "10000", "--mc-samples", "1000000"],
        2,
        r"`instances` \* `mc_samples` must be <= 1e\+09",
    ),
    (["check", "--instances", "0"], 2, "`instances` must be >= 1"),
    (["check", "--confidence", "nan"], 2, "`confidence` must be finite"),
    (
        [
            "witness",
            "--theorem",
            "5.1",
            "--delta",
            "0.1",
            "--states",
            "2",
            "--as-written",
            "--scale",
            "1e-300",
        ],
        2,
        "`cov_scale` = 1e-300 puts the means at 3.72e[+]301",
    ),
    (
        [
            "witness",
            "--theorem",
            "5.1",
            "--delta",
            "0.1",
            "--states",
            "2",
            "--as-written",
            "--scale",
            "1e10",
        ],
        2,
        "radicand is .* < 0 .*`cov_scale` = 1e[+]10 is too large",
    ),
    (
        [
            "witness",
            "--theorem",
            "5.2",
            "--delta",
            "0.1",
            "--states",
            "4",
            "--as-written",
            "--eps",
            "1e307",
        ],
        2,
        "`eps` = 1e[+]307 with `c_const` = 2 puts the means beyond",
    ),
    (
        ["witness", "--theorem", "C.1", "--delta", "1", "--states", "2", "--as-written"],
        2,
        "undefined at `delta` = 1",
    ),
    (
        ["witness", "--theorem", "C.1", "--delta", "0.1", "--states", "2", "--dim", "1"],
        2,
        "`n_classes` must be >= 2",
    ),
    (
        [
            "witness",
            "--theorem",
            "5.1",
            "--delta",
            "0.1",
            "--states",
            "2",
            "--weights",
            "-0.5",
            "1.5",
        ],
        2,
        "`weights` must be non-negative",
    ),
    (
        [
            "witness",
            "--theorem",
            "5.1",
            "--delta",
            "0.1",
            "--states",
            "2",
            "--dim",
            "2",
            "--cov",
            "1",
            "0",
            "0",
            "-1",
        ],
        2,
        r"`cov\[0\]` must be positive definite",
    ),
    (
        [
            "witness",
            "--theorem",
            "5.1",
            "--delta",
            "0.1",
            "--states",
            "2",
            "--dim",
            "2",
            "--cov",
            "1e300",
            "0",
            "0",
            "1e300",
            "--scale",
            "1e200",
        ],
        2,
        "`scale` = 1e[+]200 times the Cholesky factor",
    ),
    (
        [
            "witness",
            "--theorem",
            "5.1",
            "--delta",
            "0.1",
            "--states",
            "2",
            "--config",
            "/nonexistent/w.toml",
        ],
        2,
        "`--config` file not found",
    ),
    (["bound", "--delta", "0.5", "--weights", "0.3", "0.3"], 2, "`weights` must sum to 1"),
    (["bound", "--delta", "0.5", "--law-param", "nan"], 2, "`law_param` must be finite"),
    (["bound", "--delta", "0.5", "--seed", "-1"], 2, "`seed` must be >= 0"),
    (["check", "--mc-samples", "0"], 2, "`mc_samples` must be >= 1"),
    (
        ["witness", "--theorem", "5.3", "--delta", "0.5", "--states", "3000"],
        2,
        "`n_states` must be <= 2048 for Theorem 5.3",
    ),
    (
        ["bound", "--delta", "0.5", "--states", "10000"],
        2,
        r"`mc_samples` \* N must be <= 1e\+08 .* 200000 \* 10000",
    ),
    (
        ["bound", "--delta", "0.5", "--dim", "1024"],
        2,
        r"`mc_samples` \* N \* d\*\*2 must be <= 1e\+10",
    ),
]


@pytest.mark.filterwarnings(
    "error"
)  # a numerical warning on the way to the refusal is a failure too
@pytest.mark.parametrize(
    ("argv", "code", "match"), BAD, ids=[" ".join(a[0:1] + a[-2:]) for a, _, _ in BAD]
)
def test_bad_inputs_one_line_no_traceback(capsys, tmp_path, argv, code, match) -> None:
    import re

    keep = tmp_path / "keep.txt"
    keep.write_text("untouched")
    rc, out, err = _run(capsys, *argv, "--out-dir", str(tmp_path))
    assert rc == code and out == ""
    assert "Traceback" not in err
    lines = [
        ln
        for ln in err.strip().splitlines()
        if not ln.startswith("usage:") and not ln.startswith("  ")
    ]
    assert len(lines) == 1 and re.search(match, lines[0]), err
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "keep.txt"
    ]  # nothing written before refusing
    assert keep.read_text() == "untouched"


def test_extreme_scales_now_verified(capsys) -> None:
    # 5.2 at 1e-200 with eps 3e-201 used to say "does NOT δ-hallucinate" (exit 1);
    # 5.3 at 1e-180 used to refuse with "x must contain only finite values".
    rc, out, _ = _run(
        capsys,
        "witness",
        "--theorem",
        "5.2",
        "--delta",
        "0.01",
        "--states",
        "2",
        "--scale",
        "1e-200",
        "--eps",
        "3e-201",
        "--json",
    )
    res = _strict_loads(out)
    assert rc == 0 and res["hallucinates"] and res["log_margin"] > 0
    rc, out, _ = _run(
        capsys,
        "witness",
        "--theorem",
        "5.3",
        "--delta",
        "0.01",
        "--states",
        "2",
        "--scale",
        "1e-180",
        "--hint-bound",
        "1e-181",
        "--json",
    )
    res = _strict_loads(out)
    assert rc == 0 and res["hallucinates"] and res["details"]["example_hallucinates"]
    rc, out, _ = _run(
        capsys,
        "witness",
        "--theorem",
        "C.1",
        "--delta",
        "1e-300",
        "--states",
        "2",
        "--scale",
        "2e150",
        "--json",
    )
    assert rc == 0 and _strict_loads(out)["hallucinates"]


def test_json_is_strict_with_reasons_for_nulls(capsys) -> None:
    # not applicable: the bound and the alphas are null and a field says why
    rc, out, _ = _run(
        capsys,
        "bound",
        "--delta",
        "0.5",
        "--states",
        "2",
        "--weights",
        "0.9",
        "0.1",
        "--within-scale",
        "0.5",
        "--mc-samples",
        "2000",
        "--json",
    )
    res = _strict_loads(out)
    assert rc == 0 and res["applicable"] is False and res["bound"] is None and res["holds"] is None
    assert "no alpha > 1" in res["null_fields"]["bound"] and res["states"][0]["alpha_i"] is None
    # densities below the float64 range: log_density null with a note
    rc, out, _ = _run(
        capsys,
        "witness",
        "--theorem",
        "C.1",
        "--delta",
        "0.01",
        "--states",
        "2",
        "--scale",
        "1e-200",
        "--json",
    )
    res = _strict_loads(out)
    assert (
        rc == 0
        and res["states"][0]["log_density"] is None
        and "underflows" in res["states"][0]["log_density_note"]
    )


def test_defaults_live_in_one_place(capsys) -> None:
    import dataclasses

    from deltahall.experiments.bound_sweep import check_theorem_6_1
    from deltahall.experiments.theory_checks import CheckConfig

    assert (
        CheckConfig().confidence
        == 0.99
        == __import__("inspect").signature(check_theorem_6_1).parameters["confidence"].default
    )
    assert main(["theory", "check", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for f in dataclasses.fields(CheckConfig):
        assert f"--{f.name.replace('_', '-')}" in out and f"(default: {f.default})" in out


def test_config_file_and_command_line(capsys, tmp_path) -> None:
    cfg = tmp_path / "w.toml"
    cfg.write_text('theorem = "5.2"\ndelta = 0.01\nstates = 3\neps = 0.5\n')
    rc, out, _ = _run(capsys, "witness", "--config", str(cfg), "--eps", "2", "--json")
    res = _strict_loads(out)
    assert rc == 0 and res["theorem"] == "5.2" and res["eps"] == 2.0 and res["n_states"] == 3


def test_config_file_errors_and_output_that_is_a_file(capsys, tmp_path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("delta = 0.1\nbogus = 1\n")
    rc, out, err = _run(
        capsys, "witness", "--theorem", "5.1", "--states", "2", "--config", str(bad)
    )
    assert (
        rc == 2
        and out == ""
        and "unknown key" in err
        and "bogus" in err
        and len(err.strip().splitlines()) == 1
    )
    broken = tmp_path / "broken.toml"
    broken.write_text("delta = \n")
    rc, _, err = _run(
        capsys, "witness", "--theorem", "5.1", "--states", "2", "--config", str(broken)
    )
    assert rc == 2 and "broken.toml" in err and "Traceback" not in err
    a_file = tmp_path / "a_file"
    a_file.write_text("keep")
    rc, out, err = _run(
        capsys,
        "witness",
        "--theorem",
        "5.1",
        "--delta",
        "0.1",
        "--states",
        "2",
        "--out-dir",
        str(a_file),
    )
    # refused by the shared run lifecycle as bad input (exit 2), before anything is computed
    assert (
        rc == 2
        and len(err.strip().splitlines()) == 1
        and "a_file" in err
        and a_file.read_text() == "keep"
    )
