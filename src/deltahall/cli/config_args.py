"""The one resolver of every experiment's command line: preset < config file < command line.

Each dataclass field becomes ``--field-name``; its default is the dataclass default (an
experiment's first preset); ``help`` comes from ``field(metadata={"help": ...})``. A field
whose type is itself a dataclass (every experiment's ``run: RunOptions``) contributes its own
fields as flat options (``--out-dir``, ``--resume-from-checkpoint``, ...). A config class with
a preset registry (``cls.PRESETS``, see :mod:`deltahall.experiments._config`) gets
``--preset`` with the registered names as its choices.

:func:`config_from_args` starts from the chosen preset (``--preset``, else the file's
``preset`` key, else the first), applies a config file (TOML or JSON; values flat or in a
table named after the nested field, ``[run]``), then the options given on the command line.
Unknown keys in a config file are an error naming them and the known keys; a file that cannot
be parsed is named with the line and column.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from deltahall._registry import Registry
from deltahall._validation import BadInput

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


def _nested(cls: type) -> dict[str, type]:
    """Fields of ``cls`` whose type is a dataclass: name -> that dataclass."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        tp, _ = _unwrap_optional(hints[f.name])
        if f.init and isinstance(tp, type) and dataclasses.is_dataclass(tp):
            out[f.name] = tp
    return out


def _field_default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def presets_of(cls: type) -> Registry[Any] | None:
    """The preset registry of a config class (``cls.PRESETS``), or ``None``."""
    reg = getattr(cls, "PRESETS", None)
    return reg if isinstance(reg, Registry) else None


def add_dataclass_arguments(
    parser: argparse.ArgumentParser, cls: type, *, exclude: tuple[str, ...] = ()
) -> None:
    """Add one ``--option`` per field of the dataclass ``cls`` (and ``--preset`` if it has presets).

    Defaults are *not* set on the parser (they stay ``_UNSET``) so that
    :func:`config_from_args` can tell "given on the command line" from
    "left at its default" and let a config file fill the gap. ``exclude`` names fields that get
    no option: ``name`` (a field of ``cls``, or of any nested dataclass) or ``nested.name``.
    """
    hints = typing.get_type_hints(cls)
    nested = _nested(cls)
    group = parser.add_argument_group(f"{cls.__name__} options")
    presets = presets_of(cls)
    if presets is not None and "preset" not in exclude:
        group.add_argument(
            "--preset",
            dest="preset",
            choices=presets.names(),
            default=_UNSET,
            help=(
                "the complete config that options left unset come from; a --config file and "
                f"explicit options override it (default: {presets.first})"
            ),
        )
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if not f.init or f.name in exclude or (presets is not None and f.name == "preset"):
            continue
        if f.name in nested:
            inner_default = _field_default(f)
            inner_hints = typing.get_type_hints(nested[f.name])
            sub = parser.add_argument_group(f"{nested[f.name].__name__} options")
            for g in dataclasses.fields(nested[f.name]):
                if not g.init or g.name in exclude or f"{f.name}.{g.name}" in exclude:
                    continue
                conv, extra = _converter(inner_hints[g.name])
                default = (
                    getattr(inner_default, g.name)
                    if inner_default is not None
                    else _field_default(g)
                )
                sub.add_argument(
                    _flag(g.name),
                    dest=g.name,
                    type=conv,
                    default=_UNSET,
                    help=f"{g.metadata.get('help', '')} (default: {_shown(default)})".strip(),
                    **extra,
                )
            continue
        conv, extra = _converter(hints[f.name])
        default = _field_default(f)
        help_text = f.metadata.get("help", "")
        group.add_argument(
            _flag(f.name),
            dest=f.name,
            type=conv,
            default=_UNSET,
            help=f"{help_text} (default: {_shown(default)})".strip(),
            **extra,
        )


def _shown(default: Any) -> Any:
    return " ".join(map(str, default)) if isinstance(default, (tuple, list)) else default


