"""Pickle-free training checkpoints shared by the torch experiments.

A checkpoint is a folder ``checkpoint-{step}/`` holding

- ``model.safetensors``      — the trainable weights (or adapter weights),
- ``optimizer.safetensors``  — every tensor of ``optimizer.state_dict()['state']``,
- ``state.json``             — optimizer param groups and scalar state, the step,
  RNG states (torch generator bytes as a list, numpy bit-generator state) and any
  JSON-able ``extra`` the caller passes (epoch, config fingerprint, ...).

Folders are written under a temporary name and renamed, so a killed run never
leaves a half checkpoint that ``latest`` would pick up. A write that fails (a full disk, a
read-only folder) raises an ``OSError`` naming the checkpoint file and leaves no folder behind;
a file that cannot be read back (truncated, not JSON, not safetensors) is a
:class:`~deltahall._validation.BadInput` naming it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deltahall._validation import BadInput
from deltahall.io.rundir import to_jsonable

logger = logging.getLogger(__name__)

_CKPT_RE = re.compile(r"^checkpoint-(\d+)$")


def list_checkpoints(root: str | os.PathLike[str]) -> list[Path]:
    """Finished ``checkpoint-{step}`` folders under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _CKPT_RE.match(p.name)
        if m and p.is_dir() and (p / "state.json").is_file():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def prune_checkpoints(root: str | os.PathLike[str], total_limit: int | None) -> None:
    """Delete the oldest checkpoints beyond ``total_limit`` (``None`` keeps all)."""
    if total_limit is None:
        return
    ckpts = list_checkpoints(root)
    for p in ckpts[: max(0, len(ckpts) - total_limit)]:
        shutil.rmtree(p, ignore_errors=True)


