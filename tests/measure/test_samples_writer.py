"""The per-sample table: the columnar ``samples.csv`` writer, ``samples.parquet``, per-prompt means."""

from __future__ import annotations

import csv
import io
import math
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deltahall.experiments.measure_run import run
from deltahall.measure import pipeline
from deltahall.measure.calibration import DetectorSettings, _group_means, measure_embeddings
from deltahall.measure.inputs import Samples
from deltahall.measure.pipeline import (
    MeasureConfig,
    format_floats,
    write_samples_csv,
    write_samples_parquet,
)
from deltahall.measure.selection import select_candidates

from .conftest import MEANS, blends, draw

TRICKY = [
    "plain",
    "with,comma",
    'with "quotes"',
    "new\nline",
    "cr\rhere",
    " lead space",
    "",
    "ünï",
    "tab\there",
]


def _bits(x: float) -> bytes:
    return struct.pack("<d", x)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=0, max_size=200))
def test_floats_read_back_exactly_and_equal_repr(xs: list[float]) -> None:
    a = np.array(xs, dtype=np.float64)
    for few in (False, True):
        got = format_floats(a, few_distinct=few)
        assert got == [repr(v) for v in xs]
        for s, v in zip(got, xs, strict=True):
            assert (math.isnan(v) and math.isnan(float(s))) or _bits(float(s)) == _bits(v)


def test_few_distinct_values_gathered_by_index() -> None:
    rng = np.random.default_rng(0)
    p = (1.0 + rng.integers(0, 300, 5000)) / 301.0
    p[:3] = [-0.0, 0.0, 5e-324]
    assert format_floats(p, few_distinct=True) == list(map(repr, p.tolist())) == format_floats(p)


def _measurement(texts: bool) -> tuple[Any, Samples, Any]:
    rng = np.random.default_rng(1)
    X, y = draw(rng, 450, np.repeat(np.arange(3), 150))
    G = np.vstack([draw(rng, 30)[0], blends(rng, 20)])
    prompts = [TRICKY[i % len(TRICKY)] for i in range(50)]
    states = np.array(["a", "b,1", 'c"q'])[y]
    m = measure_embeddings(
        X, states, G, prompts=prompts, settings=DetectorSettings(normalize=False, pca_dim=None)
    )
    ids = [f"id{i}" if i % 7 else TRICKY[i % len(TRICKY)] + str(i) for i in range(50)]
    gen = Samples(
        embeddings=G,
        ids=ids,
        prompts=prompts,
        texts=[t * 2 for t in prompts] if texts else None,
        kind="jsonl" if texts else "npy",
    )
    sel = select_candidates(
        m.gen_p,
        m.prompts,
        m.gen_nearest,
        m.gen_flagged,
        states=m.states,
        reference_sizes=m.state_sizes["total"],
        mode="hcdr",
        k=None,
        alpha=0.1,
    )
    return m, gen, sel


def _reference_csv(m: Any, gen: Samples, selection: Any) -> str:
    """The former writer, ``csv.writer`` on one row per sample, also quoting fields with a ``\\r``
    (written bare with ``lineterminator="\\n"``, where ``csv.reader`` then splits the row)."""
    buf = io.StringIO()
    w = csv.writer(
        buf, lineterminator="\r\n"
    )  # quotes fields holding \r or \n; no TRICKY value holds "\r\n"
    header = ["id", "prompt", "p_value", "nearest_state", "flagged"] + (
        ["kept"] if selection is not None else []
    )
    header += ["typicality"]
    header += [f"log_density_{s}" for s in m.states] + (["text"] if gen.texts is not None else [])
    w.writerow(header)
    for i in range(len(gen.ids)):
        row = [
            gen.ids[i],
            m.prompts[i],
            repr(float(m.gen_p[i])),
            m.states[m.gen_nearest[i]],
            str(bool(m.gen_flagged[i])),
        ]
        if selection is not None:
            row.append(str(bool(selection.kept[i])))
        row.append(repr(float(m.gen_typicality[i])))
        row += [repr(float(v)) for v in m.gen_scores[i]]
        if gen.texts is not None:
            row.append(gen.texts[i])
        w.writerow(row)
    return buf.getvalue().replace("\r\n", "\n")