def check_known_keys(config_file: str | Path, section: str | None, keys: Any, known: Any) -> None:
    """Refuse keys of a config file (or of its table ``[section]``) that name no option.

    Raises
    ------
    deltahall._validation.BadInput
        ``"config file c.toml: table [base] has unknown keys ['learning_rate']; known keys are [...]."``
    """
    bad = sorted(set(keys) - set(known))
    if bad:
        where = f"table [{section}] has" if section else "has"
        raise BadInput(
            f"config file {config_file}: {where} unknown keys {bad}; known keys are {sorted(known)}."
        )


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML or JSON config file into a dict."""
    p = Path(path)
    if p.suffix not in (".json", ".toml"):
        raise ValueError(f"`--config` must be a .toml or .json file; got {p.name!r}.")
    if not p.is_file():
        raise FileNotFoundError(f"`--config` file not found: {p}")
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ValueError(
            f"`--config` file {p} is not UTF-8 text (line {line}, byte {exc.start})."
        ) from None
    if p.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"`--config` file {p}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}."
            ) from None
    else:
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover
            import tomli as tomllib
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"`--config` file {p}: invalid TOML: {exc}.") from None
    if not isinstance(data, dict):
        raise ValueError(
            f"`--config` file {p} must hold a table/object of option values; got {type(data).__name__}."
        )
    return dict(data)


def config_from_args(
    cls: type[T],
    args: argparse.Namespace,
    *,
    config_file: str | Path | None = None,
    file_values: dict[str, Any] | None = None,
    exclude: Mapping[str, str] | None = None,
    **overrides: Any,
) -> T:
    """Instantiate ``cls`` from (preset < config file < command line < overrides).

    The preset is ``args.preset`` when given, else the config file's ``preset`` key, else
    ``cls.PRESETS``' first (for a class without presets: the dataclass defaults).
    ``file_values`` stands for the file's contents when the caller has read (part of) it
    already; ``config_file`` then only names it in messages. A nested dataclass field
    (``run``, a sweep's ``base``) takes its fields flat or as a table named after it.

    ``exclude`` maps settings the command does not take (``name`` or ``nested.name``, as
    :func:`add_dataclass_arguments` leaves them out) to the reason, which the refusal of a
    config file that sets one gives; they keep their preset's (or default's) value.

    Raises
    ------
    deltahall._registry.UnknownName
        An unknown preset (the message lists the known ones).
    deltahall._validation.BadInput
        A config file key that names no option (the message lists the known keys), a key the
        command does not take (with the reason), or a nested table that is not a table.
    """
    fixed: Mapping[str, str] = exclude or {}
    nested = {k: t for k, t in _nested(cls).items() if k not in fixed}
    names = {f.name for f in dataclasses.fields(cls) if f.init} - set(_nested(cls)) - set(fixed)  # type: ignore[arg-type]
    inner_names = {
        k: {g.name for g in dataclasses.fields(t) if g.init and f"{k}.{g.name}" not in fixed}
        for k, t in nested.items()
    }
    values: dict[str, Any] = {}
    inner: dict[str, dict[str, Any]] = {k: {} for k in nested}
    owner = {n: k for k, ns in inner_names.items() for n in ns}
    if file_values is not None:
        file_vals = dict(file_values)
    else:
        file_vals = load_config_file(config_file) if config_file is not None else {}
    presets = presets_of(cls)
    if presets is not None:
        chosen = overrides.pop("preset", getattr(args, "preset", _UNSET))
        in_file = file_vals.pop("preset", _UNSET)
        if chosen is _UNSET or chosen is None:
            chosen = presets.first if in_file is _UNSET else in_file
        preset_config = presets.get(chosen)
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.init:
                values[f.name] = getattr(preset_config, f.name)
        names = names - {"preset"}
    where = config_file if config_file is not None else "values"

    def refuse(dotted: str) -> None:
        table, _, key = dotted.rpartition(".")
        in_table = f": table [{table}]" if table else ""
        raise BadInput(f"config file {where}{in_table} must not set {key!r}: {fixed[dotted]}.")

    for k, v in file_vals.items():
        if k in fixed:
            refuse(k)
        if k in nested:
            if not isinstance(v, dict):
                raise BadInput(
                    f"config file {where}: `{k}` must be a table of {nested[k].__name__} "
                    f"settings; got {v!r}."
                )
            for key in v:
                if f"{k}.{key}" in fixed:
                    refuse(f"{k}.{key}")
            check_known_keys(where, k, v, inner_names[k])
            inner[k].update(v)
        elif k in owner:
            inner[owner[k]][k] = v
        elif k in names:
            values[k] = v
        else:
            for table in nested:
                if f"{table}.{k}" in fixed:
                    refuse(f"{table}.{k}")
            known = sorted(names | set(owner) | ({"preset"} if presets is not None else set()))
            tables = ", ".join(f"[{name}]" for name in nested)
            raise BadInput(
                f"config file {where} has unknown key {k!r}; known keys are {known}"
                + (f" (the nested ones also as tables: {tables})." if nested else ".")
            )
    for name in names:
        v = getattr(args, name, _UNSET)
        if v is not _UNSET:
            values[name] = v
    for name, k in owner.items():
        v = getattr(args, name, _UNSET)
        if v is not _UNSET:
            inner[k][name] = v
    for k, v in overrides.items():
        if k in owner and k not in names:
            inner[owner[k]][k] = v
        else:
            values[k] = v
    for k, t in nested.items():
        if k in values and not inner[k]:
            continue
        base = values.get(k)
        if base is None:
            f = next(f for f in dataclasses.fields(cls) if f.name == k)  # type: ignore[arg-type]
            base = _field_default(f)
        if inner[k] or base is not None:
            vals = _coerce(t, inner[k])
            values[k] = dataclasses.replace(base, **vals) if base is not None else t(**vals)
    return cls(**_coerce(cls, values))


def _coerce(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """Lists from JSON/TOML or argparse become tuples, strings become Paths, where the field says so."""
    hints = typing.get_type_hints(cls)
    out = dict(values)
    for name, v in list(out.items()):
        if name not in hints:
            continue
        tp, _ = _unwrap_optional(hints[name])
        if get_origin(tp) is tuple and isinstance(v, list):
            out[name] = tuple(v)
        elif tp is Path and isinstance(v, str):
            out[name] = Path(v)
    return out
