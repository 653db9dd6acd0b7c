"""Build argparse options from a frozen config dataclass, so defaults live in one place.

Each dataclass field becomes ``--field-name``; its default is the dataclass
default; ``help`` comes from ``field(metadata={"help": ...})``. A config file
(TOML or JSON) may supply values; explicit command-line options win over it.
Unknown keys in a config file are an error, not silently ignored.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

T = TypeVar("T")

_UNSET = object()


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _parse_bool(s: str) -> bool:
    v = s.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false; got {s!r}")


def _converter(tp: Any) -> tuple[Any, dict[str, Any]]:
    """Return (type callable, extra argparse kwargs) for a field type."""
    tp, optional = _unwrap_optional(tp)
    origin = get_origin(tp)
    if origin is Literal:
        choices = list(get_args(tp))
        return type(choices[0]), {"choices": choices}
    if origin in (tuple, list):
        args = [a for a in get_args(tp) if a is not Ellipsis]
        inner = args[0] if args else str
        return inner, {"nargs": "+"}
    if tp is bool:
        return _parse_bool, {"metavar": "{true,false}"}
    if tp in (int, float, str):
        return tp, {}
    if tp is Path:
        return Path, {}
    return str, {}


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type, *, exclude: tuple[str, ...] = ()) -> None:
    """Add one ``--option`` per field of the dataclass ``cls``.

    Defaults are *not* set on the parser (they stay ``_UNSET``) so that
    :func:`config_from_args` can tell "given on the command line" from
    "left at its default" and let a config file fill the gap.
    """
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(f"{cls.__name__} options")
    for f in dataclasses.fields(cls):
        if not f.init or f.name in exclude:
            continue
        conv, extra = _converter(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None  # type: ignore[misc]
        )
        help_text = f.metadata.get("help", "")
        shown = " ".join(map(str, default)) if isinstance(default, (tuple, list)) else default
        group.add_argument(
            _flag(f.name),
            dest=f.name,
            type=conv,
            default=_UNSET,
            help=f"{help_text} (default: {shown})".strip(),
            **extra,
        )


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML or JSON config file into a dict."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"`--config` file not found: {p}")
    if p.suffix == ".json":
        return dict(json.loads(p.read_text(encoding="utf-8")))
    if p.suffix == ".toml":
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover
            import tomli as tomllib
        return dict(tomllib.loads(p.read_text(encoding="utf-8")))
    raise ValueError(f"`--config` must be a .toml or .json file; got {p.name!r}.")


def config_from_args(cls: type[T], args: argparse.Namespace, *, config_file: str | Path | None = None, **overrides: Any) -> T:
    """Instantiate ``cls`` from (defaults < config file < command line < overrides)."""
    names = {f.name for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    if config_file is not None:
        file_vals = load_config_file(config_file)
        unknown = sorted(set(file_vals) - names)
        if unknown:
            raise ValueError(
                f"config file {config_file} has unknown keys {unknown}; "
                f"known keys are {sorted(names)}."
            )
        values.update(file_vals)
    for name in names:
        v = getattr(args, name, _UNSET)
        if v is not _UNSET:
            values[name] = v
    values.update(overrides)
    for name, v in list(values.items()):
        tp, _ = _unwrap_optional(hints[name])
        if get_origin(tp) is tuple and isinstance(v, list):
            values[name] = tuple(v)
        elif tp is Path and isinstance(v, str):
            values[name] = Path(v)
    return cls(**values)
