"""Coin-flip benchmarks (issue 3): validation speed and seconds per training epoch.

1. Validation of 4000 samples at N = 5: ours (one forward pass over the distinct coin sets, every
   metric of :func:`epoch_metrics`) against a per-sample batch-1 loop like the authors' (one
   forward pass and one pmf per sample, ``ceil`` estimate). Goal: >= 50x faster, < 50 ms.
2. Seconds per training epoch at N = 5, M = 20000 (16000 training samples), the default
   (grouped, no dropout) and the per-sample path (dropout 0.1).

Run: ``python benchmarks/bench_coinflip.py [--threads 1] [--json]``. The machine is shared:
timings are noisy; the load average is printed beside them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time


def authors_like_validation(model, labels, y, probs) -> float:
    """Batch-1 loop: forward, ceil, per-sample DP pmf, lookup (guarded here, unlike theirs)."""
    import torch

    total = 0.0
    with torch.no_grad():
        for i in range(labels.shape[0]):
            out = float(model(torch.from_numpy(labels[i : i + 1]))[0])
            est = math.ceil(out)
            dp = [1.0] + [0.0] * labels.shape[1]
            for c in labels[i]:
                p = probs[c]
                dp = [dp[k] * (1 - p) + (dp[k - 1] * p if k else 0.0) for k in range(len(dp))]
            total += dp[est] if 0 <= est < len(dp) else 0.0
            _ = (out - y[i]) ** 2
    return total / labels.shape[0]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--repeats", type=int, default=20, help="repeats of our validation (median reported)"
    )
    ap.add_argument("--epochs", type=int, default=1, help="training epochs timed per path")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import numpy as np
    import torch

    from deltahall.experiments._run import RunOptions
    from deltahall.experiments.coinflip.config import CoinFlipConfig
    from deltahall.experiments.coinflip.data import derive_seeds, make_dataset
    from deltahall.experiments.coinflip.evaluate import epoch_metrics, predict_sets
    from deltahall.experiments.coinflip.model import build_model
    from deltahall.experiments.coinflip.train import run
    from deltahall.experiments.coinflip.truth import head_probabilities

    torch.set_num_threads(args.threads)
    out: dict[str, float | str] = {
        "threads": args.threads,
        "load_avg_1min_before": os.getloadavg()[0],
    }
    cfg = CoinFlipConfig(n=5, m=20000)
    data = make_dataset(cfg, derive_seeds(0)[0])
    model = build_model(cfg, 0).eval()
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        epoch_metrics(predict_sets(model, data.sets, cfg), data, cfg)
        times.append(time.perf_counter() - t0)
    ours = float(np.median(times))
    t0 = time.perf_counter()
    authors_like_validation(model, data.val_labels, data.val_y, head_probabilities(5))
    loop = time.perf_counter() - t0
    out.update(
        val_samples=len(data.val_y),
        distinct_sets=len(data.sets),
        ours_val_s=ours,
        batch1_loop_val_s=loop,
        speedup=loop / ours,
    )
    opts = RunOptions(threads=args.threads, progress=False)
    for name, c in (
        ("grouped_no_dropout", CoinFlipConfig(n=5, m=20000, epochs=args.epochs, run=opts)),
        (
            "per_sample_dropout0.1",
            CoinFlipConfig(n=5, m=20000, epochs=args.epochs, dropout=0.1, run=opts),
        ),
    ):
        res = run(c)
        out[f"epoch_s_{name}"] = float(np.mean(res.epoch_seconds))
    out["load_avg_1min_after"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for k, v in out.items():
            print(f"{k:32s} {v:.4g}" if isinstance(v, float) else f"{k:32s} {v}")
        print(
            f"goal: >= 50x and < 50 ms -> {'met' if out['speedup'] >= 50 and ours < 0.05 else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
