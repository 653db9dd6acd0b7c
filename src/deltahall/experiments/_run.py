"""One run lifecycle for every experiment: options, acceptance, resume, manifest, processes.

An experiment is a config plus a body: :class:`Experiment` names it and holds the body (and a
few optional hooks), and :func:`execute` is the one entry every command that writes a run folder
goes through::

    check -> accelerator -> accept (manifest.json) -> torch threads -> body -> result.json

A new experiment needs a config with a ``run: RunOptions`` field and a body
``body(config, opened) -> Mapping`` (the JSON-able body of ``result.json``); nothing else.

Every experiment config holds a :class:`RunOptions` in its field ``run`` (output folder,
resume, device, threads, progress), so the manifest records them. Acceptance (internals of
:func:`execute`: :func:`check_run` then :func:`accept_run`)

1. checks the output folder (a file or an unreadable folder is refused before anything is written);
2. refuses to start over a different run: a folder that already holds a run needs
   ``resume_from_checkpoint``;
3. resolves ``'latest'`` (no run yet: one warning line, then a fresh start) or an explicit
   checkpoint folder (missing: an error, never a silent fresh start);
4. compares the config's :func:`fingerprint` with the one the run was started with, under one
   policy declared on the fields (``metadata={"resume": "free"}`` marks a field that may change
   between a run and its resumption), and names each changed key with ``old -> new``;
5. only then lets the main process write ``manifest.json``; the other processes of a
   distributed launch wait at a barrier and never write shared files.

Every process reaches the same decision from the same files (all validate before the main process
writes), so a refused run is refused everywhere and nothing hangs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import logging
import os
import platform
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deltahall._validation import BadInput, RunFailure, check_int, require
from deltahall.experiments._checkpoint import list_checkpoints, read_state, verify_checkpoint
from deltahall.io.rundir import RunDir, package_versions, to_jsonable

logger = logging.getLogger(__name__)

#: Field metadata that lets a field change between a run and its resumption.
RESUME_FREE: Mapping[str, str] = {"resume": "free"}
#: Field metadata of a nested config whose fields enter the fingerprint under their own names
#: (``alpha``, not ``settings.alpha``); see :class:`Job`.
FLAT: Mapping[str, str] = {"fingerprint": "flat"}

MANIFEST = "manifest.json"
RESULT = "result.json"


def free(help_text: str) -> dict[str, str]:
    """Field metadata: ``help`` text, and the field may change when the run is resumed."""
    return {"help": help_text, **RESUME_FREE}


@dataclass(frozen=True)
class RunOptions:
    """Where and how a run executes; they may change between a run and its resumption.

    None of them changes what a run computes, but ``threads`` and ``device`` change the order in
    which floats are summed, so results are bit-identical only at the same thread count and
    device (a tiny ``coinflip run``: relative differences ~1e-9 after 3 epochs between 1 and 2
    threads; the digit CNN: weights apart by up to 0.12 after 60 epochs, which is why it trains
    on a fixed thread count). Each session's options are recorded in the manifest's
    ``sessions``.

    Parameters
    ----------
    out_dir : Path or None
        The run directory. ``None`` is no folder at all: an experiment that can run in memory
        (:attr:`Experiment.folder_optional`, e.g. one coin-flip run called from Python) writes
        nothing; every other one refuses to start. Each experiment config's ``run`` default
        names its folder explicitly.
    resume_from_checkpoint : {"latest"} or path, optional
        ``"latest"`` continues the run in ``out_dir`` from its newest checkpoint (a fresh start,
        with one warning line, if there is no run yet); a path names a checkpoint folder, which
        must exist. ``None`` starts a new run and refuses a folder that already holds one.
    device : str
        ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:i"`` or ``"mps"``.
        Under ``torchrun``/``accelerate launch`` the launcher picks each process's device.
    threads : int or None
        torch CPU threads per process while the run executes. ``None`` leaves torch's thread
        count as it is (torch's own default; torch is not even imported for it), which is
        what the experiments that never set it (a measurement, the main job) want. Each
        experiment config's ``run`` default states its own value (the first preset's).
    progress : bool
        Progress bars on stderr.
    """

    out_dir: Path | None = field(default=None, metadata=free("run directory"))
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata=free(
            "'latest' (continue the run in --out-dir; starts fresh if there is none yet) or a checkpoint "
            "folder (must exist); unset: start a new run, refusing a folder that holds one"
        ),
    )
    device: str = field(
        default="auto",
        metadata=free("'auto', 'cpu', 'cuda', 'cuda:i' or 'mps' (a launcher picks per process)"),
    )
    threads: int | None = field(
        default=None,
        metadata=free("torch CPU threads per process (>= 1; unset: leave torch's own count)"),
    )
    progress: bool = field(default=True, metadata=free("show progress bars on stderr"))

    def __post_init__(self) -> None:
        if self.out_dir is not None and not isinstance(self.out_dir, Path):
            if not isinstance(self.out_dir, (str, os.PathLike)):
                raise TypeError(
                    f"`out_dir` must be a path; got {type(self.out_dir).__name__} {self.out_dir!r}."
                )
            object.__setattr__(self, "out_dir", Path(self.out_dir))
        if self.out_dir is not None and not str(self.out_dir).strip():
            raise ValueError("`out_dir` must be a folder path; got ''.")
        r = self.resume_from_checkpoint
        if r is not None:
            if not isinstance(r, (str, os.PathLike)):
                raise TypeError(
                    f"`resume_from_checkpoint` must be 'latest' or a path; got {type(r).__name__} {r!r}."
                )
            if not str(r).strip():
                raise ValueError(
                    "`resume_from_checkpoint` must be 'latest' or a checkpoint folder; got ''."
                )
            object.__setattr__(self, "resume_from_checkpoint", os.fspath(r))
        if not isinstance(self.device, str) or not (
            self.device in ("auto", "cpu", "cuda", "mps")
            or (self.device.startswith("cuda:") and self.device[5:].isdigit())
        ):
            raise ValueError(
                f"`device` must be 'auto', 'cpu', 'cuda', 'cuda:i' or 'mps'; got {self.device!r}."
            )
        if self.threads is not None:
            check_int(self.threads, "threads", low=1, high=4096)
        if not isinstance(self.progress, bool):
            raise TypeError(f"`progress` must be a bool; got {self.progress!r}.")

    @classmethod
    def pop_from(cls, changes: dict[str, Any]) -> dict[str, Any]:
        """Remove and return the entries of ``changes`` named like a :class:`RunOptions` field.

        Lets ``Config.replace(out_dir=..., progress=False, lr=...)`` and presets take run options
        by their usual names.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        return {k: changes.pop(k) for k in list(changes) if k in names}


