"""``deltahall hcdr fit / score / curve`` end to end, in process, and its bad-input table (issue 8)."""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import pickle
import re

import numpy as np
import pytest

import deltahall.io.atomic as atomic_mod
from deltahall.cli.main import main
from deltahall.detectors import HCDRDetector


def _strict_json(text):
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))


@pytest.fixture()
def files(tmp_path):
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (200, 12)), rng.normal(2, 1, (200, 12))]) + 3
    np.save(tmp_path / "E.npy", X)
    np.save(tmp_path / "L.npy", np.repeat(np.array(["cat", "dog"]), 200))
    np.save(tmp_path / "T.npy", np.vstack([X[:20], rng.normal(3, 4, (30, 12))]))
    return tmp_path


def test_fit_score_curve(files, capsys):
    det_path = files / "det.safetensors"
    rc = main(
        [
            "hcdr",
            "fit",
            "--embeddings",
            str(files / "E.npy"),
            "--labels",
            str(files / "L.npy"),
            "--out",
            str(det_path),
            "--pca-dim",
            "6",
            "--n-components",
            "2",
            "--json",
        ]
    )
    assert rc == 0
    fit = _strict_json(capsys.readouterr().out)
    assert fit["calibration"] == "conformal" and fit["alpha"] == 0.1
    assert [s["state"] for s in fit["states"]] == ["cat", "dog"]
    assert all(s["n_holdout"] == 60 for s in fit["states"])  # ceil(0.3 * 200)
    # conformal at alpha = 0.1 with m = 60: floor(0.1 * 61) = 6 calibration rows below the threshold
    assert all(s["holdout_coverage"] == pytest.approx(1 - 5 / 60) for s in fit["states"])
    assert all(
        s["model"]["pca_dim"] == 6 and s["model"]["n_components"] == 2 for s in fit["states"]
    )
    det = HCDRDetector.load(det_path)
    assert det.pca_dim == 6 and det.n_components == 2 and det.calibration == "conformal"

    out_csv = files / "scores.csv"
    assert (
        main(
            [
                "hcdr",
                "score",
                "--detector",
                str(det_path),
                "--embeddings",
                str(files / "T.npy"),
                "--out",
                str(out_csv),
                "--json",
            ]
        )
        == 0
    )
    res = _strict_json(capsys.readouterr().out)
    T = np.load(files / "T.npy")
    assert res["hallucination_rate"] == pytest.approx(det.hallucination_rate(T))
    with out_csv.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 50
    np.testing.assert_allclose(
        [float(r["log_density_dog"]) for r in rows], det.state_log_densities(T)[:, 1]
    )
    np.testing.assert_allclose([float(r["decision"]) for r in rows], det.decision_function(T))
    assert [int(r["inside"]) for r in rows] == (det.predict(T) == 1).astype(int).tolist()

    png, curve_csv = files / "curve.png", files / "curve.csv"
    assert (
        main(
            [
                "hcdr",
                "curve",
                "--detector",
                str(det_path),
                "--embeddings",
                str(files / "T.npy"),
                "--percentiles",
                "0:40:20",
                "--png",
                str(png),
                "--out",
                str(curve_csv),
                "--json",
            ]
        )
        == 0
    )
    curve = _strict_json(capsys.readouterr().out)
    assert [r["percentile"] for r in curve] == [0, 20, 40]  # stop included
    np.testing.assert_allclose([r["rate"] for r in curve], det.rate_curve(T, [0, 20, 40]))
    assert png.stat().st_size > 1000
    with curve_csv.open() as fh:
        assert [float(r["rate"]) for r in csv.DictReader(fh)] == [r["rate"] for r in curve]

    # Extreme but finite magnitudes score like the unscaled rows (they used to be NaN = "hallucinated").
    np.save(files / "T_far.npy", T * 1e300)
    assert (
        main(
            [
                "hcdr",
                "score",
                "--detector",
                str(det_path),
                "--embeddings",
                str(files / "T_far.npy"),
                "--json",
            ]
        )
        == 0
    )
    assert _strict_json(capsys.readouterr().out)["hallucination_rate"] == pytest.approx(
        res["hallucination_rate"]
    )


