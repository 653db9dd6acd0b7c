"""``deltahall hcdr``: fit, score and inspect the HCDR detector on your own embeddings.

Defaults come from :class:`deltahall.detectors.HCDRDetector` itself (one place).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt


def _load_npy(path: str, what: str, ndim: int) -> npt.NDArray[Any]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{what} file not found: {path!r}.")
    try:
        arr = np.load(p, allow_pickle=False)
    except ValueError as exc:
        raise ValueError(f"cannot load {what} {path!r} without pickle ({exc}); save a plain numeric .npy.") from None
    if isinstance(arr, np.lib.npyio.NpzFile):
        raise ValueError(f"{what} {path!r} is an .npz archive; pass a single .npy array.")
    if arr.ndim != ndim:
        shape = "(n_samples, n_features)" if ndim == 2 else "(n_samples,)"
        raise ValueError(f"{what} {path!r} must have shape {shape}; got shape {arr.shape}.")
    return arr


def _pca_dim(s: str) -> int | None:
    if s.lower() in ("none", "0"):
        return None
    try:
        return int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--pca-dim must be an integer or 'none'; got {s!r}.") from None


def _percentiles(s: str) -> npt.NDArray[np.float64]:
    try:
        if ":" in s:
            lo, hi, step = (float(v) for v in s.split(":"))
            return np.arange(lo, hi + step / 2, step)
        return np.array([float(v) for v in s.split(",")])
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--percentiles must be 'start:stop:step' or a comma list; got {s!r}."
        ) from None


def register(sub: argparse._SubParsersAction, name: str, summary: str) -> None:
    from deltahall.detectors import HCDRDetector

    d = HCDRDetector().get_params()
    p = sub.add_parser(
        name,
        help=summary,
        description=(
            "The HCDR detector of Section 7.3: per-state Gaussian-mixture highest-density regions "
            "on L2-normalised, PCA-reduced, z-scored embeddings; an embedding outside every "
            "state's region is a δ-hallucination (Definition 4.2, Remark 6.1)."
        ),
    )
    hs = p.add_subparsers(dest="hcdr_command", metavar="ACTION")

    f = hs.add_parser("fit", help="fit a detector on labelled real embeddings and save it")
    f.add_argument("--embeddings", required=True, help=".npy float array (n_samples, n_features)")
    f.add_argument("--labels", required=True, help=".npy array (n_samples,) of state labels (int or str)")
    f.add_argument("--out", required=True, help="output detector file (.safetensors)")
    f.add_argument("--pca-dim", type=_pca_dim, default=d["pca_dim"], help=f"PCA dimension or 'none' (default {d['pca_dim']})")
    f.add_argument("--n-components", type=int, default=d["n_components"], help="mixture components per state")
    f.add_argument("--covariance-type", default=d["covariance_type"], choices=["full", "diag", "tied", "spherical"])
    f.add_argument("--percentile", type=float, default=d["percentile"], help="threshold percentile of held-out log-densities")
    f.add_argument("--holdout-fraction", type=float, default=d["holdout_fraction"])
    f.add_argument("--min-holdout", type=int, default=d["min_holdout"])
    f.add_argument("--reg-covar", type=float, default=d["reg_covar"])
    f.add_argument("--no-normalize", action="store_true", help="skip the L2-normalisation")
    f.add_argument("--seed", type=int, default=0, help="random_state of the split and mixtures")
    f.add_argument("--json", action="store_true", help="print machine-readable JSON")
    f.set_defaults(handler=_fit)

    s = hs.add_parser("score", help="score embeddings with a saved detector")
    s.add_argument("--detector", required=True, help="detector file written by 'hcdr fit'")
    s.add_argument("--embeddings", required=True, help=".npy float array (n_samples, n_features)")
    s.add_argument("--out", help="CSV with one row per embedding (inside, decision, per-state log-densities)")
    s.add_argument("--json", action="store_true", help="print machine-readable JSON")
    s.set_defaults(handler=_score)

    c = hs.add_parser("curve", help="hallucination rate as a function of the threshold percentile")
    c.add_argument("--detector", required=True)
    c.add_argument("--embeddings", required=True)
    c.add_argument("--percentiles", type=_percentiles, default=_percentiles("0:50:1"),
                   help="'start:stop:step' or comma list (default 0:50:1)")
    c.add_argument("--out", help="CSV of percentile, nominal mass, rate")
    c.add_argument("--png", help="also plot the curve to this PNG")
    c.add_argument("--json", action="store_true")
    c.set_defaults(handler=_curve)
    p.set_defaults(handler=lambda args: (p.print_help(), 2)[1])


def _fit(args: argparse.Namespace) -> int:
    from deltahall.detectors import HCDRDetector
    from deltahall.detectors.diagnostics import coverage_report

    X = _load_npy(args.embeddings, "embeddings", 2)
    y = _load_npy(args.labels, "labels", 1)
    det = HCDRDetector(
        pca_dim=args.pca_dim, n_components=args.n_components, covariance_type=args.covariance_type,
        percentile=args.percentile, holdout_fraction=args.holdout_fraction, normalize=not args.no_normalize,
        min_holdout=args.min_holdout, reg_covar=args.reg_covar, random_state=args.seed,
    ).fit(X, y)
    det.save(args.out)
    rows = coverage_report(det).rows()
    for r, t in zip(rows, det.thresholds_, strict=True):
        r["threshold"] = float(t)
    if args.json:
        print(json.dumps({"detector": args.out, "states": rows}, default=str))
        return 0
    print(f"fitted on {X.shape[0]} x {X.shape[1]} embeddings, {len(rows)} states; saved {args.out}")
    print(f"{'state':>12} {'threshold':>12} {'n_holdout':>9} {'coverage':>9} {'nominal':>8}")
    for r in rows:
        print(f"{r['state']!s:>12} {r['threshold']:>12.4f} {r['n_holdout']:>9d} "
              f"{r['holdout_coverage']:>9.3f} {r['nominal_mass']:>8.3f}")
    return 0


def _score(args: argparse.Namespace) -> int:
    from deltahall.detectors import HCDRDetector
    from deltahall.io import atomic_write_text

    det = HCDRDetector.load(args.detector)
    X = _load_npy(args.embeddings, "embeddings", 2)
    scores = det.score_samples(X)
    dec = (scores - det.thresholds_).max(axis=1)
    inside = dec >= 0
    rate = float(1.0 - inside.mean()) if inside.size else float("nan")
    states = [str(c) for c in det.classes_]
    if args.out:
        lines = [",".join(["row", "inside", "decision", *[f"log_density_{s}" for s in states]])]
        for i in range(X.shape[0]):
            lines.append(",".join([str(i), str(int(inside[i])), repr(float(dec[i])),
                                   *[repr(float(v)) for v in scores[i]]]))
        atomic_write_text(args.out, "\n".join(lines) + "\n")
    if args.json:
        out = {"n": int(X.shape[0]), "hallucination_rate": rate, "states": states,
               "thresholds": det.thresholds_.tolist()}
        if not args.out:
            out["inside"] = inside.astype(int).tolist()
            out["log_densities"] = scores.tolist()
        print(json.dumps(out))
        return 0
    print(f"{X.shape[0]} embeddings; hallucination rate (outside the HCDR): {rate:.4f}")
    if args.out:
        print(f"per-row scores: {args.out}")
    return 0


def _curve(args: argparse.Namespace) -> int:
    from deltahall.detectors import HCDRDetector
    from deltahall.detectors.diagnostics import rate_curve
    from deltahall.io import atomic_write_text

    det = HCDRDetector.load(args.detector)
    X = _load_npy(args.embeddings, "embeddings", 2)
    curve = rate_curve(det, X, args.percentiles)
    rows = curve.rows()
    if args.out:
        atomic_write_text(args.out, "percentile,nominal_mass,rate\n" + "".join(
            f"{r['percentile']:g},{r['nominal_mass']:g},{r['rate']!r}\n" for r in rows))
    if args.png:
        from deltahall.plotting import pyplot

        plt = pyplot()
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot(curve.percentiles, curve.rates, marker=".")
        ax.axvline(det.percentile, ls="--", c="gray", label=f"fitted percentile {det.percentile:g}")
        ax.set_xlabel("threshold percentile p (region mass 1 - p/100)")
        ax.set_ylabel("hallucination rate")
        ax.legend()
        fig.tight_layout()
        Path(args.png).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.png, dpi=120)
        plt.close(fig)
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"{'percentile':>10} {'mass':>6} {'rate':>8}")
    for r in rows:
        print(f"{r['percentile']:>10g} {r['nominal_mass']:>6.2f} {r['rate']:>8.4f}")
    sys.stdout.flush()
    return 0