#: The packages each experiment needs, by pip extra (``pip install 'deltahall[EXTRA]'``).
EXTRAS: Mapping[str, tuple[str, ...]] = {
    "coinflip": ("torch",),
    "t2i": ("torch", "diffusers", "transformers", "accelerate"),
    "qa": ("torch", "transformers", "peft", "accelerate"),
    "modes": ("torch",),
}


def require_extra(extra: str) -> None:
    """Import every package of ``extra`` or raise one line naming the extra to install.

    Raises
    ------
    deltahall._validation.MissingExtraError
        ``"`peft` is not installed for the qa experiment; install it with: pip install 'deltahall[qa]'."``
    """
    for module in EXTRAS[extra]:
        require(module, extra, what=f"the {extra} experiment")


# --------------------------------------------------------------------------- fingerprint
def config_from_dict(cls: Any, d: Mapping[str, Any], what: str) -> Any:
    """A config dataclass from its JSON form (``to_jsonable``'s output): lists become tuples, the
    ``run`` table a :class:`RunOptions`; unknown keys are an error naming them and ``what``."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(
            f"{what} config has unknown keys {unknown}; known keys are {sorted(names)}."
        )
    values: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}
    if isinstance(values.get("run"), dict):
        values["run"] = RunOptions(**values["run"])  # RunOptions turns a string out_dir into a Path
    return cls(**values)


def fingerprint(config: Any) -> dict[str, Any]:
    """The settings a run's files depend on: every field not marked resume-free, recursively.

    Nested dataclasses contribute their own fields under ``"outer.inner"`` keys.

    Examples
    --------
    >>> from dataclasses import dataclass, field
    >>> @dataclass(frozen=True)
    ... class C:
    ...     lr: float = 0.1
    ...     run: RunOptions = field(default_factory=RunOptions, metadata=RESUME_FREE)
    >>> fingerprint(C())
    {'lr': 0.1}
    """
    out: dict[str, Any] = {}
    _collect(config, "", out)
    return out


def _collect(obj: Any, prefix: str, out: dict[str, Any]) -> None:
    for f in dataclasses.fields(obj):
        if f.metadata.get("resume") == "free":
            continue
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            _collect(
                v, prefix if f.metadata.get("fingerprint") == "flat" else f"{prefix}{f.name}.", out
            )
        else:
            out[prefix + f.name] = to_jsonable(v)


def changed_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """``key: old -> new`` for every key whose value differs (missing keys show as ``<unset>``)."""
    rows = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k, "<unset>"), new.get(k, "<unset>")
        if a != b:
            rows.append(f"{k}: {_short(a)} -> {_short(b)}")
    return rows


def _short(v: Any, limit: int = 60) -> str:
    if v == "<unset>":
        return "<unset>"
    s = repr(v) if isinstance(v, str) else json.dumps(v, default=str, ensure_ascii=False)
    return s if len(s) <= limit else s[: limit - 3] + "..."


# --------------------------------------------------------------------------- processes
@dataclass(frozen=True)
class World:
    """The processes of one run: rank, size, and a barrier (a no-op for one process)."""

    rank: int = 0
    size: int = 1
    barrier: Callable[[], None] = field(default=lambda: None, repr=False, compare=False)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """The main process runs the block first (builds an artefact); the others then run it (load it)."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()


