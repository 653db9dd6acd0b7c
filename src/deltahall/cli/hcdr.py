"""``deltahall hcdr``: fit, score and inspect the HCDR detector on your own embeddings.

Defaults come from :class:`deltahall.detectors.HCDRDetector` itself (one place).
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

_NPY_MAGIC = b"\x93NUMPY"
_MAX_PERCENTILES = 10_001


def _not_npy_kind(head: bytes) -> str:
    """What a file that lacks the .npy magic looks like, for the error message."""
    if head.startswith(b"PK"):
        return "it is a zip archive (.npz or torch.save?)"
    if head[:1] == b"\x80":
        return "it is a Python pickle"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"it starts with {head[:8]!r}"
    return f"it looks like text ({text[:24]!r}...; a CSV?)"


def _load_npy(path: str, what: str, ndim: int) -> npt.NDArray[Any]:
    """Load one plain ``.npy`` array; every failure is one line naming ``what`` and the file."""
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{what} {path!r} is a directory, not a .npy file.")
    if not p.is_file():
        raise FileNotFoundError(f"{what} file not found: {path!r}.")
    with p.open("rb") as fh:  # an unreadable file raises an OSError naming it (exit 1)
        head = fh.read(64)
    if not head:
        raise ValueError(f"{what} {path!r} is empty (0 bytes), not a .npy file.")
    if not head.startswith(_NPY_MAGIC):
        raise ValueError(
            f"{what} {path!r} is not a .npy file: {_not_npy_kind(head)}; a .npy file starts with "
            "\\x93NUMPY (write it with numpy.save)."
        )
    try:
        arr = np.load(p, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "pickled" in str(exc):
            raise ValueError(
                f"{what} {path!r} holds Python objects (an object array), which deltahall never "
                "unpickles; save a plain numeric array (labels may be str or int)."
            ) from None
        raise ValueError(f"{what} {path!r} is a truncated or corrupt .npy file ({exc}).") from None
    except (EOFError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise
        raise ValueError(
            f"{what} {path!r} is a truncated or corrupt .npy file ({exc or type(exc).__name__})."
        ) from None
    if arr.ndim != ndim:
        shape = "(n_samples, n_features)" if ndim == 2 else "(n_samples,)"
        raise ValueError(f"{what} {path!r} must have shape {shape}; got shape {arr.shape}.")
    if arr.shape[0] == 0:
        raise ValueError(f"{what} {path!r} has no rows (shape {arr.shape}).")
    return arr


def _pca_dim(s: str) -> int | str | None:
    if s.lower() in ("none", "0"):
        return None
    if s.lower() == "auto":
        return "auto"
    try:
        return int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--pca-dim must be 'auto', an integer or 'none'; got {s!r}."
        ) from None


def _auto_int(s: str) -> int | str:
    if s.lower() == "auto":
        return "auto"
    try:
        return int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--n-components must be 'auto' or an integer; got {s!r}."
        ) from None


def parse_percentiles(s: str) -> npt.NDArray[np.float64]:
    """``"start:stop:step"`` (stop included when reached) or ``"p1,p2,..."``, values in [0, 100].

    Raises
    ------
    ValueError
        Naming ``--percentiles``, the rule and the value: a step <= 0, start > stop, a value
        outside [0, 100] or not finite, or more than 10001 percentiles.
    """
    rule = f"`--percentiles` must be 'start:stop:step' or a comma list of numbers in [0, 100]; got {s!r}"

    def num(v: str) -> float:
        try:
            return float(v)
        except ValueError:
            raise ValueError(f"{rule}.") from None

    if ":" in s:
        parts = s.split(":")
        if len(parts) != 3:
            raise ValueError(f"{rule}.")
        lo, hi, step = (num(v) for v in parts)
        if not all(np.isfinite([lo, hi, step])):
            raise ValueError(f"{rule} (values must be finite).")
        if step <= 0:
            raise ValueError(f"{rule} (step must be > 0).")
        if hi < lo:
            raise ValueError(f"{rule} (start must be <= stop).")
        n = math.floor((hi - lo) / step + 1e-9) + 1
        if n > _MAX_PERCENTILES:
            raise ValueError(f"{rule} ({n} values; at most {_MAX_PERCENTILES}).")
        p = np.asarray(lo + step * np.arange(n), dtype=np.float64)
    else:
        p = np.array([num(v) for v in s.split(",")])
    if p.size > _MAX_PERCENTILES:
        raise ValueError(f"{rule} ({p.size} values; at most {_MAX_PERCENTILES}).")
    if not np.isfinite(p).all() or (p < 0).any() or (p > 100).any():
        raise ValueError(f"{rule} (values must be finite and in [0, 100]).")
    return p


def _outputs(
    args: argparse.Namespace, outs: list[tuple[str, str | None]], inputs: list[tuple[str, str]]
) -> None:
    """Refuse every output that is an input, inside one, a folder, or another output."""
    from deltahall._validation import check_output_path

    given = [(name, path) for name, path in outs if path]
    for name, path in given:
        check_output_path(path, name, inputs=inputs)
    for i, (name, path) in enumerate(given):
        for other, opath in given[i + 1 :]:
            if os.path.realpath(path) == os.path.realpath(opath):
                raise ValueError(f"`{other}` must differ from `{name}`; both are {path!r}.")


def _print_json(obj: Any) -> None:
    from deltahall.io.rundir import dumps_json

    sys.stdout.write(dumps_json(obj, indent=None))


def register(sub: argparse._SubParsersAction, name: str, summary: str) -> None:
    from deltahall.detectors import HCDRDetector

    d = HCDRDetector().get_params()
    p = sub.add_parser(
        name,
        help=summary,
        description=(
            "The HCDR detector of Section 7.3: per-state densities (each state's model chosen by "
            "held-out likelihood) on L2-normalised, PCA-rotated embeddings, calibrated on a part of "
            "each state kept apart (split-conformal p-values, or the paper's percentile rule); an "
            "embedding outside every state's region is a δ-hallucination (Definition 4.2, Remark 6.1)."
        ),
    )
    hs = p.add_subparsers(dest="hcdr_command", metavar="ACTION")

    f = hs.add_parser("fit", help="fit a detector on labelled real embeddings and save it")
    f.add_argument("--embeddings", required=True, help=".npy float array (n_samples, n_features)")
    f.add_argument(
        "--labels", required=True, help=".npy array (n_samples,) of state labels (int or str)"
    )
    f.add_argument("--out", required=True, help="output detector file (.safetensors)")
    f.add_argument(
        "--calibration",
        default=d["calibration"],
        choices=["conformal", "percentile"],
        help=f"conformal p-values, or the paper's percentile rule (default {d['calibration']})",
    )
    f.add_argument(
        "--alpha",
        type=float,
        default=d["alpha"],
        help=f"level: a fresh real sample is flagged with probability <= alpha; the percentile "
        f"rule's threshold percentile is 100 alpha (default {d['alpha']:g})",
    )
    f.add_argument(
        "--calibration-fraction",
        type=float,
        default=d["calibration_fraction"],
        help=f"share of each state kept apart to calibrate (default {d['calibration_fraction']:g})",
    )
    f.add_argument(
        "--pca-dim",
        type=_pca_dim,
        default=d["pca_dim"],
        help=f"principal coordinates per state: 'auto', an integer or 'none' (default {d['pca_dim']})",
    )
    f.add_argument(
        "--n-components",
        type=_auto_int,
        default=d["n_components"],
        help=f"mixture components per state, 'auto' or an integer (default {d['n_components']})",
    )
    f.add_argument(
        "--covariance-type",
        default=d["covariance_type"],
        choices=["auto", "full", "diag", "tied", "spherical"],
    )
    f.add_argument("--reg-covar", type=float, default=d["reg_covar"])
    f.add_argument("--no-normalize", action="store_true", help="skip the L2-normalisation")
    f.add_argument("--seed", type=int, default=0, help="random_state of the split and mixtures")
    f.add_argument("--json", action="store_true", help="print machine-readable JSON")
    f.set_defaults(handler=_fit)

    s = hs.add_parser("score", help="score embeddings with a saved detector")
    s.add_argument("--detector", required=True, help="detector file written by 'hcdr fit'")
    s.add_argument("--embeddings", required=True, help=".npy float array (n_samples, n_features)")
    s.add_argument(
        "--out", help="CSV with one row per embedding (inside, decision, per-state log-densities)"
    )
    s.add_argument("--json", action="store_true", help="print machine-readable JSON")
    s.set_defaults(handler=_score)

    c = hs.add_parser(
        "curve", help="hallucination rate as a function of the level 100 alpha (no refit)"
    )
    c.add_argument("--detector", required=True)
    c.add_argument("--embeddings", required=True)
    c.add_argument(
        "--percentiles",
        default="0:50:1",
        help="'start:stop:step' (stop included) or comma list, in [0, 100] (default 0:50:1)",
    )
    c.add_argument("--out", help="CSV of percentile (100 alpha), nominal mass (1 - alpha), rate")
    c.add_argument("--png", help="also plot the curve to this PNG")
    c.add_argument("--json", action="store_true")
    c.set_defaults(handler=_curve)
    p.set_defaults(handler=lambda args: (p.print_help(), 2)[1])


def _fit(args: argparse.Namespace) -> int:
    from deltahall.detectors import HCDRDetector
    from deltahall.detectors.diagnostics import coverage_report

    _outputs(
        args, [("--out", args.out)], [("--embeddings", args.embeddings), ("--labels", args.labels)]
    )
    X = _load_npy(args.embeddings, "embeddings", 2)
    y = _load_npy(args.labels, "labels", 1)
    det = HCDRDetector(
        calibration=args.calibration,
        alpha=args.alpha,
        calibration_fraction=args.calibration_fraction,
        pca_dim=args.pca_dim,
        n_components=args.n_components,
        covariance_type=args.covariance_type,
        normalize=not args.no_normalize,
        reg_covar=args.reg_covar,
        random_state=args.seed,
    ).fit(X, y)
    det.save(args.out)  # the only write, atomic
    rows = coverage_report(det).rows()
    for r, t, ch in zip(rows, det.thresholds_, det.densities_.summary(), strict=True):
        r["threshold"] = float(t)
        r["model"] = {
            k: ch[k] for k in ("pca_dim", "covariance_type", "n_components", "n_fit", "reason")
        }
    if args.json:
        _print_json(
            {
                "detector": args.out,
                "calibration": det.calibration,
                "alpha": float(det.alpha),
                "states": rows,
            }
        )
        return 0
    print(
        f"fitted on {X.shape[0]} x {X.shape[1]} embeddings, {len(rows)} states, {det.calibration} rule at "
        f"alpha={det.alpha:g}; saved {args.out}"
    )
    print(
        f"{'state':>12} {'model':>14} {'n_fit':>6} {'threshold':>12} {'n_holdout':>9} {'coverage':>9} {'nominal':>8}"
    )
    for r in rows:
        m = r["model"]
        model = f"k={m['pca_dim']} {m['covariance_type']} x{m['n_components']}"
        print(
            f"{r['state']!s:>12} {model:>14} {m['n_fit']:>6d} {r['threshold']:>12.4f} {r['n_holdout']:>9d} "
            f"{r['holdout_coverage']:>9.3f} {r['nominal_mass']:>8.3f}"
        )
    return 0


def _score_csv(
    states: list[str],
    inside: npt.NDArray[np.bool_],
    dec: npt.NDArray[np.float64],
    scores: npt.NDArray[np.float64],
) -> str:
    """One row per embedding; header and labels quoted by the csv module alike."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["row", "inside", "decision", *[f"log_density_{s}" for s in states]])
    for i in range(dec.shape[0]):
        w.writerow([i, int(inside[i]), repr(float(dec[i])), *[repr(float(v)) for v in scores[i]]])
    return buf.getvalue()


