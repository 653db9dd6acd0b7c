"""Two CPU processes (gloo): the digits preset under torchrun, and what 2 processes share.

A 2-process run cannot equal a 1-process run bit for bit: every process draws the noise of its
own half of the global batch (seeded by rank), and DDP averages the two halves' gradients in
another floating-point order. What does hold, and is checked: the two ranks' micro-batches are
disjoint slices of exactly the global batch a 1-process run with the same global batch draws;
the run completes with world size 2 recorded; only the main process writes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from deltahall.experiments.t2i.train import StepBatches

ARGS = [
    "t2i",
    "run",
    "--preset",
    "digits",
    "--train-steps",
    "2",
    "--checkpoint-every",
    "2",
    "--num-samples",
    "4",
    "--sample-batch-size",
    "4",
    "--inference-steps",
    "2",
    "--progress",
    "false",
    "--device",
    "cpu",
    "--train-batch-size",
    "8",
    "--prompts",
    "a handwritten digit one",
    "--json",
]


def _cfg(**kw):  # noqa: ANN003, ANN202
    from deltahall.experiments._run import RunOptions
    from deltahall.experiments.t2i import T2IConfig

    return T2IConfig(run=RunOptions(out_dir=Path("unused")), **kw)


def test_two_ranks_see_disjoint_halves_of_the_one_process_global_batch() -> None:
    one = list(
        StepBatches(
            100, _cfg(train_batch_size=8, train_steps=5, checkpoint_every=5), 0, 5, world=1, rank=0
        )
    )
    two = [
        list(
            StepBatches(
                100,
                _cfg(train_batch_size=4, train_steps=5, checkpoint_every=5),
                0,
                5,
                world=2,
                rank=r,
            )
        )
        for r in (0, 1)
    ]
    for step, batch in enumerate(one):
        halves = [two[0][step], two[1][step]]
        assert len(halves[0]) == len(halves[1]) == 4
        assert halves[0] + halves[1] == batch  # same draws, split in two contiguous slices
        positions0, positions1 = set(range(0, 4)), set(range(4, 8))
        assert not positions0 & positions1  # each draw of the global batch goes to exactly one rank
        assert np.array_equal(
            np.array([i for i, _ in batch]), np.array([i for i, _ in halves[0] + halves[1]])
        )


def test_digits_preset_under_torchrun_with_two_processes(
    tmp_path: Path, digits_embedder_dir: Path, launch2, launch1
) -> None:  # noqa: ANN001
    out2, out1 = tmp_path / "two", tmp_path / "one"
    for out in (out2, out1):
        shutil.copytree(digits_embedder_dir, out / "embedder")
    two = [
        *ARGS[: ARGS.index("--train-batch-size") + 1],
        "4",
        *ARGS[ARGS.index("--train-batch-size") + 2 :],
    ]
    proc, secs2 = launch2("torchrun", [*two, "--out-dir", str(out2)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    manifest = json.loads((out2 / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and manifest["num_processes"] == 2
    rows = json.loads(proc.stdout)  # only the main process prints the rows
    assert sorted({r["step"] for r in rows}) == [0, 2] and all(r["K"] == 4 for r in rows)
    assert (out2 / "checkpoint-2" / "model.safetensors").is_file()
    assert not list(out2.glob(".*tmp*"))  # no temporaries left behind
    # the same command with one process (global batch 8 = 2 x 4 per process)
    proc1, secs1 = launch1([*ARGS, "--out-dir", str(out1)], cwd=tmp_path)
    assert proc1.returncode == 0, proc1.stderr[-3000:]
    assert json.loads((out1 / "manifest.json").read_text())["world_size"] == 1
    print(f"t2i digits, 2 steps: 2 processes {secs2:.1f} s, 1 process {secs1:.1f} s")
