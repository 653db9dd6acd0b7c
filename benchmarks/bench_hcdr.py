"""Throughput of HCDRDetector scoring vs scikit-learn (embeddings per second).

Two states, 128-d embeddings; each state's model fixed at 6 diagonal components on ``pca_dim``
50 and on every principal coordinate (``None``, 64 at most), and the default ``"auto"`` choice.
Run with ``OPENBLAS_NUM_THREADS=2 taskset -c 0,1`` to pin to 2 cores:

    python benchmarks/bench_hcdr.py --n 1000000 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from sklearn.mixture import GaussianMixture

from deltahall.detectors import HCDRDetector


def _best(fn, repeat):
    """Best wall time and the process CPU time of that run (all threads)."""
    best, cpu = float("inf"), float("nan")
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        t, c = time.perf_counter() - t0, time.process_time() - c0
        if t < best:
            best, cpu = t, c
    return best, cpu


def _sklearn_reference(det, X):
    """Same log-densities with sklearn's GaussianMixture.score_samples on each state's coordinates."""
    dens = det.densities_
    C = dens.transform(X)
    cols = []
    for m in dens.models_:
        g = GaussianMixture(m.gmm.n_components, covariance_type=m.gmm.covariance_type)
        g.weights_, g.means_, g.precisions_cholesky_ = (
            m.gmm.weights,
            m.gmm.means,
            m.gmm.precisions_cholesky,
        )
        g.n_features_in_ = m.gmm.n_features
        cols.append(g.score_samples(C[:, : m.k]))
    return np.stack(cols, axis=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="embeddings to score")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sklearn-n", type=int, default=200_000, help="rows for the sklearn reference")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    train = np.vstack([rng.normal(-0.5, 1, (3000, a.dim)), rng.normal(0.5, 1, (3000, a.dim))])
    y = np.repeat([0, 1], 3000)
    X64 = rng.normal(size=(a.n, a.dim))
    X32 = X64.astype(np.float32)
    rows = []
    for pca_dim, comps, cov in ((50, 6, "diag"), (None, 6, "diag"), ("auto", "auto", "auto")):
        det = HCDRDetector(pca_dim=pca_dim, n_components=comps, covariance_type=cov, random_state=0)
        det.fit(train, y)
        for name, X in (("float64", X64), ("float32", X32)):
            t, c = _best(lambda X=X, det=det: det.predict(X), a.repeat)
            rows.append(
                {
                    "pca_dim": pca_dim,
                    "dtype": name,
                    "impl": "deltahall predict",
                    "n": a.n,
                    "seconds": t,
                    "cpu_seconds": c,
                    "per_second": a.n / t,
                }
            )
        Xs = X64[: a.sklearn_n]
        t, c = _best(lambda Xs=Xs, det=det: _sklearn_reference(det, Xs), 1)
        rows.append(
            {
                "pca_dim": pca_dim,
                "dtype": "float64",
                "impl": "sklearn score_samples",
                "n": len(Xs),
                "seconds": t,
                "cpu_seconds": c,
                "per_second": len(Xs) / t,
            }
        )
        err = np.abs(
            _sklearn_reference(det, X64[:10000]) - det.state_log_densities(X64[:10000])
        ).max()
        rows[-1]["max_abs_diff_vs_deltahall"] = float(err)
    if a.json:
        print(json.dumps(rows, indent=1))
        return
    print(
        f"load average (1 min) {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; "
        "wall times are noisy on a shared machine"
    )
    print(
        f"{'pca_dim':>7} {'dtype':>7} {'implementation':<22} {'rows':>9} {'wall s':>8} {'cpu s':>7} "
        f"{'rows/s (wall)':>14}"
    )
    for r in rows:
        print(
            f"{r['pca_dim']!s:>7} {r['dtype']:>7} {r['impl']:<22} {r['n']:>9} {r['seconds']:>8.3f} "
            f"{r['cpu_seconds']:>7.2f} {r['per_second']:>14,.0f}"
        )
    for r in rows:
        if "max_abs_diff_vs_deltahall" in r:
            print(
                f"pca_dim={r['pca_dim']}: max |deltahall - sklearn| log-density on 10k rows = "
                f"{r['max_abs_diff_vs_deltahall']:.2e}"
            )


if __name__ == "__main__":
    main()
