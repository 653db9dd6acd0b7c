"""Every experiment sub-command, driven with bad input: a clear outcome and nothing changed.

Each row is one hostile input. The command must exit with 2 (usage/bad input) or 1 (runtime
failure, e.g. an unwritable folder), print exactly one line on stderr that names the parameter
or file, never a traceback, and leave every file that existed before byte-identical. (The
``hcdr`` and ``theory`` commands have their own tables beside their CLIs.)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from deltahall.cli.main import main

FIX = Path(__file__).parents[1] / "experiments" / "qa" / "fixtures"
DATA, TQ = str(FIX / "open_qa_small.jsonl"), str(FIX / "truthfulqa_small.csv")
CF = [
    "coinflip",
    "run",
    "--m",
    "120",
    "--epochs",
    "1",
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
]
T2I = [
    "t2i",
    "run",
    "--train-steps",
    "2",
    "--checkpoint-every",
    "2",
    "--num-samples",
    "2",
    "--progress",
    "false",
]
QA = ["qa", "run", "--preset", "tiny", "--data", DATA, "--truthfulqa", TQ, "--epochs", "1"]


def _w(rel: str, data: bytes | str) -> Callable[[Path], None]:
    def setup(d: Path) -> None:
        p = d / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)

    return setup


def _read_only(rel: str) -> Callable[[Path], None]:
    def setup(d: Path) -> None:
        (d / rel).mkdir(parents=True)
        (d / rel / "keep.txt").write_text("x")
        os.chmod(d / rel, 0o555)

    return setup


#: A folder no process may create anything in: a read-only folder, or for root (who ignores
#: permissions, as on CI) a path under /sys, where mkdir fails with "Operation not permitted".
UNWRITABLE = "/sys/deltahall-test/run" if os.geteuid() == 0 else "{d}/ro/run"
UNWRITABLE_WORDS = "Operation not permitted" if os.geteuid() == 0 else "Permission denied"


def _empty_classes(d: Path) -> None:
    for c in ("cat", "dog"):
        (d / "afhq" / c).mkdir(parents=True)
    (d / "afhq" / "cat" / "notes.txt").write_text("no images here")


def _cf_checkpoint(
    rel: str, *, fingerprint: bool = True, truncate: bool = False
) -> Callable[[Path], None]:
    """A coin-flip checkpoint folder of the run ``CF`` (lr 0.001) written by hand, maybe damaged."""

    def setup(d: Path) -> None:
        import json

        import torch
        from safetensors.torch import save_file

        from deltahall.experiments._run import fingerprint as fp_of
        from deltahall.experiments.coinflip.config import CoinFlipConfig

        ck = d / rel
        ck.mkdir(parents=True)
        cfg = CoinFlipConfig(m=120, epochs=1, n_layers=1, d_model=8, n_heads=2, d_ff=16)
        extra = (
            {"fingerprint": fp_of(cfg), "epoch": 1, "history": []} if fingerprint else {"epoch": 1}
        )
        (ck / "state.json").write_text(json.dumps({"step": 1, "extra": extra}))
        save_file({"w": torch.zeros(64)}, str(ck / "model.safetensors"))
        if truncate:
            data = (ck / "model.safetensors").read_bytes()
            (ck / "model.safetensors").write_bytes(data[: len(data) // 2])

    return setup


def _bomb_png(rel: str) -> Callable[[Path], None]:
    """A PNG whose header claims 30000 x 30000 pixels (a few hundred bytes on disk)."""

    def setup(d: Path) -> None:
        import struct
        import zlib

        def chunk(tag: bytes, data: bytes) -> bytes:
            return (
                struct.pack(">I", len(data))
                + tag
                + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
            )

        ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)
        png = (
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b"")
        )
        _w(rel, png)(d)

    return setup


def _cf_sweep_run(files: dict[str, bytes | str]) -> Callable[[Path], None]:
    """A sweep folder (its manifest) with one finished-looking run whose files are ``files``."""

    def setup(d: Path) -> None:
        _w("s/manifest.json", '{"experiment": "coinflip-sweep", "fingerprint": {}}')(d)
        for name, data in files.items():
            _w(f"s/runs/n2-m120-mse-seed0/{name}", data)(d)

    return setup


_MJ = '{"experiment": "main-job", "fingerprint": {"seed": 0}, "seed": 0}'
_CF_RESULT = '{"config": {"n": 2, "m": 120, "epochs": 1}, "reference": {}}'


def _seq(*fs: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(d: Path) -> None:
        for f in fs:
            f(d)

    return setup


# (id, setup, argv with {d} for the folder, expected exit code, words the one line must contain)
ROWS: list[tuple[str, Callable[[Path], None] | None, list[str], int, str]] = [
    # ---------------------------------------------------------------- coinflip run
    (
        "cf-outdir-is-file",
        _w("f", "x"),
        [*CF, "--out-dir", "{d}/f"],
        2,
        "`out_dir` must be a folder",
    ),
    ("cf-outdir-under-file", _w("f", "x"), [*CF, "--out-dir", "{d}/f/sub"], 2, "is a file"),
    ("cf-n-zero", None, [*CF, "--out-dir", "{d}/r", "--n", "0"], 2, "`n` must be >= 1"),
    (
        "cf-epochs-negative",
        None,
        [*CF, "--out-dir", "{d}/r", "--epochs", "-1"],
        2,
        "`epochs` must be >= 1",
    ),
    (
        "cf-delta-above-one",
        None,
        [*CF, "--out-dir", "{d}/r", "--deltas", "1.5"],
        2,
        "`deltas` must be in (0, 1]",
    ),
    (
        "cf-delta-nan",
        None,
        [*CF, "--out-dir", "{d}/r", "--deltas", "nan"],
        2,
        "`deltas` must be finite",
    ),
    (
        "cf-objective-unknown",
        None,
        [*CF, "--out-dir", "{d}/r", "--objective", "mae"],
        2,
        "--objective",
    ),
    ("cf-m-not-int", None, [*CF, "--out-dir", "{d}/r", "--m", "abc"], 2, "--m"),
    (
        "cf-threads-zero",
        None,
        [*CF, "--out-dir", "{d}/r", "--threads", "0"],
        2,
        "`threads` must be >= 1",
    ),
    (
        "cf-device-unknown",
        None,
        [*CF, "--out-dir", "{d}/r", "--device", "gpu"],
        2,
        "`device` must be",
    ),
    ("cf-no-outdir", None, [*CF], 2, "`--out-dir` must be given"),
    (
        "cf-config-missing",
        None,
        [*CF, "--out-dir", "{d}/r", "--config", "{d}/nope.toml"],
        2,
        "nope.toml",
    ),
    (
        "cf-config-bad-toml",
        _w("c.toml", "n = = 2\n"),
        [*CF, "--out-dir", "{d}/r", "--config", "{d}/c.toml"],
        2,
        "c.toml: invalid TOML",
    ),
    (
        "cf-config-bad-json",
        _w("c.json", '{"n": }'),
        [*CF, "--out-dir", "{d}/r", "--config", "{d}/c.json"],
        2,
        "c.json: invalid JSON at line 1",
    ),
    (
        "cf-config-not-utf8",
        _w("c.toml", b"n = 2\n\xff\n"),
        [*CF, "--out-dir", "{d}/r", "--config", "{d}/c.toml"],
        2,
        "not UTF-8 text (line 2",
    ),
    (
        "cf-config-unknown-key",
        _w("c.toml", "nn = 2\n"),
        [*CF, "--out-dir", "{d}/r", "--config", "{d}/c.toml"],
        2,
        "unknown key 'nn'",
    ),
    (
        "cf-config-wrong-suffix",
        _w("c.yaml", "n: 2\n"),
        [*CF, "--out-dir", "{d}/r", "--config", "{d}/c.yaml"],
        2,
        "must be a .toml or .json",
    ),
    (
        "cf-resume-missing-path",
        None,
        [*CF, "--out-dir", "{d}/r", "--resume-from-checkpoint", "{d}/nope"],
        2,
        "no such folder",
    ),
    (
        "cf-resume-not-a-checkpoint",
        _w("ck/x.txt", "x"),
        [*CF, "--out-dir", "{d}/r", "--resume-from-checkpoint", "{d}/ck"],
        2,
        "holding state.json",
    ),
    (
        "cf-resume-empty",
        None,
        [*CF, "--out-dir", "{d}/r", "--resume-from-checkpoint", " "],
        2,
        "`resume_from_checkpoint` must be",
    ),
    ("cf-outdir-read-only", _read_only("ro"), [*CF, "--out-dir", UNWRITABLE], 1, UNWRITABLE_WORDS),
    (
        "cf-other-experiments-run",
        _w("r/manifest.json", '{"experiment": "t2i"}'),
        [*CF, "--out-dir", "{d}/r", "--resume-from-checkpoint", "latest"],
        2,
        "holds a 't2i' run",
    ),
    (
        "cf-manifest-corrupt",
        _w("r/manifest.json", "{not json"),
        [*CF, "--out-dir", "{d}/r", "--resume-from-checkpoint", "latest"],
        2,
        "unreadable manifest.json",
    ),
    (
        "cf-split-too-small",
        None,
        [*CF, "--out-dir", "{d}/r", "--m", "3", "--val-fraction", "0.1"],
        2,
        "large enough for the split",
    ),
    (
        "cf-resume-other-runs-checkpoint",
        _cf_checkpoint("r/checkpoints/checkpoint-1"),
        [
            *CF,
            "--out-dir",
            "{d}/r2",
            "--lr",
            "0.01",
            "--resume-from-checkpoint",
            "{d}/r/checkpoints/checkpoint-1",
        ],
        2,
        "lr: 0.001 -> 0.01",
    ),
    (
        "cf-resume-checkpoint-without-fingerprint",
        _cf_checkpoint("ck", fingerprint=False),
        [*CF, "--out-dir", "{d}/r", "--resume-from-checkpoint", "{d}/ck"],
        2,
        "carries no run fingerprint",
    ),
    (
        "cf-resume-state-json-garbage",
        _w("ck/state.json", "{garbage"),
        [*CF, "--out-dir", "{d}/r", "--resume-from-checkpoint", "{d}/ck"],
        2,
        "state.json' is not valid JSON",
    ),
    (
        "cf-resume-latest-state-json-not-utf8",
        _w("r/checkpoints/checkpoint-1/state.json", b'{"step": "\xff"}'),
        [*CF, "--out-dir", "{d}/r", "--resume-from-checkpoint", "latest"],
        2,
        "state.json' is not UTF-8",
    ),
    (
        "cf-resume-truncated-safetensors",
        _cf_checkpoint("ck", truncate=True),
        [*CF, "--out-dir", "{d}/r", "--resume-from-checkpoint", "{d}/ck"],
        2,
        "model.safetensors' is not a readable safetensors file",
    ),
    (
        "cf-resume-latest-truncated-safetensors",
        _cf_checkpoint("r/checkpoints/checkpoint-1", truncate=True),
        [*CF, "--out-dir", "{d}/r", "--resume-from-checkpoint", "latest"],
        2,
        "model.safetensors' is not a readable safetensors file",
    ),
    # ---------------------------------------------------------------- coinflip sweep / report
    (
        "cf-sweep-ms-negative",
        None,
        ["coinflip", "sweep", "--out-dir", "{d}/s", "--ms", "-5"],
        2,
        "`ms` must be >= 2; got -5",
    ),
    (
        "cf-sweep-config-base-unknown-key",
        _w("c.toml", "[base]\nlearning_rate = 0.1\n"),
        ["coinflip", "sweep", "--out-dir", "{d}/s", "--config", "{d}/c.toml"],
        2,
        "table [base] has unknown keys ['learning_rate']",
    ),
    (
        "cf-sweep-config-base-not-table",
        _w("c.json", '{"base": 3}'),
        ["coinflip", "sweep", "--out-dir", "{d}/s", "--config", "{d}/c.json"],
        2,
        "`base` must be a table",
    ),
    (
        "cf-report-metrics-latin1",
        _cf_sweep_run(
            {
                "result.json": _CF_RESULT,
                "metrics.csv": b"epoch,train_mse\n1,\xe9\n",
                "predictions.csv": "coins\n",
            }
        ),
        ["coinflip", "report", "--sweep-dir", "{d}/s"],
        2,
        "metrics.csv: not UTF-8 text",
    ),
    (
        "cf-report-result-garbage",
        _cf_sweep_run({"result.json": "{nope"}),
        ["coinflip", "report", "--sweep-dir", "{d}/s"],
        2,
        "result.json: invalid JSON at line 1",
    ),
    (
        "cf-sweep-objective",
        None,
        ["coinflip", "sweep", "--out-dir", "{d}/s", "--objectives", "mae"],
        2,
        "`objectives` must be one of",
    ),
    (
        "cf-sweep-ms-tiny",
        None,
        ["coinflip", "sweep", "--out-dir", "{d}/s", "--ms", "2"],
        2,
        "`m` must be large enough",
    ),
    ("cf-report-missing", None, ["coinflip", "report", "--sweep-dir", "{d}/nope"], 2, "nope"),
    (
        "cf-report-not-a-sweep",
        _w("s/manifest.json", '{"experiment": "qa", "fingerprint": {}}'),
        ["coinflip", "report", "--sweep-dir", "{d}/s"],
        2,
        "holds a 'qa' run, not 'coinflip-sweep'",
    ),
    # ---------------------------------------------------------------- t2i run / report
    (
        "t2i-afhq-no-data",
        None,
        [*T2I, "--preset", "afhq-sd15", "--out-dir", "{d}/r"],
        2,
        "`data` must be given",
    ),
    (
        "t2i-afhq-empty-classes",
        _empty_classes,
        [*T2I, "--preset", "afhq-sd15", "--data", "{d}/afhq", "--out-dir", "{d}/r"],
        2,
        "holds no image",
    ),
    (
        "t2i-afhq-missing-data",
        None,
        [*T2I, "--preset", "afhq-sd15", "--data", "{d}/nodata/", "--out-dir", "{d}/r"],
        2,
        "nodata",
    ),
    (
        "t2i-steps-zero",
        None,
        [*T2I, "--out-dir", "{d}/r", "--train-steps", "0"],
        2,
        "`train_steps` must be >= 1",
    ),
    (
        "t2i-guidance",
        None,
        [*T2I, "--out-dir", "{d}/r", "--guidance-scale", "0.5"],
        2,
        "`guidance_scale` must be in [1",
    ),
    (
        "t2i-resume-missing",
        None,
        [*T2I, "--out-dir", "{d}/r", "--resume-from-checkpoint", "{d}/nope"],
        2,
        "no such folder",
    ),
    (
        "t2i-outdir-is-file",
        _w("f", "x"),
        [*T2I, "--out-dir", "{d}/f"],
        2,
        "`out_dir` must be a folder",
    ),
    (
        "t2i-fp16-on-cpu",
        None,
        [*T2I, "--out-dir", "{d}/r", "--device", "cpu", "--mixed-precision", "fp16"],
        2,
        "'fp16' needs a GPU",
    ),
    (
        "t2i-prompts-repeat",
        None,
        [*T2I, "--out-dir", "{d}/r", "--prompts", "a", "a"],
        2,
        "`prompts` must not repeat",
    ),
    ("t2i-report-missing", None, ["t2i", "report", "--run-dir", "{d}/nope"], 2, "nope"),
    (
        "t2i-report-out-is-metrics",
        _w("r/metrics.csv", "step,prompt\n"),
        ["t2i", "report", "--run-dir", "{d}/r", "--out", "{d}/r/metrics.csv"],
        2,
        "`out` must",
    ),
    # ---------------------------------------------------------------- qa
    (
        "qa-data-missing",
        None,
        [
            "qa",
            "run",
            "--preset",
            "tiny",
            "--data",
            "{d}/nope.jsonl",
            "--truthfulqa",
            TQ,
            "--out-dir",
            "{d}/r",
        ],
        2,
        "nope.jsonl",
    ),
    (
        "qa-data-bad-line",
        _w("d.jsonl", '{"id": "a"\n'),
        [
            "qa",
            "run",
            "--preset",
            "tiny",
            "--data",
            "{d}/d.jsonl",
            "--truthfulqa",
            TQ,
            "--out-dir",
            "{d}/r",
        ],
        2,
        "d.jsonl",
    ),
    (
        "qa-data-not-utf8",
        _w("d.jsonl", b'{"id": "\xff"}\n'),
        ["qa", "validate", "--data", "{d}/d.jsonl"],
        2,
        "d.jsonl",
    ),
    (
        "qa-truthfulqa-missing",
        None,
        [
            "qa",
            "run",
            "--preset",
            "tiny",
            "--data",
            DATA,
            "--truthfulqa",
            "{d}/tq.csv",
            "--out-dir",
            "{d}/r",
        ],
        2,
        "tq.csv",
    ),
    (
        "qa-truthfulqa-bad-columns",
        _w("tq.csv", "a,b\n1,2\n"),
        [
            "qa",
            "run",
            "--preset",
            "tiny",
            "--data",
            DATA,
            "--truthfulqa",
            "{d}/tq.csv",
            "--out-dir",
            "{d}/r",
        ],
        2,
        "tq.csv",
    ),
    ("qa-epochs-zero", None, [*QA[:-1], "0", "--out-dir", "{d}/r"], 2, "`epochs` must be >= 1"),
    (
        "qa-top-p",
        None,
        [*QA, "--out-dir", "{d}/r", "--top-p", "1.5"],
        2,
        "`top_p` must be in (0, 1]",
    ),
    (
        "qa-resume-path",
        None,
        [*QA, "--out-dir", "{d}/r", "--resume-from-checkpoint", "{d}/ck"],
        2,
        "must be 'latest' for qa",
    ),
    (
        "qa-outdir-is-file",
        _w("f", "x"),
        [*QA, "--out-dir", "{d}/f"],
        2,
        "`out_dir` must be a folder",
    ),
    ("qa-outdir-read-only", _read_only("ro"), [*QA, "--out-dir", UNWRITABLE], 1, UNWRITABLE_WORDS),
    (
        "qa-table-metric",
        _w("r/scores.csv", "model\n"),
        ["qa", "table", "--run-dir", "{d}/r", "--metric", "nonsense"],
        2,
        "`metric` must be one of",
    ),
    ("qa-table-missing-dir", None, ["qa", "table", "--run-dir", "{d}/nope"], 2, "nope"),
    ("qa-score-missing", None, ["qa", "score", "--answers", "{d}/a.jsonl"], 2, "a.jsonl"),
    ("qa-baselines-missing", None, ["qa", "baselines", "--truthfulqa", "{d}/tq.csv"], 2, "tq.csv"),
    # ---------------------------------------------------------------- embed
    (
        "embed-image-bomb",
        _bomb_png("imgs/huge.png"),
        [
            "embed",
            "--no-progress",
            "--embedder",
            "@digits-cnn",
            "--images",
            "{d}/imgs",
            "--out",
            "{d}/e.npy",
        ],
        2,
        "huge.png: refusing to decode a possible decompression bomb",
    ),
    (
        "embed-device-cuda-without-gpu",
        _w("t.jsonl", '{"text": "a"}\n'),
        [
            "embed",
            "--no-progress",
            "--embedder",
            "@minilm",
            "--texts",
            "{d}/t.jsonl",
            "--out",
            "{d}/e.npy",
            "--device",
            "cuda",
        ],
        1,
        "`device` 'cuda' was asked for, but torch",
    ),
    (
        "embed-device-garbage",
        _w("t.jsonl", '{"text": "a"}\n'),
        [
            "embed",
            "--no-progress",
            "--embedder",
            "@minilm",
            "--texts",
            "{d}/t.jsonl",
            "--out",
            "{d}/e.npy",
            "--device",
            "gpu0",
        ],
        2,
        "`device` must be a torch device",
    ),
    # ---------------------------------------------------------------- main job
    (
        "report-existing-run-without-resume",
        _w("r/main_job.json", '{"seconds": {"theory": 3.0}}'),
        ["report", "--only", "theory", "--out-dir", "{d}/r", "--progress", "false"],
        2,
        "already holds a main-job run",
    ),
    (
        "report-existing-manifest-without-resume",
        _w("r/manifest.json", _MJ),
        ["report", "--only", "theory", "--out-dir", "{d}/r", "--progress", "false"],
        2,
        "--resume-from-checkpoint latest",
    ),
    (
        "report-resume-other-seed",
        _w("r/manifest.json", _MJ),
        [
            "report",
            "--only",
            "theory",
            "--out-dir",
            "{d}/r",
            "--resume-from-checkpoint",
            "latest",
            "--seed",
            "1",
        ],
        2,
        "seed: 0 -> 1",
    ),
    (
        "report-resume-other-experiment",
        _w("r/manifest.json", '{"experiment": "coinflip", "fingerprint": {"lr": 0.1}}'),
        ["report", "--only", "theory", "--out-dir", "{d}/r", "--resume-from-checkpoint", "latest"],
        2,
        "holds a 'coinflip' run, not 'main-job'",
    ),
    (
        "report-resume-manifest-without-fingerprint",
        _w("r/manifest.json", '{"config_type": "x.CoinFlipConfig", "seed": 0}'),
        ["report", "--only", "theory", "--out-dir", "{d}/r", "--resume-from-checkpoint", "latest"],
        2,
        "without a run fingerprint",
    ),
    (
        "report-resume-path",
        None,
        ["report", "--only", "theory", "--out-dir", "{d}/r", "--resume-from-checkpoint", "{d}/x"],
        2,
        "must be 'latest' for the main job",
    ),
    (
        "report-only-unknown",
        None,
        ["report", "--only", "nope", "--out-dir", "{d}/r"],
        2,
        "`only` must name steps",
    ),
    (
        "report-outdir-is-file",
        _w("f", "x"),
        ["report", "--only", "theory", "--out-dir", "{d}/f"],
        2,
        "f",
    ),
]


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize(
    ("setup", "argv", "code", "words"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS]
)
def test_bad_input_is_one_clear_line_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setup, argv, code, words
) -> None:  # noqa: ANN001
    if setup is not None:
        setup(tmp_path)
    before = _snapshot(tmp_path)
    rc = main([a.replace("{d}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("WARNING")]
    assert rc == code, err
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert words in lines[0], lines[0]
    assert _snapshot(tmp_path) == before


def test_table_has_at_least_fifty_rows() -> None:
    assert len(ROWS) >= 50 and len({r[0] for r in ROWS}) == len(ROWS)


# ---------------------------------------------------------------- faults that need a patch
def _enospc_safetensors(mp: pytest.MonkeyPatch) -> None:
    """safetensors' writer on a full disk (it raises SafetensorError with the OS error in its text)."""
    from safetensors import SafetensorError

    def full(*a: object, **k: object) -> None:
        raise SafetensorError(
            "Error while serializing: I/O error: No space left on device (os error 28)"
        )

    mp.setattr("safetensors.torch.save_file", full)


