import json
import math

import numpy as np
import pytest

from deltahall.io import Report, RunDir
from deltahall.io.rundir import dumps_json, nonfinite_fields, read_csv, to_jsonable


def test_manifest_has_config_seed_versions(tmp_path):
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Cfg:
        a: int = 1
        b: tuple[float, ...] = (0.1, 0.2)

    rd = RunDir(tmp_path / "run")
    rd.write_manifest(Cfg(), seed=7)
    m = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert m["config"] == {"a": 1, "b": [0.1, 0.2]}
    assert m["seed"] == 7
    assert m["versions"]["numpy"] == np.__version__


def test_csv_round_trips_floats_exactly(tmp_path):
    rd = RunDir(tmp_path)
    rows = [{"x": 0.1 + 0.2, "n": 3}, {"x": 1 / 3, "n": 4, "extra": "y"}]
    rd.write_csv("r.csv", rows)
    back = read_csv(tmp_path / "r.csv")
    assert float(back[0]["x"]) == 0.1 + 0.2
    assert float(back[1]["x"]) == 1 / 3
    assert back[0]["extra"] == ""
    assert list(back[0]) == ["x", "n", "extra"]


def test_json_is_strict_with_non_finite(tmp_path):
    rd = RunDir(tmp_path)
    rd.write_json(
        "a.json", {"v": math.nan, "w": -math.inf, "arr": np.arange(3), "x": np.array([1.0, np.inf])}
    )
    text = (tmp_path / "a.json").read_text()
    assert "NaN" not in text.replace('"NaN"', "") and "Infinity" not in text.replace(
        '"-Infinity"', ""
    ).replace('"Infinity"', "")
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict constant {c}")) == {
        "v": None,
        "w": None,
        "arr": [0, 1, 2],
        "x": [1.0, None],
        "null_reasons": {"/v": "NaN", "/w": "-Infinity", "/x/1": "Infinity"},
    }
    assert to_jsonable(np.float64(2.5)) == 2.5
    assert to_jsonable([np.float32("nan"), float("inf")]) == [None, None]


def test_json_null_reasons_from_caller_and_kept_on_rewrite():
    out = json.loads(
        dumps_json({"rate": math.nan, "n": 0}, null_reasons={"/rate": "no rows to score"})
    )
    assert out == {"rate": None, "n": 0, "null_reasons": {"/rate": "no rows to score"}}
    again = json.loads(dumps_json({**out, "s": {"a/b": math.inf}}))
    assert again["null_reasons"] == {"/rate": "no rows to score", "/s/a~1b": "Infinity"}
    assert json.loads(dumps_json({"ok": 1.5})) == {"ok": 1.5}  # no field when nothing is null
    assert json.loads(dumps_json([math.nan, 1])) == [None, 1]
    with pytest.raises(TypeError, match="`null_reasons` needs a mapping"):
        dumps_json([math.nan], null_reasons={"/0": "why"})
    assert nonfinite_fields({"a": [0.0, -math.inf], "b": (math.nan,)}) == {
        "/a/1": "-Infinity",
        "/b/0": "NaN",
    }


def test_csv_quotes_header_like_rows(tmp_path):
    rd = RunDir(tmp_path)
    cols = ["state", 'log_density_a,"b"', "log_density_x\ny"]
    rd.write_csv("r.csv", [{"state": 'a,"b"', cols[1]: 0.5, cols[2]: 1.0}], fieldnames=cols)
    back = read_csv(tmp_path / "r.csv")
    assert list(back[0]) == cols and back[0]["state"] == 'a,"b"' and float(back[0][cols[1]]) == 0.5


def test_atomic_write_leaves_no_temp_files(tmp_path):
    rd = RunDir(tmp_path)
    rd.write_text("t.txt", "hello")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.txt"]


def test_report_embeds_figures_and_escapes(tmp_path):
    from deltahall.plotting import pyplot

    plt = pyplot()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    rd = RunDir(tmp_path)
    png, svg = rd.save_figure(fig, "line")
    plt.close(fig)
    rep = Report("T")
    s = rep.section("S <1>")
    s.text("a < b").table([{"k": "x", "v": 0.123456, "ok": True}]).figure(png, "cap")
    out = rep.write(tmp_path / "report.html")
    html = out.read_text()
    assert "data:image/png;base64," in html
    assert "a &lt; b" in html and "S &lt;1&gt;" in html
    assert "0.1235" in html
    assert 'src="figures' not in html  # self-contained
    with pytest.raises(ValueError, match="must be a .png"):
        s.figure(tmp_path / "x.txt")


def test_written_files_get_normal_permissions(tmp_path):
    import os

    rd = RunDir(tmp_path)
    p = rd.write_text("t.txt", "x")
    mask = os.umask(0)
    os.umask(mask)
    assert (p.stat().st_mode & 0o777) == (0o666 & ~mask)