def _split_optimizer_state(sd: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    import torch

    tensors: dict[str, Any] = {}
    scalars: dict[str, Any] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            key = f"{pid}.{k}"
            if isinstance(v, torch.Tensor):
                tensors[key] = v.detach().cpu().contiguous()
            else:
                scalars[key] = v
    return tensors, scalars


def save_checkpoint(
    root: str | os.PathLike[str],
    step: int,
    *,
    model_state: Mapping[str, Any],
    optimizer: Any | None = None,
    generator: Any | None = None,
    numpy_rng: Any | None = None,
    extra: Mapping[str, Any] | None = None,
    total_limit: int | None = None,
) -> Path:
    """Write ``root/checkpoint-{step}`` atomically and prune old ones.

    Raises
    ------
    OSError
        Naming the checkpoint file that could not be written (``checkpoint-{step}/...``, e.g.
        "No space left on device"); the temporary folder is removed.
    """
    root = Path(root)
    final = root / f"checkpoint-{step}"
    tmp = root / f".tmp-checkpoint-{step}"
    if tmp.exists():
        shutil.rmtree(tmp)
    writing = final
    try:
        tmp.mkdir(parents=True)
        writing = final / "model.safetensors"
        _save_tensors(
            {k: v.detach().cpu().contiguous() for k, v in model_state.items()}, tmp / writing.name
        )
        state: dict[str, Any] = {"step": int(step), "extra": dict(extra or {})}
        if optimizer is not None:
            sd = optimizer.state_dict()
            tensors, scalars = _split_optimizer_state(sd)
            if tensors:
                writing = final / "optimizer.safetensors"
                _save_tensors(tensors, tmp / writing.name)
            state["optimizer"] = {"param_groups": sd["param_groups"], "scalars": scalars}
        if generator is not None:
            state["torch_generator"] = generator.get_state().tolist()
        if numpy_rng is not None:
            state["numpy_rng"] = numpy_rng.bit_generator.state
        # Strict JSON: a non-finite number (e.g. a NaN interval loss) is stored as null.
        state = to_jsonable(json.loads(json.dumps(state, default=_json_default)))
        writing = final / "state.json"
        (tmp / "state.json").write_text(json.dumps(state, allow_nan=False), encoding="utf-8")
        writing = final
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OSError(exc.errno, exc.strerror or str(exc), os.fspath(writing)) from None
    prune_checkpoints(root, total_limit)
    logger.info("saved %s", final)
    return final


_OS_ERROR = re.compile(r"os error (\d+)")


def named_os_error(exc: BaseException, path: str | os.PathLike[str]) -> OSError | None:
    """The I/O failure in ``exc`` as an ``OSError`` naming ``path``, or ``None`` if it is none.

    Covers an ``OSError`` (whatever file it named) and safetensors' ``SafetensorError``, which
    carries the OS error only in its message (``"... No space left on device (os error 28)"``).
    """
    if isinstance(exc, OSError) and exc.errno is not None:
        return OSError(exc.errno, exc.strerror or str(exc), os.fspath(path))
    m = _OS_ERROR.search(str(exc))
    if m is None or isinstance(exc, OSError):
        return None
    code = int(m.group(1))
    return OSError(code, os.strerror(code), os.fspath(path))


def _save_tensors(tensors: Mapping[str, Any], path: Path) -> None:
    """``safetensors.torch.save_file``, whose I/O failures become an ``OSError`` with their errno."""
    from safetensors.torch import save_file

    try:
        save_file(dict(tensors), str(path))
    except Exception as exc:
        named = named_os_error(exc, path)
        if named is None:
            raise
        raise named from None


def _load_tensors(path: Path) -> dict[str, Any]:
    """``safetensors.torch.load_file``; a truncated or corrupt file is a :class:`BadInput` naming it."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise BadInput(f"checkpoint file {os.fspath(path)!r} is missing.") from None
    except OSError:
        raise
    except Exception as exc:  # SafetensorError: "Error while deserializing header: ..."
        raise BadInput(
            f"checkpoint file {os.fspath(path)!r} is not a readable safetensors file "
            f"(truncated or corrupt: {' '.join(str(exc).split())})."
        ) from None


def verify_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read-only check that a checkpoint folder can be loaded; returns its ``state.json``.

    Parses ``state.json`` and the header of every ``*.safetensors`` file (which must cover the
    file exactly), so a truncated checkpoint is refused before a run writes anything.

    Raises
    ------
    deltahall._validation.BadInput
        Naming the unreadable file.
    """
    from safetensors import safe_open

    state = read_state(path)
    for f in sorted(Path(path).glob("*.safetensors")):
        try:
            with safe_open(str(f), framework="numpy"):
                pass
        except OSError:
            raise
        except Exception as exc:  # SafetensorError
            raise BadInput(
                f"checkpoint file {os.fspath(f)!r} is not a readable safetensors file "
                f"(truncated or corrupt: {' '.join(str(exc).split())})."
            ) from None
    return state


def read_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``state.json`` of checkpoint folder ``path``; an unreadable one is a :class:`BadInput` naming it."""
    f = Path(path) / "state.json"
    try:
        state = json.loads(f.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise BadInput(
            f"checkpoint file {os.fspath(f)!r} is not UTF-8 text (byte {exc.start})."
        ) from None
    except json.JSONDecodeError as exc:
        raise BadInput(
            f"checkpoint file {os.fspath(f)!r} is not valid JSON (line {exc.lineno}, "
            f"column {exc.colno}: {exc.msg})."
        ) from None
    if not isinstance(state, dict) or not isinstance(state.get("extra", {}), dict):
        raise BadInput(
            f"checkpoint file {os.fspath(f)!r} must hold a JSON object with an object `extra`."
        )
    return state


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"cannot store {type(o).__name__} in state.json")


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    model: Any | None = None,
    optimizer: Any | None = None,
    generator: Any | None = None,
    numpy_rng: Any | None = None,
    strict: bool = True,
) -> dict[str, Any]:
    """Restore what :func:`save_checkpoint` wrote; returns ``state.json`` (``step``, ``extra``)."""
    import torch

    path = Path(path)
    state = read_state(path)
    if model is not None:
        weights = _load_tensors(path / "model.safetensors")
        model.load_state_dict(weights, strict=strict)
    if optimizer is not None:
        opt = state.get("optimizer")
        if opt is None:
            raise ValueError(f"checkpoint {path} has no optimizer state.")
        tensors = (
            _load_tensors(path / "optimizer.safetensors")
            if (path / "optimizer.safetensors").is_file()
            else {}
        )
        per: dict[int, dict[str, Any]] = {}
        for key, v in tensors.items():
            pid, k = key.split(".", 1)
            per.setdefault(int(pid), {})[k] = v
        for key, v in opt["scalars"].items():
            pid, k = key.split(".", 1)
            per.setdefault(int(pid), {})[k] = v
        optimizer.load_state_dict({"state": per, "param_groups": opt["param_groups"]})
    if generator is not None and "torch_generator" in state:
        generator.set_state(torch.tensor(state["torch_generator"], dtype=torch.uint8))
    if numpy_rng is not None and "numpy_rng" in state:
        numpy_rng.bit_generator.state = state["numpy_rng"]
    return state