SINGLE = World()


def launched_world_size() -> int:
    """Processes the launcher (``torchrun``/``accelerate launch``) started, from ``WORLD_SIZE``."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def make_accelerator(
    run: RunOptions,
    *,
    mixed_precision: str = "no",
    gradient_accumulation_steps: int = 1,
    project_dir: Path | None = None,
) -> Any:
    """The one ``accelerate.Accelerator`` factory of every experiment.

    ``device="auto"`` on a machine without CUDA asks accelerate for the CPU explicitly: then
    a 2-process ``torchrun`` (or ``accelerate launch --multi_gpu --num_processes 2``) really runs
    2 processes on the gloo backend; otherwise accelerate would fall back to one process per
    launch and every process would believe it is the main one.

    Raises
    ------
    RunFailure
        If the launcher started several processes but accelerate did not join them, or
        ``device="cuda"`` was asked for and no GPU was given.
    """
    import torch
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    device = run.device
    cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RunFailure(
            f"`device` {device!r} was asked for, but torch sees no CUDA GPU on this machine."
        )
    if device.startswith("cuda:") and launched_world_size() == 1:
        torch.cuda.set_device(int(device.split(":", 1)[1]))
    kwargs: dict[str, Any] = {
        "cpu": cpu,
        "mixed_precision": mixed_precision,
        "gradient_accumulation_steps": gradient_accumulation_steps,
    }
    if project_dir is not None:
        kwargs["project_config"] = ProjectConfiguration(
            project_dir=str(project_dir), logging_dir=str(project_dir / "logs")
        )
    launched = launched_world_size()
    if launched == 1:
        # One process: a previous run in this process (another experiment, a notebook cell) may
        # have set accelerate's shared state with other options; start from a clean one.
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)
    acc = Accelerator(**kwargs)
    if acc.num_processes != launched:
        raise RunFailure(
            f"the launcher started {launched} processes but accelerate joined {acc.num_processes} "
            f"(distributed type {acc.distributed_type}); on CPU use `torchrun --nproc_per_node N` or "
            "`accelerate launch --multi_gpu --num_processes N` with --device cpu."
        )
    return acc


def world_of(accelerator: Any) -> World:
    """The :class:`World` of an ``Accelerator``."""
    return World(
        rank=int(accelerator.process_index),
        size=int(accelerator.num_processes),
        barrier=accelerator.wait_for_everyone,
    )


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads (``None``: unchanged), restoring them after."""
    import torch

    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