def test_state_labels_with_commas_quotes_newlines(files, capsys):
    labels = np.array(['a,b "x"', "line\nbreak"])
    np.save(files / "L2.npy", np.repeat(labels, 200))
    det_path = files / "det.safetensors"
    assert (
        main(
            [
                "hcdr",
                "fit",
                "--embeddings",
                str(files / "E.npy"),
                "--labels",
                str(files / "L2.npy"),
                "--out",
                str(det_path),
                "--pca-dim",
                "4",
                "--n-components",
                "1",
                "--json",
            ]
        )
        == 0
    )
    assert [s["state"] for s in _strict_json(capsys.readouterr().out)["states"]] == labels.tolist()
    out = files / "s.csv"
    assert (
        main(
            [
                "hcdr",
                "score",
                "--detector",
                str(det_path),
                "--embeddings",
                str(files / "T.npy"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    text = out.read_text()
    header = next(csv.reader(io.StringIO(text)))
    assert header == ["row", "inside", "decision", 'log_density_a,b "x"', "log_density_line\nbreak"]
    assert text.startswith(
        'row,inside,decision,"log_density_a,b ""x""","log_density_line\nbreak"\n'
    )
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 50 and all(len(r) == 5 for r in rows)


def _fitted(tmp_path):
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (60, 12)), rng.normal(2, 1, (60, 12))]) + 3
    y = np.repeat([0, 1], 60)
    HCDRDetector(pca_dim=4, n_components=1, random_state=0).fit(X, y).save(
        tmp_path / "det.safetensors"
    )
    return X, y


def _bad_files(d):
    """Write the hostile inputs; returns nothing (the table names them)."""
    X, y = _fitted(d)
    np.save(d / "E.npy", X)
    np.save(d / "L.npy", y)
    (d / "empty.npy").write_bytes(b"")
    (d / "csv.npy").write_text("1.0,2.0,3.0\n4.0,5.0,6.0\n")
    full = (d / "E.npy").read_bytes()
    (d / "trunc.npy").write_bytes(full[: len(full) // 2])
    (d / "trunc_header.npy").write_bytes(full[:20])
    np.save(d / "obj.npy", np.array([{"a": 1}, 2], dtype=object), allow_pickle=True)
    np.savez(d / "arch.npz", X=X)
    (d / "arch.npy").write_bytes((d / "arch.npz").read_bytes())
    (d / "pickle.npy").write_bytes(pickle.dumps(X))
    np.save(d / "L2d.npy", y[:, None])
    np.save(d / "E0.npy", np.zeros((0, 12)))
    np.save(d / "Ebool.npy", X > 3)
    np.save(d / "Ecplx.npy", X.astype(np.complex128))
    np.save(d / "Estr.npy", X.astype(str))
    Xc = X.copy()
    Xc[y == 1] = Xc[y == 1][0]
    np.save(d / "Econst.npy", Xc)
    Xz = X.copy()
    Xz[[4, 70]] = 0.0
    np.save(d / "Ezero.npy", Xz)
    np.save(d / "Ehuge.npy", X * 1e200)
    Xn = X.copy()
    Xn[5, 1] = np.nan
    np.save(d / "Enan.npy", Xn)
    np.save(d / "E5.npy", X[:, :5])
    np.save(d / "Lshort.npy", y[:-1])
    np.save(d / "Lone.npy", np.zeros(120, dtype=int))
    Lf = y.astype(float)
    Lf[3] = np.nan
    np.save(d / "Lnan.npy", Lf)
    (d / "adir").mkdir()
    (d / "adir" / "keep.txt").write_text("keep")
    det = (d / "det.safetensors").read_bytes()
    (d / "det_trunc_head.safetensors").write_bytes(det[:5])
    n_header = int.from_bytes(det[:8], "little")
    (d / "det_trunc_mid.safetensors").write_bytes(det[: 8 + n_header // 2])  # cut inside the header
    (d / "det_trunc_end.safetensors").write_bytes(det[:-1])
    flipped = bytearray(det)
    flipped[-8] ^= 0xFF
    (d / "det_flip.safetensors").write_bytes(bytes(flipped))
    (d / "det_empty.safetensors").write_bytes(b"")
    (d / "det_text.safetensors").write_text("state,threshold\na,1\n")
    _forge(
        d / "det.safetensors",
        d / "det_nan.safetensors",
        "state0.calibration_scores",
        lambda a: a * np.nan,
    )
    _forge(
        d / "det.safetensors",
        d / "det_f32.safetensors",
        "state1.means",
        lambda a: a.astype(np.float32),
    )
    (d / "afile").write_text("x")


def _forge(src, dst, name, edit):
    """A well-formed detector file with one tensor changed and the SHA-256 recomputed."""
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    from deltahall.detectors._format import _digest

    with safe_open(str(src), framework="numpy") as fh:
        meta = dict(fh.metadata())
    arrays = load_file(str(src))
    arrays[name] = edit(arrays[name])
    meta["sha256"] = _digest(meta, arrays)
    save_file(arrays, str(dst), metadata=meta)


def _cases(d):
    E, L, T, D = str(d / "E.npy"), str(d / "L.npy"), str(d / "E.npy"), str(d / "det.safetensors")
    out = str(d / "new.safetensors")

    def fit(emb=E, lab=L, o=out, *extra):
        return [
            "hcdr",
            "fit",
            "--embeddings",
            emb,
            "--labels",
            lab,
            "--out",
            o,
            "--pca-dim",
            "4",
            "--n-components",
            "1",
            *extra,
        ]

    def score(det=D, emb=T, *extra):
        return ["hcdr", "score", "--detector", det, "--embeddings", emb, *extra]

    def curve(*extra, det=D, emb=T):
        return ["hcdr", "curve", "--detector", det, "--embeddings", emb, *extra]

    f = lambda name: str(d / name)  # noqa: E731
    return [
        # .npy loading: every error names the file
        (
            fit(f("empty.npy")),
            2,
            r"embeddings '.*empty\.npy' is empty \(0 bytes\), not a \.npy file",
        ),
        (
            fit(f("csv.npy")),
            2,
            r"embeddings '.*csv\.npy' is not a \.npy file: it looks like text \('1\.0,2\.0",
        ),
        (fit(f("trunc.npy")), 2, r"embeddings '.*trunc\.npy' is a truncated or corrupt \.npy file"),
        (
            fit(f("trunc_header.npy")),
            2,
            r"embeddings '.*trunc_header\.npy' is a truncated or corrupt \.npy",
        ),
        (fit(f("obj.npy")), 2, r"embeddings '.*obj\.npy' holds Python objects"),
        (
            fit(f("arch.npy")),
            2,
            r"embeddings '.*arch\.npy' is not a \.npy file: it is a zip archive",
        ),
        (
            fit(f("arch.npz")),
            2,
            r"embeddings '.*arch\.npz' is not a \.npy file: it is a zip archive",
        ),
        (
            fit(f("pickle.npy")),
            2,
            r"embeddings '.*pickle\.npy' is not a \.npy file: it is a Python pickle",
        ),
        (fit(E, f("obj.npy")), 2, r"labels '.*obj\.npy' holds Python objects"),
        (fit(E, f("csv.npy")), 2, r"labels '.*csv\.npy' is not a \.npy file"),
        (fit(f("missing.npy")), 2, r"embeddings file not found: '.*missing\.npy'"),
        (fit(E, f("missing.npy")), 2, r"labels file not found: '.*missing\.npy'"),
        (fit(f("adir")), 2, r"embeddings '.*adir' is a directory, not a \.npy file"),
        (
            fit(L),
            2,
            r"embeddings '.*L\.npy' must have shape \(n_samples, n_features\); got shape \(120,\)",
        ),
        (
            fit(E, f("L2d.npy")),
            2,
            r"labels '.*L2d\.npy' must have shape \(n_samples,\); got shape \(120, 1\)",
        ),
        (fit(f("E0.npy")), 2, r"embeddings '.*E0\.npy' has no rows \(shape \(0, 12\)\)"),
        (score(D, f("E0.npy")), 2, r"embeddings '.*E0\.npy' has no rows"),
        (score(D, f("csv.npy")), 2, r"embeddings '.*csv\.npy' is not a \.npy file"),
        (curve(emb=f("trunc.npy")), 2, r"embeddings '.*trunc\.npy' is a truncated or corrupt"),
        # degenerate embeddings and labels
        (fit(f("Ebool.npy")), 2, r"`X` must hold real-valued embeddings; got boolean dtype"),
        (fit(f("Ecplx.npy")), 2, r"`X` must be real-valued; got complex dtype complex128"),
        (fit(f("Estr.npy")), 2, r"`X` must be a numeric array \(float or int\); got dtype <U"),
        (
            fit(f("Econst.npy")),
            2,
            r"state 1 has zero variance: its 60 rows \(60, 61, .*\) are all identical",
        ),
        (fit(f("Ezero.npy")), 2, r"`X` has 2 all-zero row\(s\) \(4, 70\): L2 normalisation"),
        (
            fit(f("Ehuge.npy"), L, out, "--no-normalize"),
            2,
            r"largest \|entry\| .*e\+200; with normalize=False",
        ),
        (
            fit(f("Enan.npy")),
            2,
            r"`X` must contain only finite values; found NaN/inf in 1 row\(s\): 5\.",
        ),
        (
            fit(E, f("Lshort.npy")),
            2,
            r"`X` and `y` must have the same number of rows; got 120 and 119",
        ),
        (fit(E, f("Lone.npy")), 2, r"`y` must contain at least two states"),
        (
            fit(E, f("Lnan.npy")),
            2,
            r"`y` must not contain NaN/inf labels; found them at index \[3\]",
        ),
        (score(D, f("Ebool.npy")), 2, r"boolean dtype"),
        (score(D, f("Ezero.npy")), 2, r"`X` has 2 all-zero row\(s\) \(4, 70\)"),
        (score(D, f("Enan.npy")), 2, r"NaN/inf in 1 row\(s\): 5\."),
        (score(D, f("E5.npy")), 2, r"X has 5 features, but HCDRDetector is expecting 12"),
        # parameters
        (fit(E, L, out, "--pca-dim", "40"), 2, r"`pca_dim` must be <="),
        (
            fit(E, L, out, "--alpha", "1"),
            2,
            r"The 'alpha' parameter of HCDRDetector must be a float in the range "
            r"\(0.0, 1.0\)\. Got 1.0 instead\.",
        ),
        (
            fit(E, L, out, "--n-components", "0"),
            2,
            r"The 'n_components' parameter .*Got 0 instead\.",
        ),
        (fit(E, L, out, "--alpha", "nan"), 2, r"The 'alpha' parameter .*Got nan instead\."),
        (fit(E, L, out, "--calibration-fraction", "0"), 2, r"The 'calibration_fraction' parameter"),
        (
            fit(E, L, out, "--alpha", "0.01"),
            2,
            r"state 0 has m=18 calibration samples \(of its 60 samples.*"
            r"m\+1 < 1/alpha = 100",
        ),
        (
            curve("--percentiles", "0:50:0"),
            2,
            r"`--percentiles` must be .*got '0:50:0' \(step must be > 0\)",
        ),
        (curve("--percentiles", "0:50:-1"), 2, r"got '0:50:-1' \(step must be > 0\)"),
        (curve("--percentiles", "50:0:1"), 2, r"got '50:0:1' \(start must be <= stop\)"),
        (curve("--percentiles", "0:100:1e-9"), 2, r"\(100000000001 values; at most 10001\)"),
        (curve("--percentiles", ",".join(["1"] * 20000)), 2, r"\(20000 values; at most 10001\)"),
        (
            curve("--percentiles", "0,150"),
            2,
            r"got '0,150' \(values must be finite and in \[0, 100\]\)",
        ),
        (curve("--percentiles=-5:10:5"), 2, r"values must be finite and in \[0, 100\]"),
        (curve("--percentiles", "nan"), 2, r"got 'nan' \(values must be finite"),
        (curve("--percentiles", "inf:1:1"), 2, r"got 'inf:1:1' \(values must be finite\)"),
        (
            curve("--percentiles", "0:50"),
            2,
            r"`--percentiles` must be 'start:stop:step' or a comma list.*got '0:50'\.$",
        ),
        (curve("--percentiles", "abc"), 2, r"got 'abc'\.$"),
        # detector files
        (
            score(f("det_trunc_head.safetensors")),
            2,
            r"'.*det_trunc_head\.safetensors' is not a \.safetensors file",
        ),
        (
            score(f("det_trunc_mid.safetensors")),
            2,
            r"'.*det_trunc_mid\.safetensors' is truncated: its \.safetensors header announces \d+ bytes",
        ),
        (
            score(f("det_trunc_end.safetensors")),
            2,
            r"'.*det_trunc_end\.safetensors' is truncated or corrupt \(not a readable \.safetensors file",
        ),
        (
            score(f("det_flip.safetensors")),
            2,
            r"'.*det_flip\.safetensors' failed its SHA-256 check",
        ),
        (
            score(f("det_empty.safetensors")),
            2,
            r"'.*det_empty\.safetensors' is not a \.safetensors file",
        ),
        (
            score(f("det_text.safetensors")),
            2,
            r"'.*det_text\.safetensors' is not a \.safetensors file",
        ),
        (
            score(f("det_nan.safetensors")),
            2,
            r"'.*det_nan\.safetensors' is an inconsistent HCDR detector file: tensor `state0\.calibration_scores` must be finite",
        ),
        (
            score(f("det_f32.safetensors")),
            2,
            r"'.*det_f32\.safetensors' is an inconsistent HCDR detector file: tensor `state1\.means` must be float64; got float32",
        ),
        (score(E), 2, r"'.*E\.npy' is not a \.safetensors file"),
        (score(f("adir")), 2, r"HCDR detector file not found: '.*adir'"),
        (curve(det=f("missing.safetensors")), 2, r"HCDR detector file not found"),
        # outputs that are inputs, folders or each other; OS errors on outputs
        (
            fit(E, L, L),
            2,
            r"`--out` must not be an input of this command; got '.*L\.npy', which is the same as `--labels`",
        ),
        (fit(E, L, E), 2, r"`--out` must not be an input.*same as `--embeddings`"),
        (
            fit(E, L, f("adir")),
            2,
            r"`--out` must be a file path; got the existing directory '.*adir'",
        ),
        (score(D, T, "--out", T), 2, r"`--out` must not be an input.*`--embeddings`"),
        (score(D, T, "--out", D), 2, r"`--out` must not be an input.*`--detector`"),
        (
            score(D, T, "--out", f("adir")),
            2,
            r"`--out` must be a file path; got the existing directory",
        ),
        (
            curve("--out", f("c.csv"), "--png", f("c.csv")),
            2,
            r"`--png` must differ from `--out`; both are",
        ),
        (curve("--png", D), 2, r"`--png` must not be an input.*`--detector`"),
        (curve("--out", f("adir")), 2, r"`--out` must be a file path"),
        (
            fit(E, L, f("afile/det.safetensors")),
            1,
            r"error: /.*/afile/det\.safetensors: Not a directory$",
        ),
        (score(D, T, "--out", f("afile/s.csv")), 1, r"error: /.*/afile/s\.csv: Not a directory$"),
        (curve("--png", f("afile/c.png")), 1, r"error: /.*/afile/c\.png: Not a directory$"),
    ]


def _snapshot(d):
    return {
        str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(d.rglob("*"))
        if p.is_file()
    }


def test_bad_inputs_table(tmp_path, capsys):
    _bad_files(tmp_path)
    cases = _cases(tmp_path)
    assert len(cases) >= 60
    before = _snapshot(tmp_path)
    for argv, code, msg in cases:
        rc = main(argv)
        err = capsys.readouterr().err
        assert rc == code, (argv[:3], rc, err)
        assert "Traceback" not in err and err.count("\n") == 1, err
        assert err.startswith("deltahall hcdr: error: "), err
        assert re.search(msg, err.strip()), (msg, err)
        assert _snapshot(tmp_path) == before, (argv, "changed a file")


def test_disk_full_is_one_line_and_leaves_nothing(files, capsys, monkeypatch):
    out = files / "det.safetensors"
    out.write_bytes(b"old detector")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic_mod.os, "fsync", full)
    rc = main(
        [
            "hcdr",
            "fit",
            "--embeddings",
            str(files / "E.npy"),
            "--labels",
            str(files / "L.npy"),
            "--out",
            str(out),
            "--pca-dim",
            "4",
            "--n-components",
            "1",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1
    assert re.search(r"error: /.*/det\.safetensors: No space left on device$", err.strip()), err
    assert out.read_bytes() == b"old detector"
    assert sorted(p.name for p in files.iterdir()) == ["E.npy", "L.npy", "T.npy", "det.safetensors"]
