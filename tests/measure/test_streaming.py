"""The streaming form equals the one-shot call: in one process, and gathered across two (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deltahall.measure.calibration import DetectorSettings, measure_embeddings
from deltahall.measure.streaming import StreamingMeasure, shard

from .conftest import blends, draw

S = DetectorSettings(normalize=False, seed=1)


def test_updates_in_any_batches_equal_the_one_shot_call() -> None:
    rng = np.random.default_rng(0)
    X, y = draw(rng, 300)
    G = np.vstack([draw(rng, 40)[0], blends(rng, 20)])
    prompts = ["p", "q", "r"] * 20
    one = measure_embeddings(X, y, G, prompts=prompts, settings=S)
    metric = StreamingMeasure(X, y, settings=S)
    for a, b in ((0, 7), (7, 31), (31, 60)):
        metric.update(G[a:b], prompts[a:b])
    m = metric.compute()
    np.testing.assert_array_equal(m.gen_p, one.gen_p)
    np.testing.assert_array_equal(m.gen_flagged, one.gen_flagged)
    assert m.rate == one.rate and m.floor == one.floor and m.excess_p_value == one.excess_p_value
    assert m.per_prompt == one.per_prompt and m.states_not_reached == one.states_not_reached
    # shuffled updates with explicit indices restore the order
    metric.reset()
    order = rng.permutation(60)
    for chunk in np.array_split(order, 4):
        metric.update(G[chunk], [prompts[i] for i in chunk], index=chunk)
    np.testing.assert_array_equal(metric.compute().gen_p, one.gen_p)


def test_refusals() -> None:
    rng = np.random.default_rng(1)
    X, y = draw(rng, 300)
    metric = StreamingMeasure(X, y, settings=S)
    with pytest.raises(ValueError, match="call update"):
        metric.compute()
    with pytest.raises(ValueError, match=r"shape \(n, 4\)"):
        metric.update(np.zeros((2, 3)))
    metric.update(X[:2], index=[0, 1]).update(X[2:4], index=[1, 2])
    with pytest.raises(ValueError, match="same sample index"):
        metric.compute()
    assert shard(list(range(5)), 0, 2) == ([0, 2, 4], [0, 2, 4])


def test_two_processes_gather_to_the_one_shot_measurement(tmp_path: Path) -> None:
    from tests.experiments.conftest import free_port  # noqa: PLC0415

    worker = Path(__file__).with_name("streaming_worker.py")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("WORLD_SIZE", None)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
        str(worker),
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["world"] == 2
    for r in (r0, r1):
        assert r["p"] == r0["one_shot"]["p"] and r["flagged"] == r0["one_shot"]["flagged"]
        assert (
            r["rate"] == r0["one_shot"]["rate"] and r["per_prompt"] == r0["one_shot"]["per_prompt"]
        )