# --------------------------------------------------------------------------- acceptance
@dataclass(frozen=True)
class OpenRun:
    """An accepted run: where it lives, what it resumes from, and who may write.

    Attributes
    ----------
    folder : RunDir or None
        The run directory (``None`` only for an experiment run in memory, see
        :attr:`Experiment.folder_optional`); :attr:`rd` is the same, never ``None``.
    checkpoint : Path or None
        The checkpoint to resume from.
    resumed : bool
        The folder held this run already (``resume_from_checkpoint`` was given).
    world : World
        The processes of the run; only the main one writes.
    fingerprint : dict
        :func:`fingerprint` of the config (store it in checkpoints).
    accelerator : accelerate.Accelerator or None
        Built by :attr:`Experiment.accelerator`, if the experiment has one.
    prepared : object
        What :attr:`Experiment.prepare` returned (``None`` without one).
    previous : dict or None
        The manifest an earlier session left (before this session's was written).
    """

    folder: RunDir | None
    checkpoint: Path | None
    resumed: bool
    world: World
    fingerprint: dict[str, Any]
    accelerator: Any = None
    prepared: Any = None
    previous: dict[str, Any] | None = None

    @property
    def rd(self) -> RunDir:
        if self.folder is None:
            raise RuntimeError("this run keeps everything in memory (`run.out_dir` is None).")
        return self.folder

    @property
    def root(self) -> Path:
        return self.rd.root


def _check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"`out_dir` must be a folder; got the existing file {os.fspath(out)!r}.")
    probe = out
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ValueError(
            f"`out_dir` {os.fspath(out)!r} cannot be created: {os.fspath(probe)!r} is a file."
        )
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise PermissionError(
            13, "Permission denied (the run directory cannot be written)", os.fspath(probe)
        )


def _check_inputs(out: Path, inputs: Iterable[tuple[str, Any]]) -> None:
    """Refuse an output folder that is an input, lies inside one, or holds one."""
    from deltahall._validation import check_output_path

    pairs = [(n, p) for n, p in inputs if p is not None]
    check_output_path(out, "out_dir", inputs=pairs, allow_dir=True)
    ro = Path(os.path.realpath(out))
    for name, path in pairs:
        if ro in Path(os.path.realpath(path)).parents:
            raise BadInput(
                f"`{name}` {os.fspath(path)!r} lies inside `out_dir` {os.fspath(out)!r}, where outputs "
                "are written; choose another --out-dir."
            )


