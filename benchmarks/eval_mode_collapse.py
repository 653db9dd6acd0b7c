"""How often the excess test calls a mode-collapsed generator hallucinating (it hallucinates nothing).

Usage (needs the digits-cnn embeddings cached by ``benchmarks/eval_measure.py``)::

    python benchmarks/eval_measure.py --datasets digits-cnn --reps 1
    python benchmarks/eval_mode_collapse.py --reps 60

Each repetition holds a fifth of every state's real digits out of the reference; the "generator"
is one random state's held-out digits. Prints the share of repetitions in which the instrument's
excess test (``excess_p_value``: mixture-matched, posterior predictive) and the pooled Fisher test
reject at 5 %, with Wilson intervals.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=Path("runs/eval_cache"))
    ap.add_argument("--reps", type=int, default=60)
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    from deltahall.measure.calibration import DetectorSettings, measure_embeddings

    with np.load(args.cache / "digits-cnn.npz", allow_pickle=False) as z:
        E, y = z["E"], z["y"]
    rng = np.random.default_rng(0)
    strat, pooled = [], []
    for r in range(args.reps):
        ev = np.zeros(len(y), bool)
        for c in np.unique(y):
            idx = rng.permutation(np.flatnonzero(y == c))
            ev[idx[: idx.size // 5]] = True
        st = rng.integers(0, 10)
        m = measure_embeddings(E[~ev], y[~ev], E[ev & (y == st)], settings=DetectorSettings(seed=r))
        strat.append(m.excess_p_value < 0.05)
        pooled.append(m.excess_p_value_pooled < 0.05)
    from deltahall.stats import proportion

    for name, v in (("excess_p_value (mixture-matched)", strat), ("pooled Fisher", pooled)):
        est = proportion(int(np.sum(v)), len(v))
        print(
            f"reps {args.reps}: {name} rejects at 5% in {est.k}/{est.n} = {est.rate:.3f} "
            f"[{est.ci[0]:.3f}, {est.ci[1]:.3f}]"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
