"""One registry type for every named thing: presets, model and data aliases, embedders, steps.

In the manner of lm-evaluation-harness's ``registry.py``: a :class:`Registry` maps names to
objects, in registration order; :meth:`Registry.register` adds one (as a call or a decorator)
and refuses a name that is already taken; :meth:`Registry.get` looks one up, and an unknown
name is an error that lists the known ones:

>>> presets = Registry("preset", owner="qa")
>>> presets.register("paper", {"epochs": 4})
{'epochs': 4}
>>> @presets.register("tiny")
... def _tiny():
...     return {"epochs": 1}
>>> presets.names()
('paper', 'tiny')
>>> presets.get("cpu")
Traceback (most recent call last):
...
deltahall._registry.UnknownName: unknown preset 'cpu' for qa; known presets: paper, tiny.

It reads like a mapping (``name in reg``, ``reg[name]``, iteration over the names,
``items()``), so a registry can stand where a dict of names stood. ``reg[name] = obj`` only
*replaces* an existing entry (tests swap one in with ``monkeypatch.setitem``); new names go
through :meth:`register`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar, overload

from deltahall._validation import BadInput

__all__ = ["Registry", "UnknownName"]

T = TypeVar("T")
_MISSING: Any = object()


class UnknownName(BadInput, KeyError):
    """A name no registry entry has; the message lists the known names.

    Both a :class:`~deltahall._validation.BadInput` (a ``ValueError``: the command line
    reports it as bad input) and a ``KeyError`` (what a mapping raises).
    """

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class Registry(Mapping[str, T], Generic[T]):
    """Names -> objects of one kind, in registration order.

    Parameters
    ----------
    kind : str
        What an entry is, for messages: ``"preset"``, ``"model alias"``, ``"embedder"``.
    owner : str, optional
        Whose entries these are (``"qa"``): messages say ``"unknown preset 'x' for qa"``.
    plural : str, optional
        The plural of ``kind`` in messages (default ``kind + "s"``).
    entries : mapping or iterable of (name, object) pairs, optional
        Initial entries, registered in order.
    """

    def __init__(
        self,
        kind: str,
        *,
        owner: str | None = None,
        plural: str | None = None,
        entries: Mapping[str, T] | Iterable[tuple[str, T]] = (),
    ) -> None:
        if not isinstance(kind, str) or not kind.strip():
            raise BadInput(f"`kind` must be a non-empty string; got {kind!r}.")
        self.kind = kind
        self.owner = owner
        self.plural = plural or f"{kind}s"
        self._entries: dict[str, T] = {}
        pairs = entries.items() if isinstance(entries, Mapping) else entries
        for name, obj in pairs:
            self.register(name, obj)

    # ------------------------------------------------------------------ registering
    @overload
    def register(self, name: str) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, obj: T) -> T: ...

    def register(self, name: str, obj: Any = _MISSING) -> Any:
        """Add ``obj`` under ``name`` and return it; without ``obj``, a decorator that does so.

        Raises
        ------
        deltahall._validation.BadInput
            ``name`` is not a non-empty string, or is taken already (the message names the entry).
        """
        if not isinstance(name, str) or not name.strip():
            raise BadInput(f"a {self.kind} name must be a non-empty string; got {name!r}.")
        if name in self._entries:
            raise BadInput(
                f"{self.kind} {name!r}{self._for} is registered already; "
                f"choose another name (known {self.plural}: {self._listing})."
            )
        if obj is _MISSING:

            def decorator(o: T) -> T:
                self.register(name, o)
                return o

            return decorator
        self._entries[name] = obj
        return obj

    def __setitem__(self, name: str, obj: T) -> None:
        """Replace the entry ``name`` (which must exist: new names go through :meth:`register`)."""
        if name not in self._entries:
            raise self._unknown(name)
        self._entries[name] = obj

    # ------------------------------------------------------------------ looking up
    def get(self, name: str, default: Any = _MISSING) -> Any:  # type: ignore[override]
        """The entry ``name``; unknown: ``default`` when given, else :class:`UnknownName`.

        Raises
        ------
        UnknownName
            ``"unknown preset 'cpu' for qa; known presets: paper, tiny, cpu-smollm2."``
        """
        if isinstance(name, str) and name in self._entries:
            return self._entries[name]
        if default is not _MISSING:
            return default
        raise self._unknown(name)

    def __getitem__(self, name: str) -> T:
        return self.get(name)  # type: ignore[no-any-return]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> tuple[str, ...]:
        """Every name, in registration order."""
        return tuple(self._entries)

    @property
    def first(self) -> str:
        """The first registered name (an experiment's default preset)."""
        if not self._entries:
            raise BadInput(f"no {self.plural}{self._for} are registered.")
        return next(iter(self._entries))

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}{self._for}: {self._listing})"

    # ------------------------------------------------------------------ messages
    @property
    def _for(self) -> str:
        return f" for {self.owner}" if self.owner else ""

    @property
    def _listing(self) -> str:
        return ", ".join(self._entries) or "none"

    def _unknown(self, name: object) -> UnknownName:
        return UnknownName(
            f"unknown {self.kind} {name!r}{self._for}; known {self.plural}: {self._listing}."
        )