def _enospc_unet(mp: pytest.MonkeyPatch) -> None:
    """diffusers' ``save_pretrained`` of the tiny UNet on a full disk."""
    import errno

    def full(*a: object, **k: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    mp.setattr("diffusers.UNet2DConditionModel.save_pretrained", full)


def _bug(exc: BaseException) -> Callable[[pytest.MonkeyPatch], None]:
    """The coin-flip training loop raising ``exc`` from inside a library call, as a bug would."""

    def patch(mp: pytest.MonkeyPatch) -> None:
        import numpy as np

        def broken(config: object) -> None:
            if isinstance(exc, ValueError):
                np.asarray("not a number", dtype=float)  # numpy's own ValueError
            raise exc

        mp.setattr("deltahall.experiments.coinflip.train.run", broken)

    return patch


# (id, patch, argv, expected exit code, words the one line must contain)
PATCHED_ROWS: list[tuple[str, Callable[[pytest.MonkeyPatch], None], list[str], int, str]] = [
    (
        "cf-checkpoint-disk-full",
        _enospc_safetensors,
        [*CF, "--out-dir", "{d}/r"],
        1,
        "checkpoints/checkpoint-1/model.safetensors: No space left on device",
    ),
    (
        "t2i-tiny-model-disk-full",
        _enospc_unet,
        [*T2I, "--out-dir", "{d}/r", "--device", "cpu"],
        1,
        "base_model: No space left on device",
    ),
    (
        "internal-error-library-valueerror",
        _bug(ValueError()),
        [*CF, "--out-dir", "{d}/r"],
        1,
        "deltahall coinflip: internal error: ValueError: could not convert string to float",
    ),
    (
        "internal-error-keyerror",
        _bug(KeyError("epoch")),
        [*CF, "--out-dir", "{d}/r"],
        1,
        "internal error: KeyError: 'epoch' (rerun with -v for the traceback)",
    ),
]


@pytest.mark.parametrize(
    ("patch", "argv", "code", "words"),
    [r[1:] for r in PATCHED_ROWS],
    ids=[r[0] for r in PATCHED_ROWS],
)
def test_runtime_fault_is_one_clear_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    patch,
    argv,
    code,
    words,
) -> None:  # noqa: ANN001
    monkeypatch.setenv("DELTAHALL_CACHE", str(tmp_path / "cache"))
    (tmp_path / "keep.txt").write_text("x")
    before = _snapshot(tmp_path)
    patch(monkeypatch)
    rc = main([a.replace("{d}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("WARNING")]
    assert rc == code, err
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert words in lines[0], lines[0]
    after = _snapshot(tmp_path)
    assert {k: after.get(k) for k in before} == before  # what existed is untouched
    assert not [
        p for p in tmp_path.rglob("*") if p.name.startswith((".tmp-checkpoint", ".base_model"))
    ]
