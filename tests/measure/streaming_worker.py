"""Run by tests/measure/test_streaming.py under ``torchrun --nproc_per_node 2`` (gloo, CPU).

Each process updates the streaming measure with its shard of the generated set and writes the
gathered measurement's p-values and flags; rank 0 also writes the one-shot call's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def main(out: str) -> None:
    import torch.distributed as dist

    from deltahall.measure.calibration import DetectorSettings, measure_embeddings
    from deltahall.measure.streaming import StreamingMeasure, shard

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    rng = np.random.default_rng(0)
    means = np.array([[6.0, 0, 0, 0], [0, 6.0, 0, 0], [0, 0, 6.0, 0]])
    y = np.repeat(np.arange(3), 80)
    X = means[y] + rng.normal(size=(y.size, 4))
    G = np.vstack(
        [means[rng.integers(0, 3, 30)] + rng.normal(size=(30, 4)), rng.normal(size=(21, 4)) + 2.0]
    )
    prompts = ["a", "b", "c"] * 17
    s = DetectorSettings(normalize=False, seed=3)
    metric = StreamingMeasure(X, y, settings=s)
    idx, rows = shard(list(range(G.shape[0])))
    for start in range(0, len(idx), 7):  # several updates per process
        part = idx[start : start + 7]
        metric.update(G[part], [prompts[i] for i in part], index=part)
    m = metric.compute()
    rec = {
        "p": m.gen_p.tolist(),
        "flagged": m.gen_flagged.tolist(),
        "rate": m.rate.rate,
        "per_prompt": m.per_prompt,
        "world": dist.get_world_size(),
    }
    if rank == 0:
        one = measure_embeddings(X, y, G, prompts=prompts, settings=s)
        rec["one_shot"] = {
            "p": one.gen_p.tolist(),
            "flagged": one.gen_flagged.tolist(),
            "rate": one.rate.rate,
            "per_prompt": one.per_prompt,
        }
    Path(out, f"rank{rank}.json").write_text(json.dumps(rec), encoding="utf-8")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