def read_json_object(path: Path, *, holder: str, hint: str) -> dict[str, Any]:
    """The JSON object in ``path`` (a run's ``manifest.json``, ``derived.json``).

    A file that is not UTF-8 JSON, or holds no object, is one :class:`BadInput` line:
    ``{holder} holds an unreadable manifest.json (why); {hint}``.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"{holder} holds an unreadable {path.name} ({exc}); {hint}") from None
    if not isinstance(data, dict):
        raise BadInput(f"{holder} holds a {path.name} that is not a JSON object; {hint}")
    return data


def _read_manifest(out: Path) -> dict[str, Any] | None:
    path = out / MANIFEST
    if not path.is_file():
        return None
    return read_json_object(
        path, holder=f"`out_dir` {os.fspath(out)!r}", hint="choose another --out-dir."
    )


@dataclass(frozen=True)
class RunDecision:
    """What :func:`check_run` decided, before anything is written (every process decides alike)."""

    config: Any
    out_dir: Path
    experiment: str
    checkpoint: Path | None
    resumed: bool
    fingerprint: dict[str, Any]
    manifest: dict[str, Any] | None


def check_run(
    config: Any,
    *,
    checkpoints: str = "",
    experiment: str,
    quiet: bool = False,
    outputs: Iterable[str] = (),
    inputs: Iterable[tuple[str, Any]] = (),
    what: str = "run",
) -> RunDecision:
    """Decide whether ``config`` may run in its ``run.out_dir``; read-only (see the module docstring).

    :func:`execute` calls it before any expensive set-up (an ``Accelerator``, a model download),
    so that a refused run costs nothing and changes nothing.

    Parameters
    ----------
    outputs : iterable of str
        Names (relative to the run directory) whose presence means the folder holds a run, even
        without a ``manifest.json``.
    inputs : iterable of (name, path)
        The run's input paths: ``out_dir`` must be none of them, lie inside none of them, and
        hold none of them (outputs written there would overwrite an input).
    what : str
        What a run of this experiment is called in messages (``"run"``, ``"measurement"``).

    Raises
    ------
    ValueError
        ``out_dir`` is a file or holds a run and no resume was asked for; the run in it was
        started with other settings (each changed key named, ``old -> new``); or it holds a
        different experiment's run.
    FileNotFoundError
        An explicit ``resume_from_checkpoint`` folder does not hold a checkpoint.
    PermissionError
        The run directory cannot be written.
    """
    run: RunOptions = config.run
    if run.out_dir is None:
        raise ValueError("`out_dir` must be set; got None.")
    out = Path(run.out_dir)
    _check_inputs(out, inputs)  # an input named as the output is named as such
    _check_out_dir(out)
    fp = fingerprint(config)
    manifest = _read_manifest(out)
    ckpt_root = out / checkpoints if checkpoints else out
    resume = run.resume_from_checkpoint
    checkpoint: Path | None = None
    held = [n for n in outputs if (out / n).exists()]
    if manifest is not None and manifest.get("experiment") not in (None, experiment):
        raise ValueError(
            f"`out_dir` {os.fspath(out)!r} holds a {manifest.get('experiment')!r} run, not "
            f"{experiment!r}; choose another --out-dir."
        )
    if resume is None:
        if manifest is not None or held or list_checkpoints(ckpt_root):
            listed = f" ({', '.join(held)})" if held and manifest is None else ""
            raise ValueError(
                f"`out_dir` {os.fspath(out)!r} already holds a {what}{listed}; pass "
                "--resume-from-checkpoint latest to continue it, or choose another --out-dir."
            )
    else:
        if manifest is None and held:
            raise ValueError(
                f"`out_dir` {os.fspath(out)!r} holds {what} files ({', '.join(held)}) without a "
                f"readable {MANIFEST}, so its settings cannot be checked; choose another --out-dir."
            )
        if manifest is not None and not isinstance(manifest.get("fingerprint"), dict):
            raise ValueError(
                f"`out_dir` {os.fspath(out)!r} holds a {MANIFEST} without a run fingerprint (written "
                "by an older deltahall?), so its settings cannot be checked; choose another --out-dir."
            )
        if resume == "latest":
            if manifest is None and not list_checkpoints(ckpt_root):
                if not quiet:
                    logger.warning(
                        "no run in %s yet: --resume-from-checkpoint latest starts a fresh one there.",
                        out,
                    )
            else:
                ckpts = list_checkpoints(ckpt_root)
                checkpoint = ckpts[-1] if ckpts else None
        else:
            p = Path(resume)
            if not (p / "state.json").is_file():
                raise FileNotFoundError(
                    f"`resume_from_checkpoint` must be 'latest' or a checkpoint folder holding state.json; "
                    f"got {resume!r}" + (" (no such folder)." if not p.exists() else ".")
                )
            checkpoint = p
        if checkpoint is not None and resume != "latest":
            # An explicit checkpoint may come from another run directory: it must carry the
            # fingerprint of the run that wrote it, and that must be this config's.
            written_by = _checkpoint_fingerprint(checkpoint)
            if written_by is None:
                raise BadInput(
                    f"`resume_from_checkpoint` {resume!r} carries no run fingerprint (state.json "
                    "extra.fingerprint), so its settings cannot be checked; resume its own run with "
                    "--resume-from-checkpoint latest instead."
                )
            if written_by != fp:
                diff = changed_keys(written_by, fp)
                raise BadInput(
                    f"cannot resume from checkpoint {resume!r}: the run that wrote it differs in "
                    f"{len(diff)} key{'s' if len(diff) != 1 else ''}: "
                    + "; ".join(diff)
                    + ". Undo the change, or start a fresh run."
                )
        old = manifest.get("fingerprint") if manifest is not None else None
        if old is None and checkpoint is not None:
            old = _checkpoint_fingerprint(checkpoint)
        if old is not None and old != fp:
            diff = changed_keys(old, fp)
            raise BadInput(
                f"cannot resume the {what} in {os.fspath(out)!r}: its settings differ in "
                f"{len(diff)} key{'s' if len(diff) != 1 else ''}: "
                + "; ".join(diff)
                + ". Undo the change, or start a new run in another --out-dir."
            )
    if checkpoint is not None:
        verify_checkpoint(
            checkpoint
        )  # a truncated checkpoint is refused before anything is written
    resumed = resume is not None and (manifest is not None or checkpoint is not None)
    return RunDecision(
        config=config,
        out_dir=out,
        experiment=experiment,
        checkpoint=checkpoint,
        resumed=resumed,
        fingerprint=fp,
        manifest=manifest,
    )


def accept_run(
    decision: RunDecision, *, world: World = SINGLE, extra: Mapping[str, Any] | None = None
) -> OpenRun:
    """Write the manifest of an accepted run (main process only; the others wait at barriers)."""
    config, out, checkpoint, manifest = (
        decision.config,
        decision.out_dir,
        decision.checkpoint,
        decision.manifest,
    )
    world.barrier()
    if world.is_main:
        rd = RunDir(out)
        sessions = list(manifest.get("sessions", [])) if manifest is not None else []
        sessions.append(
            {
                "argv": sys.argv,
                "started_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "resumed_from": os.fspath(checkpoint) if checkpoint is not None else None,
                "world_size": world.size,
                "run": to_jsonable(config.run),
            }
        )
        seed = getattr(config, "seed", None)
        body = {
            "experiment": decision.experiment,
            "config": to_jsonable(config),
            "config_type": f"{type(config).__module__}.{type(config).__qualname__}",
            "fingerprint": decision.fingerprint,
            "seed": seed if isinstance(seed, int) else None,
            "world_size": world.size,
            "resumed_from": os.fspath(checkpoint) if checkpoint is not None else None,
            "sessions": sessions,
            "versions": package_versions(),
            "platform": platform.platform(),
            **to_jsonable(dict(extra or {})),
        }
        rd.write_json(MANIFEST, body)
    world.barrier()
    if not world.is_main:
        rd = RunDir(out)  # the folder exists now: nothing is created or written
    return OpenRun(
        folder=rd,
        checkpoint=checkpoint,
        resumed=decision.resumed,
        world=world,
        fingerprint=decision.fingerprint,
        previous=manifest,
    )


def open_run(
    config: Any,
    *,
    checkpoints: str = "",
    world: World = SINGLE,
    experiment: str,
    extra: Mapping[str, Any] | None = None,
) -> OpenRun:
    """:func:`check_run` then :func:`accept_run`: accept (or refuse) a run and write its manifest.

    The acceptance step of :func:`execute` on its own (for tests of the policy); entry points go
    through :func:`execute`, which a test enforces.

    Parameters
    ----------
    config : dataclass
        An experiment config with a :class:`RunOptions` field ``run`` whose ``out_dir`` is set.
    checkpoints : str
        The folder (relative to the run directory) holding ``checkpoint-{step}`` folders;
        ``""`` for the run directory itself.
    world : World
        The processes of this run; only the main one writes.
    experiment : str
        Name recorded in the manifest (``"coinflip"``, ``"t2i"``, ``"qa"``, ...).
    extra : mapping, optional
        More JSON-able entries for the manifest.

    Raises
    ------
    ValueError, FileNotFoundError, PermissionError
        As :func:`check_run`.
    """
    decision = check_run(
        config, checkpoints=checkpoints, experiment=experiment, quiet=not world.is_main
    )
    return accept_run(decision, world=world, extra=extra)


def _checkpoint_fingerprint(ckpt: Path) -> dict[str, Any] | None:
    fp = read_state(ckpt).get("extra", {}).get("fingerprint")
    return fp if isinstance(fp, dict) else None


# --------------------------------------------------------------------------- the one runner
@dataclass(frozen=True)
class Outcome:
    """What a body returns when its caller wants more than ``result.json``'s body.

    Attributes
    ----------
    result : mapping or None
        The JSON-able body of ``result.json`` (``None``: the body wrote its results itself,
        e.g. a process that is not the main one).
    value : object
        What :func:`execute` returns (a ``...Result`` dataclass).
    """

    result: Mapping[str, Any] | None
    value: Any = None


@dataclass(frozen=True)
class Pending:
    """A run that passed :func:`check_run` and is not yet accepted (what the hooks before
    acceptance see)."""

    decision: RunDecision
    world: World
    accelerator: Any = None

    @property
    def previous(self) -> dict[str, Any] | None:
        """The manifest an earlier session left, if any."""
        return self.decision.manifest


@dataclass(frozen=True)
class Experiment:
    """One experiment as :func:`execute` runs it: a name and a body, with optional hooks.

    Only ``name`` and ``body`` are needed; every hook defaults to doing nothing.

    Attributes
    ----------
    name : str
        Recorded in the manifest; a folder holding another experiment's run is refused.
    body : callable ``(config, OpenRun) -> Mapping | Outcome``
        The work. It returns ``result.json``'s body (or an :class:`Outcome`), which the main
        process writes atomically once the body has returned.
    checkpoints : str
        Folder (relative to the run directory) of the ``checkpoint-{step}`` folders; ``""``:
        the run directory itself.
    extra : str or None
        The pip extra the experiment needs (:data:`EXTRAS`), checked before anything else.
    preflight : callable ``(config) -> None``, optional
        Cheap checks before the folder is looked at (a device, a data spec, an optional
        package); raises to refuse.
    inputs : callable ``(config) -> iterable of (name, path)``, optional
        The run's input paths; the output folder must not hold or be one of them.
    outputs : tuple of str
        Names whose presence means a folder holds a run even without ``manifest.json``.
    accelerator : callable ``(config) -> Accelerator``, optional
        Built after the check and before acceptance; its processes become the run's world.
    prepare : callable ``(config, Pending) -> object``, optional
        Work after the check and before acceptance: read and validate inputs, load models,
        compare with the previous session's manifest; raises to refuse (nothing has been
        written by the lifecycle yet). The value is ``OpenRun.prepared``.
    manifest_extra : callable ``(config, Pending, prepared) -> Mapping``, optional
        More entries for ``manifest.json``.
    result_name : str
        The file the body's result is written to.
    what : str
        What a run is called in refusals (``"measurement"``).
    folder_optional : bool
        With ``config.run.out_dir`` unset the body runs in memory (``OpenRun.folder`` is
        ``None``, nothing is written); otherwise an unset ``out_dir`` is an error.
    """

    name: str
    body: Callable[[Any, OpenRun], Any]
    checkpoints: str = ""
    extra: str | None = None
    preflight: Callable[[Any], None] | None = None
    inputs: Callable[[Any], Iterable[tuple[str, Any]]] | None = None
    outputs: tuple[str, ...] = ()
    accelerator: Callable[[Any], Any] | None = None
    prepare: Callable[[Any, Pending], Any] | None = None
    manifest_extra: Callable[[Any, Pending, Any], Mapping[str, Any]] | None = None
    result_name: str = RESULT
    what: str = "run"
    folder_optional: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"`name` must be a non-empty string; got {self.name!r}.")
        if not callable(self.body):
            raise TypeError(f"`body` must be callable; got {type(self.body).__name__}.")
        if self.folder_optional and (self.prepare is not None or self.manifest_extra is not None):
            raise TypeError(
                f"experiment {self.name!r}: `prepare` and `manifest_extra` need a run folder, so "
                "`folder_optional` must be False."
            )


def execute(experiment: Experiment, config: Any) -> Any:
    """Run ``config`` as ``experiment``: the one entry of every command that writes a run folder.

    In order, and nothing is written before step 5:

    1. ``experiment.extra`` installed, ``experiment.preflight(config)`` passed;
    2. :func:`check_run`: the folder, the inputs, resume and fingerprint (read-only);
    3. torch threads set (``config.run.threads``; ``None`` leaves torch's count) for the rest;
    4. ``experiment.accelerator`` (its processes become the world), ``experiment.prepare``;
    5. :func:`accept_run`: the main process writes ``manifest.json`` (and removes the result file
       an earlier session left: a result file always means this session's body finished);
    6. ``experiment.body(config, opened)``;
    7. the main process writes the body's result to ``experiment.result_name`` atomically.

    Returns
    -------
    object
        The body's :attr:`Outcome.value`, or the mapping it returned.

    Raises
    ------
    ValueError, FileNotFoundError, PermissionError
        As :func:`check_run`, or from a hook, before anything is written.
    """
    if experiment.extra is not None:
        require_extra(experiment.extra)
    if experiment.preflight is not None:
        experiment.preflight(config)
    run: RunOptions = config.run
    in_memory = run.out_dir is None and experiment.folder_optional
    decision = None
    if not in_memory:
        decision = check_run(
            config,
            checkpoints=experiment.checkpoints,
            experiment=experiment.name,
            quiet=launched_world_size() > 1 and os.environ.get("RANK", "0") != "0",
            outputs=experiment.outputs,
            inputs=experiment.inputs(config) if experiment.inputs is not None else (),
            what=experiment.what,
        )
    threads = run.threads
    with torch_threads(threads) if threads is not None else contextlib.nullcontext():
        acc = experiment.accelerator(config) if experiment.accelerator is not None else None
        world = world_of(acc) if acc is not None else SINGLE
        if decision is None:
            opened = OpenRun(
                folder=None,
                checkpoint=None,
                resumed=False,
                world=world,
                fingerprint=fingerprint(config),
                accelerator=acc,
            )
            return _value(experiment.body(config, opened))
        pending = Pending(decision=decision, world=world, accelerator=acc)
        prepared = experiment.prepare(config, pending) if experiment.prepare is not None else None
        extra = (
            experiment.manifest_extra(config, pending, prepared)
            if experiment.manifest_extra is not None
            else None
        )
        opened = dataclasses.replace(
            accept_run(decision, world=world, extra=extra), accelerator=acc, prepared=prepared
        )
        if world.is_main:  # a result file always means: this session's body finished
            (opened.root / experiment.result_name).unlink(missing_ok=True)
        world.barrier()
        out = experiment.body(config, opened)
        result = out.result if isinstance(out, Outcome) else out
        if world.is_main and result is not None:
            opened.rd.write_json(experiment.result_name, result)  # temp file + rename
        return _value(out)


def _value(out: Any) -> Any:
    return out.value if isinstance(out, Outcome) else out


@dataclass(frozen=True)
class Job:
    """A config with a ``run`` for settings that live in a lower layer without one.

    ``settings`` is the lower layer's frozen config (a measurement's
    :class:`deltahall.measure.pipeline.MeasureConfig`, a theory check's config); its fields enter
    the fingerprint under their own names (``alpha: 0.1 -> 0.2``), except those it marks
    ``metadata={"resume": "free"}``.
    """

    settings: Any = field(metadata=FLAT)
    run: RunOptions = field(default_factory=RunOptions, metadata=RESUME_FREE)

    @property
    def seed(self) -> int | None:
        seed = getattr(self.settings, "seed", None)
        return seed if isinstance(seed, int) else None