@pytest.mark.parametrize("texts", [False, True])
@pytest.mark.parametrize("chunk", [7, 1 << 16])
def test_csv_is_what_csv_writer_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, texts: bool, chunk: int
) -> None:
    monkeypatch.setattr(pipeline, "_CSV_CHUNK", chunk)
    m, gen, sel = _measurement(texts)
    for selection in (None, sel):
        path = tmp_path / "samples.csv"
        write_samples_csv(path, m, gen, selection)
        assert path.read_bytes().decode("utf-8") == _reference_csv(m, gen, selection)
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        assert [r["id"] for r in rows] == gen.ids and [r["prompt"] for r in rows] == m.prompts
        assert np.array_equal(np.array([float(r["p_value"]) for r in rows]), m.gen_p)
        assert np.array_equal(
            np.array([float(r['log_density_c"q']) for r in rows]), m.gen_scores[:, 2]
        )
        assert [r["nearest_state"] for r in rows] == [m.states[j] for j in m.gen_nearest]


def test_parquet_holds_the_same_table_typed(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    m, gen, sel = _measurement(texts=True)
    write_samples_parquet(tmp_path / "samples.parquet", m, gen, sel)
    t = pq.read_table(tmp_path / "samples.parquet")
    assert t.column_names == [
        "id",
        "prompt",
        "p_value",
        "nearest_state",
        "flagged",
        "kept",
        "typicality",
        "log_density_a",
        "log_density_b,1",
        'log_density_c"q',
        "text",
    ]
    assert t.column("id").to_pylist() == gen.ids and t.column("text").to_pylist() == gen.texts
    assert np.array_equal(t.column("p_value").to_numpy(), m.gen_p)
    assert np.array_equal(t.column("typicality").to_numpy(), m.gen_typicality)
    assert np.array_equal(t.column("log_density_b,1").to_numpy(), m.gen_scores[:, 1])
    assert t.column("flagged").to_pylist() == m.gen_flagged.tolist()
    assert t.column("kept").to_pylist() == sel.kept.tolist()
    assert t.column("nearest_state").to_pylist() == [m.states[j] for j in m.gen_nearest]


def test_command_writes_parquet_instead_of_csv(npy_inputs: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    p = npy_inputs
    res = run(
        MeasureConfig(
            reference=p["ref"],
            reference_labels=p["labels"],
            generated=p["gen"],
            generated_prompts=p["prompts"],
            out_dir=tmp_path / "o",
            report=False,
            samples_format="parquet",
        )
    )
    assert (tmp_path / "o" / "samples.parquet").is_file() and not (
        tmp_path / "o" / "samples.csv"
    ).exists()
    assert "write_samples" in res.seconds


def test_parquet_without_pyarrow_is_one_line_naming_the_extra(
    npy_inputs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow -> ImportError
    p = npy_inputs
    cfg = MeasureConfig(
        reference=p["ref"],
        reference_labels=p["labels"],
        generated=p["gen"],
        generated_prompts=p["prompts"],
        out_dir=tmp_path / "o",
        report=False,
        samples_format="parquet",
    )
    with pytest.raises(ImportError, match=r"pip install 'deltahall\[parquet\]'") as exc:
        run(cfg)
    assert "\n" not in str(exc.value)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_unknown_samples_format_refused(npy_inputs: dict[str, Path]) -> None:
    with pytest.raises(
        ValueError, match=r"`samples_format` must be one of 'csv', 'parquet'; got 'xlsx'"
    ):
        MeasureConfig(
            reference=npy_inputs["ref"], generated=npy_inputs["gen"], samples_format="xlsx"
        )  # type: ignore[arg-type]


@pytest.mark.parametrize("n_groups", [1, 3, 700])
def test_group_means_equal_per_group_means(n_groups: int) -> None:
    rng = np.random.default_rng(n_groups)
    G = (rng.normal(size=(20_000, 5)) * 1e3).astype(np.float32)
    codes = rng.integers(0, n_groups, G.shape[0]).astype(np.int64)
    codes[:n_groups] = np.arange(n_groups)  # every group present
    got = _group_means(G, codes, n_groups)
    want = np.stack([G[codes == j].astype(np.float64).mean(axis=0) for j in range(n_groups)])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-9)
    assert got.dtype == np.float64 and MEANS.shape[1] == 4