def _score(args: argparse.Namespace) -> int:
    from deltahall.detectors import HCDRDetector
    from deltahall.io import atomic_write_text

    _outputs(
        args,
        [("--out", args.out)],
        [("--detector", args.detector), ("--embeddings", args.embeddings)],
    )
    det = HCDRDetector.load(args.detector)
    X = _load_npy(args.embeddings, "embeddings", 2)
    scores = det.state_log_densities(
        X
    )  # a non-finite log-density is an error here, never a hallucination
    dec = det.decision_function(X)  # score_samples - offset_ under the detector's rule
    inside = dec >= 0
    rate = float(1.0 - inside.mean())
    states = [str(c) for c in det.classes_]
    if args.out:
        atomic_write_text(args.out, _score_csv(states, inside, dec, scores))
    if args.json:
        out = {
            "n": int(X.shape[0]),
            "hallucination_rate": rate,
            "calibration": det.calibration,
            "alpha": float(det.alpha),
            "offset": float(det.offset_),
            "states": states,
            "thresholds": det.thresholds_.tolist(),
        }
        if not args.out:
            out["inside"] = inside.astype(int).tolist()
            out["log_densities"] = scores.tolist()
        _print_json(out)
        return 0
    print(f"{X.shape[0]} embeddings; hallucination rate (outside the HCDR): {rate:.4f}")
    if args.out:
        print(f"per-row scores: {args.out}")
    return 0


