"""Pickle-free on-disk format of a fitted :class:`~deltahall.detectors.HCDRDetector`.

One ``.safetensors`` file. Its tensors are the fitted arrays; its string
metadata (the safetensors header's ``__metadata__``) holds:

``format``            ``"deltahall.hcdr"``
``format_version``    ``"2"``
``params``            JSON of ``get_params()`` (a non-integer ``random_state`` is stored as null)
``classes``           JSON list of state labels; ``classes_dtype`` their numpy dtype string
``n_features_in``     the input dimension
``feature_names_in``  JSON list or null
``n_states``          number of states
``densities``         JSON of each state's chosen model (``StateDensities.summary()``)
``sha256``            SHA-256 over the canonical JSON of every other metadata field and, for
                      every tensor in name order, its name, dtype, shape and raw bytes

Tensors (float64 unless said): the scorer's shared transform ``densities.mean`` (d,),
``densities.components`` (D, d), ``densities.scale`` (1,); ``state_pca_dim`` (int64, N) and
``state_sigma2`` (N,); per state ``i``: ``state{i}.weights``, ``state{i}.means``,
``state{i}.precisions_cholesky`` (its mixture on its first ``state_pca_dim[i]`` principal
coordinates) and ``state{i}.calibration_scores`` (sorted). Thresholds, coverage and
``offset_`` are recomputed from the calibration scores on load, never read.
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
FORMAT_VERSION = "2"

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "load_detector", "save_detector"]


def _digest(meta: dict[str, str], arrays: dict[str, npt.NDArray[Any]]) -> str:
    h = hashlib.sha256()
    body = {k: v for k, v in meta.items() if k != "sha256"}
    h.update(
        json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")
    )
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
        raise TypeError(
            f"state labels of dtype {classes.dtype} cannot be saved; use str or int labels."
        )
    return json.dumps(classes.tolist(), allow_nan=False), classes.dtype.str


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
        "params": json.dumps(params, sort_keys=True, allow_nan=False),
        "classes": classes_json,
        "classes_dtype": classes_dtype,
        "n_features_in": str(int(det.n_features_in_)),
        "feature_names_in": json.dumps(
            None if names is None else [str(n) for n in names], allow_nan=False
        ),
        "n_states": str(len(det.classes_)),
        "densities": json.dumps(det.densities_.summary(), sort_keys=True, allow_nan=False),
    }
    arrays = _detector_arrays(det)
    arrays = {
        k: np.ascontiguousarray(v, dtype=v.dtype.newbyteorder("<")) for k, v in arrays.items()
    }
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
        raise ValueError(
            f"{str(path)!r} is truncated or corrupt (not a readable .safetensors file: {exc})."
        ) from None
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
        det._validate_params()
        n_states = int(meta["n_states"])
        det.classes_ = np.asarray(
            json.loads(meta["classes"]), dtype=np.dtype(meta["classes_dtype"])
        )
        det.n_features_in_ = int(meta["n_features_in"])
        names = json.loads(meta["feature_names_in"])
        if names is not None:
            det.feature_names_in_ = np.asarray(names, dtype=object)
        if det.classes_.shape != (n_states,):
            raise ValueError(f"{n_states} states but classes of shape {det.classes_.shape}")
        _restore(det, arrays, json.loads(meta["densities"]), n_states)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{str(path)!r} is an inconsistent HCDR detector file: {exc}") from None
    return det


def _detector_arrays(det: HCDRDetector) -> dict[str, npt.NDArray[Any]]:
    """The tensors of a fitted detector (layout in the module docstring)."""
    dens = det.densities_
    arrays: dict[str, npt.NDArray[Any]] = {
        "densities.mean": np.asarray(dens.mean_, dtype=np.float64),
        "densities.components": np.asarray(dens.components_, dtype=np.float64),
        "densities.scale": np.array([dens.scale_], dtype=np.float64),
        "state_pca_dim": np.array([m.k for m in dens.models_], dtype=np.int64),
        "state_sigma2": np.array([m.sigma2 for m in dens.models_], dtype=np.float64),
    }
    for i, m in enumerate(dens.models_):
        arrays[f"state{i}.weights"] = m.gmm.weights
        arrays[f"state{i}.means"] = m.gmm.means
        arrays[f"state{i}.precisions_cholesky"] = m.gmm.precisions_cholesky
        arrays[f"state{i}.calibration_scores"] = np.asarray(
            det.calibration_scores_[i], dtype=np.float64
        )
    return arrays


def _float_array(
    arrays: dict[str, npt.NDArray[Any]],
    name: str,
    shape: tuple[int, ...] | None = None,
    *,
    positive: bool = False,
) -> npt.NDArray[np.float64]:
    a = arrays[name]
    if a.dtype != np.float64:
        raise ValueError(f"tensor `{name}` must be float64; got {a.dtype}")
    if shape is not None and a.shape != shape:
        raise ValueError(f"tensor `{name}` must have shape {shape}; got {a.shape}")
    if not np.isfinite(a).all() or (positive and not (a > 0).all()):
        raise ValueError(f"tensor `{name}` must be finite{' and > 0' if positive else ''}")
    return a


def _restore(
    det: HCDRDetector,
    arrays: dict[str, npt.NDArray[Any]],
    choices: list[dict[str, Any]],
    n_states: int,
) -> None:
    """Rebuild the scorer and the calibrator of ``det`` from its tensors, validating each."""
    from deltahall.detectors.densities import DensityChoice, StateDensities, _StateModel

    d = det.n_features_in_
    comps = _float_array(arrays, "densities.components")
    if comps.ndim != 2 or comps.shape[1] != d or not 1 <= comps.shape[0] <= d:
        raise ValueError(
            f"tensor `densities.components` must have shape (D, {d}); got {comps.shape}"
        )
    ks = arrays["state_pca_dim"]
    if (
        ks.dtype != np.int64
        or ks.shape != (n_states,)
        or (ks < 1).any()
        or (ks > comps.shape[0]).any()
    ):
        raise ValueError(
            f"tensor `state_pca_dim` must be int64 ({n_states},) in [1, {comps.shape[0]}]"
        )
    sigma2 = _float_array(arrays, "state_sigma2", (n_states,), positive=True)
    if len(choices) != n_states:
        raise ValueError(f"metadata `densities` lists {len(choices)} states, not {n_states}")
    dens = StateDensities(
        pca_dim=det.pca_dim,
        covariance_type=det.covariance_type,
        n_components=det.n_components,
        normalize=bool(det.normalize),
        reg_covar=float(det.reg_covar),
    )
    dens.mean_ = _float_array(arrays, "densities.mean", (d,))
    dens.scale_ = float(_float_array(arrays, "densities.scale", (1,), positive=True)[0])
    dens.components_ = comps
    dens.n_features_in_ = d
    dens.models_ = []
    dens.choices_ = [DensityChoice(**c) for c in choices]
    cal: list[npt.NDArray[np.float64]] = []
    for i in range(n_states):
        gmm = GaussianMixtureParams(
            covariance_type=dens.choices_[i].covariance_type,
            weights=_float_array(arrays, f"state{i}.weights"),
            means=_float_array(arrays, f"state{i}.means"),
            precisions_cholesky=_float_array(arrays, f"state{i}.precisions_cholesky"),
        )
        gmm.validate()
        if gmm.n_features != int(ks[i]):
            raise ValueError(
                f"state {i}'s mixture has {gmm.n_features} features, not state_pca_dim {int(ks[i])}"
            )
        dens.models_.append(_StateModel(int(ks[i]), gmm, float(sigma2[i]), d))
        c = _float_array(arrays, f"state{i}.calibration_scores")
        if c.ndim != 1 or c.size == 0:
            raise ValueError(f"tensor `state{i}.calibration_scores` must be a non-empty 1-d array")
        cal.append(c)
    dens.k_max_ = max(m.k for m in dens.models_)
    det.densities_ = dens
    det._set_calibration(cal)
