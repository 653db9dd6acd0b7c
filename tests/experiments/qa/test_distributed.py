"""Two CPU processes (gloo): the tiny QA preset under ``accelerate launch``, and the data split.

A 2-process fine-tuning cannot equal the 1-process one exactly: each process averages the loss
over its own answer tokens and DDP then averages the two means, while one process averages over
all tokens of the global batch. What holds, and is checked: every global batch is split into
disjoint shards that together cover it; the run completes with world size 2 recorded, and only
the main process writes (answers, scores, manifest).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deltahall.experiments.qa.finetune import shard

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("n", [1, 7, 8, 16])
def test_shards_are_disjoint_and_cover_the_global_batch(n: int) -> None:
    chunk = list(range(100, 100 + n))
    parts = [shard(chunk, r, 2) for r in (0, 1)]
    if n >= 2:
        assert not set(parts[0]) & set(parts[1])
        assert sorted(parts[0] + parts[1]) == chunk
    else:  # a lone example: the idle rank repeats it so that both processes step
        assert parts == [chunk, chunk]


def test_tiny_preset_under_accelerate_launch_with_two_processes(
    tmp_path: Path, launch2, launch1
) -> None:  # noqa: ANN001
    args = [
        "qa",
        "run",
        "--preset",
        "tiny",
        "--data",
        str(FIXTURES / "open_qa_small.jsonl"),
        "--truthfulqa",
        str(FIXTURES / "truthfulqa_small.csv"),
        "--epochs",
        "1",
        "--batch-size",
        "2",
        "--max-new-tokens",
        "6",
        "--max-length",
        "48",
        "--json",
    ]
    proc, secs2 = launch2("accelerate", [*args, "--out-dir", str(tmp_path / "two")], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    m = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert m["world_size"] == 2 and m["num_processes"] == 2
    scores = json.loads(proc.stdout)  # printed once, by the main process
    assert [r["epoch"] for r in scores] == [0, 1]
    losses = (
        (tmp_path / "two" / "train" / "tiny" / "seed-0" / "loss_epochs.csv")
        .read_text()
        .splitlines()
    )
    assert len(losses) == 2
    proc1, secs1 = launch1(
        [*args, "--batch-size", "4", "--out-dir", str(tmp_path / "one")], cwd=tmp_path
    )
    assert proc1.returncode == 0, proc1.stderr[-3000:]
    print(f"qa tiny, 1 epoch: 2 processes {secs2:.1f} s, 1 process {secs1:.1f} s")