def _curve(args: argparse.Namespace) -> int:
    from deltahall.detectors import HCDRDetector
    from deltahall.detectors.diagnostics import rate_curve
    from deltahall.io import atomic_write_bytes, atomic_write_text
    from deltahall.io.rundir import rows_to_csv

    percentiles = parse_percentiles(args.percentiles)
    _outputs(
        args,
        [("--out", args.out), ("--png", args.png)],
        [("--detector", args.detector), ("--embeddings", args.embeddings)],
    )
    det = HCDRDetector.load(args.detector)
    X = _load_npy(args.embeddings, "embeddings", 2)
    curve = rate_curve(det, X, percentiles)
    rows = curve.rows()
    png: bytes | None = None
    if args.png:  # rendered in memory first: nothing is written unless everything succeeded
        from deltahall.plotting import pyplot

        plt = pyplot()
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot(curve.percentiles, curve.rates, marker=".")
        ax.axvline(
            det.percentile, ls="--", c="gray", label=f"fitted 100 alpha = {det.percentile:g}"
        )
        ax.set_xlabel(f"level 100 alpha ({det.calibration} rule; region mass 1 - alpha)")
        ax.set_ylabel("hallucination rate")
        ax.legend()
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120)
        plt.close(fig)
        png = buf.getvalue()
    if args.out:
        atomic_write_text(args.out, rows_to_csv(rows, ["percentile", "nominal_mass", "rate"]))
    if png is not None:
        atomic_write_bytes(args.png, png)
    if args.json:
        _print_json(rows)
        return 0
    print(f"{'percentile':>10} {'mass':>6} {'rate':>8}")
    for r in rows:
        print(f"{r['percentile']:>10g} {r['nominal_mass']:>6.2f} {r['rate']:>8.4f}")
    sys.stdout.flush()
    return 0
