"""Pickle-free on-disk format of a fitted :class:`~deltahall.detectors.HCDRDetector`.

One ``.safetensors`` file. Its tensors are the fitted arrays; its string
metadata (the safetensors header's ``__metadata__``) holds:

``format``            ``"deltahall.hcdr"``
``format_version``    ``"1"``
``params``            JSON of ``get_params()`` (a non-integer ``random_state`` is stored as null)
``classes``           JSON list of state labels; ``classes_dtype`` their numpy dtype string
``n_features_in``     the input dimension
``feature_names_in``  JSON list or null
``n_states``          number of states
``sha256``            SHA-256 over the canonical JSON of every other metadata field and, for
                      every tensor in name order, its name, dtype, shape and raw bytes

Tensors: ``scaler_mean``, ``scaler_scale``, optional ``pca_mean`` and ``pca_components``,
``thresholds``, ``holdout_coverage``, ``converged`` (uint8) and, per state ``i``:
``state{i}.weights``, ``state{i}.means``, ``state{i}.precisions_cholesky``,
``state{i}.calibration_scores``, ``state{i}.train_scores``.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from deltahall.detectors._gmm import GaussianMixtureParams

if TYPE_CHECKING:
    from deltahall.detectors.hcdr import HCDRDetector

FORMAT_NAME = "deltahall.hcdr"
FORMAT_VERSION = "1"

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "load_detector", "save_detector"]


def _digest(meta: dict[str, str], arrays: dict[str, npt.NDArray[Any]]) -> str:
    h = hashlib.sha256()
    body = {k: v for k, v in meta.items() if k != "sha256"}
    h.update(json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8"))
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"\n{name}|{a.dtype.str}|{list(a.shape)}\n".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _classes_to_json(classes: npt.NDArray[Any]) -> tuple[str, str]:
    if classes.dtype == object:
        if not all(isinstance(c, str) for c in classes):
            raise TypeError(
                "state labels must be str, int, float or bool to be saved; got object labels "
                f"{classes.tolist()!r}."
            )
        classes = classes.astype(str)
    if classes.dtype.kind not in "biufU":
        raise TypeError(f"state labels of dtype {classes.dtype} cannot be saved; use str or int labels.")
    return json.dumps(classes.tolist()), classes.dtype.str


def save_detector(det: HCDRDetector, path: str | os.PathLike[str]) -> Path:
    """Write ``det`` to ``path`` atomically (see the module docstring for the layout)."""
    from safetensors.numpy import save

    from deltahall.io.atomic import atomic_write_bytes

    params = det.get_params()
    rs = params.get("random_state")
    if not (rs is None or isinstance(rs, (int, np.integer))):
        params["random_state"] = None
    else:
        params["random_state"] = None if rs is None else int(rs)
    classes_json, classes_dtype = _classes_to_json(np.asarray(det.classes_))
    names = getattr(det, "feature_names_in_", None)
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "params": json.dumps(params, sort_keys=True),
        "classes": classes_json,
        "classes_dtype": classes_dtype,
        "n_features_in": str(int(det.n_features_in_)),
        "feature_names_in": json.dumps(None if names is None else [str(n) for n in names]),
        "n_states": str(len(det.mixtures_)),
    }
    arrays: dict[str, npt.NDArray[Any]] = {
        "scaler_mean": det.scaler_mean_,
        "scaler_scale": det.scaler_scale_,
        "thresholds": det.thresholds_,
        "holdout_coverage": det.holdout_coverage_,
        "converged": det.converged_.astype(np.uint8),
    }
    if det.pca_components_ is not None and det.pca_mean_ is not None:
        arrays["pca_mean"] = det.pca_mean_
        arrays["pca_components"] = det.pca_components_
    for i, m in enumerate(det.mixtures_):
        arrays[f"state{i}.weights"] = m.weights
        arrays[f"state{i}.means"] = m.means
        arrays[f"state{i}.precisions_cholesky"] = m.precisions_cholesky
        arrays[f"state{i}.calibration_scores"] = det.calibration_scores_[i]
        arrays[f"state{i}.train_scores"] = det.train_scores_[i]
    arrays = {k: np.ascontiguousarray(v, dtype=v.dtype.newbyteorder("<")) for k, v in arrays.items()}
    meta["sha256"] = _digest(meta, arrays)
    return atomic_write_bytes(path, save(arrays, metadata=meta))


def _check_header(path: Path) -> None:
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(9)
    if len(head) == 9:
        (n_header,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and n_header + 8 <= size:
            return
        if head[8:9] == b"{" and n_header < 100_000_000:
            raise ValueError(
                f"{str(path)!r} is truncated: its .safetensors header announces {n_header + 8} bytes "
                f"but the file has {size}."
            )
    if head[:1] == b"\x80":
        raise ValueError(
            f"{str(path)!r} looks like a Python pickle; deltahall never loads pickles "
            "(expected a .safetensors file written by HCDRDetector.save)."
        )
    if head[:2] == b"PK":
        raise ValueError(
            f"{str(path)!r} is a zip archive (e.g. torch.save or .npz), not a .safetensors file "
            "written by HCDRDetector.save."
        )
    raise ValueError(
        f"{str(path)!r} is not a .safetensors file written by HCDRDetector.save (bad header)."
    )


def load_detector(cls: type[HCDRDetector], path: str | os.PathLike[str]) -> HCDRDetector:
    """Read a detector written by :func:`save_detector`.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        For a pickle, a non-safetensors file, another format or version, or a checksum
        mismatch (tampered or corrupted file).
    """
    from safetensors import SafetensorError, safe_open
    from safetensors.numpy import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"HCDR detector file not found: {str(path)!r}.")
    _check_header(path)
    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta = dict(fh.metadata() or {})
        arrays = load_file(str(path))
    except (SafetensorError, OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{str(path)!r} is truncated or corrupt (not a readable .safetensors file: {exc}).") from None
    if meta.get("format") != FORMAT_NAME:
        raise ValueError(
            f"{str(path)!r} is not an HCDR detector file: metadata `format` is "
            f"{meta.get('format')!r}, expected {FORMAT_NAME!r}."
        )
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{str(path)!r} has HCDR format version {meta.get('format_version')!r}; this deltahall "
            f"reads version {FORMAT_VERSION!r}."
        )
    expected = meta.get("sha256")
    if expected is None or _digest(meta, arrays) != expected:
        raise ValueError(
            f"{str(path)!r} failed its SHA-256 check: the arrays or metadata were modified "
            "after saving (tampered or corrupted file)."
        )
    try:
        params = json.loads(meta["params"])
        det = cls(**params)
        det._check_params()
        n_states = int(meta["n_states"])
        det.classes_ = np.asarray(json.loads(meta["classes"]), dtype=np.dtype(meta["classes_dtype"]))
        det.n_features_in_ = int(meta["n_features_in"])
        names = json.loads(meta["feature_names_in"])
        if names is not None:
            det.feature_names_in_ = np.asarray(names, dtype=object)
        det.scaler_mean_ = arrays["scaler_mean"]
        det.scaler_scale_ = arrays["scaler_scale"]
        det.pca_mean_ = arrays.get("pca_mean")  # type: ignore[assignment]
        det.pca_components_ = arrays.get("pca_components")  # type: ignore[assignment]
        det.thresholds_ = arrays["thresholds"]
        det.holdout_coverage_ = arrays["holdout_coverage"]
        det.converged_ = arrays["converged"].astype(bool)
        det.mixtures_ = []
        for i in range(n_states):
            m = GaussianMixtureParams(
                covariance_type=det.covariance_type,
                weights=arrays[f"state{i}.weights"],
                means=arrays[f"state{i}.means"],
                precisions_cholesky=arrays[f"state{i}.precisions_cholesky"],
            )
            m.validate()
            det.mixtures_.append(m)
        det.calibration_scores_ = [arrays[f"state{i}.calibration_scores"] for i in range(n_states)]
        det.train_scores_ = [arrays[f"state{i}.train_scores"] for i in range(n_states)]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{str(path)!r} is an inconsistent HCDR detector file: {exc}") from None
    if det.classes_.shape != (n_states,) or det.thresholds_.shape != (n_states,):
        raise ValueError(f"{str(path)!r} is inconsistent: {n_states} states but classes {det.classes_.shape}.")
    det._build_affine()
    det._build_scorer()
    return det
