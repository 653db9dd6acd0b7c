"""The base of every experiment config: presets from the one registry, ``replace``, JSON form.

An experiment config is a frozen dataclass deriving from :class:`ExperimentConfig`. Its field
defaults are its *first* preset; every other preset is a ``replace(...)`` of it, registered in
the class's :attr:`ExperimentConfig.PRESETS` (a :class:`deltahall._registry.Registry`, so an
unknown preset name is an error that lists the known ones). The command line resolves a config
as preset < config file < command line (:func:`deltahall.cli.config_args.config_from_args`).

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Toy(ExperimentConfig):
...     lr: float = 0.1
>>> Toy.PRESETS = presets_for(Toy, "toy", {"small": {"lr": 0.01}})
>>> Toy.PRESETS.names()
('default', 'small')
>>> Toy.from_preset("small", lr=0.02).lr
0.02
>>> Toy.from_preset("big")
Traceback (most recent call last):
...
deltahall._registry.UnknownName: unknown preset 'big' for toy; known presets: default, small.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from deltahall._registry import Registry

__all__ = ["ExperimentConfig", "presets_for"]

C = TypeVar("C", bound="ExperimentConfig")


class ExperimentConfig:
    """Mixin of the experiment configs (frozen dataclasses); holds no fields of its own.

    Attributes
    ----------
    PRESETS : Registry
        Preset name -> complete config of this class; the first is the field defaults.
    EXPERIMENT : str
        The experiment's name in messages (``"qa"``).
    """

    PRESETS: ClassVar[Registry[Any]]
    EXPERIMENT: ClassVar[str] = "experiment"

    @classmethod
    def from_preset(cls: type[C], name: str | None = None, /, **changes: Any) -> C:
        """The preset ``name`` (default: the first) with ``changes`` applied (see :meth:`replace`).

        Raises
        ------
        deltahall._registry.UnknownName
            An unknown preset; the message lists the known ones.
        """
        base: C = cls.PRESETS.get(cls.PRESETS.first if name is None else name)
        return base.replace(**changes) if changes else base

    def replace(self: C, **changes: Any) -> C:
        """A copy with ``changes`` applied and re-checked.

        Names of :class:`~deltahall.experiments._run.RunOptions` fields (``out_dir``,
        ``resume_from_checkpoint``, ``device``, ``threads``, ``progress``) change ``run``.
        """
        from deltahall.experiments._run import RunOptions

        run_changes = RunOptions.pop_from(changes)
        if run_changes:
            base = changes.get("run", self.run)  # type: ignore[attr-defined]
            if isinstance(base, Mapping):
                base = RunOptions(**base)
            changes["run"] = dataclasses.replace(base, **run_changes)  # type: ignore[type-var]
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of the fields (tuples become lists, paths strings)."""
        from deltahall.io.rundir import to_jsonable

        return to_jsonable(self)  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls: type[C], d: dict[str, Any]) -> C:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        from deltahall.experiments._run import config_from_dict

        return config_from_dict(cls, d, cls.EXPERIMENT)  # type: ignore[no-any-return]

    def _check_preset_name(self) -> None:
        """A ``preset`` field must name a registered preset (checked once the registry exists)."""
        reg = type(self).__dict__.get("PRESETS")
        if reg is not None:
            reg.get(self.preset)  # type: ignore[attr-defined]

    def _check_run(self) -> None:
        """``run`` as a :class:`RunOptions` (a dict from JSON is converted); call in ``__post_init__``."""
        from deltahall.experiments._run import RunOptions

        run = self.run  # type: ignore[attr-defined]
        if isinstance(run, Mapping):
            object.__setattr__(self, "run", RunOptions(**run))
        elif not isinstance(run, RunOptions):
            raise TypeError(f"`run` must be a RunOptions; got {type(run).__name__}.")


def presets_for(
    cls: type[C],
    experiment: str,
    changes: Mapping[str, Mapping[str, Any]],
    *,
    first: str = "default",
) -> Registry[C]:
    """The preset registry of ``cls``: ``first`` is ``cls()`` (the field defaults), then one
    ``cls().replace(**changes[name])`` per further preset, in order."""
    cls.EXPERIMENT = experiment
    base = cls()
    reg: Registry[C] = Registry("preset", owner=experiment, entries={first: base})
    for name, ch in changes.items():
        reg.register(name, base.replace(**dict(ch)))
    return reg
