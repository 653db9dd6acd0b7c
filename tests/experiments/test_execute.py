"""The one runner, ``_run.execute``: its order, a refused run that costs and writes nothing, an
atomic result file, and every entry point that writes a folder going through it."""

from __future__ import annotations

import ast
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import deltahall
from deltahall.experiments import _run
from deltahall.experiments._run import (
    Experiment,
    Job,
    OpenRun,
    Outcome,
    Pending,
    RunOptions,
    execute,
    free,
)

SRC = Path(deltahall.__file__).resolve().parent


@dataclass(frozen=True)
class Cfg:
    lr: float = 0.1
    steps: int = field(default=3, metadata=free("may grow on resume"))
    run: RunOptions = field(default_factory=RunOptions, metadata={"resume": "free"})


def _cfg(tmp_path: Path, **run: Any) -> Cfg:
    return Cfg(run=RunOptions(out_dir=tmp_path / "r", **run))


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _recording(events: list[str], **hooks: Any) -> Experiment:
    """A demo experiment that records each stage it reaches."""

    def body(config: Cfg, opened: OpenRun) -> dict[str, Any]:
        events.append("body")
        assert (opened.root / "manifest.json").is_file()  # accepted before the body runs
        assert not (opened.root / "result.json").exists()
        return {"lr": config.lr, "resumed": opened.resumed}

    def accelerator(config: Cfg) -> None:
        events.append("accelerator")

    def prepare(config: Cfg, pending: Pending) -> str:
        events.append("prepare")
        assert not (Path(config.run.out_dir) / "manifest.json").exists() or pending.decision.resumed
        return "prepared"

    def preflight(config: Cfg) -> None:
        events.append("preflight")

    return Experiment(
        name="demo",
        body=hooks.pop("body", body),
        preflight=preflight,
        prepare=hooks.pop("prepare", prepare),
        manifest_extra=lambda config, pending, prepared: {"prepared": prepared},
        **hooks,
    )


# --------------------------------------------------------------------------- the lifecycle
def test_execute_runs_the_stages_in_order_and_writes_result_json(tmp_path: Path) -> None:
    events: list[str] = []
    out = execute(_recording(events), _cfg(tmp_path))
    assert events == ["preflight", "prepare", "body"]
    assert out == {"lr": 0.1, "resumed": False}
    root = tmp_path / "r"
    assert json.loads((root / "result.json").read_text()) == out
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["experiment"] == "demo" and manifest["prepared"] == "prepared"
    assert manifest["fingerprint"] == {"lr": 0.1}


def test_a_refused_run_writes_nothing_and_does_no_work(tmp_path: Path) -> None:
    events: list[str] = []
    execute(_recording(events), _cfg(tmp_path))
    before = _snapshot(tmp_path / "r")
    events.clear()
    with pytest.raises(ValueError, match="already holds a run; pass --resume-from-checkpoint"):
        execute(_recording(events), _cfg(tmp_path))
    with pytest.raises(ValueError, match=r"differ in 1 key: lr: 0.1 -> 0.5\."):
        execute(
            _recording(events),
            dataclasses.replace(_cfg(tmp_path, resume_from_checkpoint="latest"), lr=0.5),
        )
    assert events == ["preflight", "preflight"]  # no accelerator, no prepare, no body
    assert _snapshot(tmp_path / "r") == before


def test_a_refusal_in_prepare_leaves_the_folder_as_it_was(tmp_path: Path) -> None:
    def prepare(config: Cfg, pending: Pending) -> None:
        raise ValueError("`data` must hold at least 2 rows; got 1.")

    (tmp_path / "r").mkdir()
    with pytest.raises(ValueError, match="at least 2 rows"):
        execute(_recording([], prepare=prepare), _cfg(tmp_path))
    assert _snapshot(tmp_path / "r") == {}


def test_resume_with_the_same_settings_is_accepted_and_a_free_field_may_change(
    tmp_path: Path,
) -> None:
    execute(_recording([]), _cfg(tmp_path))
    out = execute(
        _recording([]),
        dataclasses.replace(_cfg(tmp_path, resume_from_checkpoint="latest"), steps=9),
    )
    assert out == {"lr": 0.1, "resumed": True}
    sessions = json.loads((tmp_path / "r" / "manifest.json").read_text())["sessions"]
    assert len(sessions) == 2


def test_result_json_is_written_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import deltahall.io.atomic as atomic

    real_replace = atomic.os.replace

    def failing_replace(src: str, dst: str) -> None:
        if Path(dst).name == "result.json":
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", failing_replace)
    with pytest.raises(OSError, match="result.json"):
        execute(_recording([]), _cfg(tmp_path))
    names = sorted(p.name for p in (tmp_path / "r").iterdir())
    assert names == ["manifest.json"]  # no result.json, no half file, no temp file left


def test_a_body_that_fails_leaves_no_result(tmp_path: Path) -> None:
    def body(config: Cfg, opened: OpenRun) -> dict[str, Any]:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        execute(_recording([], body=body), _cfg(tmp_path))
    assert not (tmp_path / "r" / "result.json").exists()


def test_outcome_value_is_returned_and_result_name_is_used(tmp_path: Path) -> None:
    def body(config: Cfg, opened: OpenRun) -> Outcome:
        return Outcome(result={"rate": 0.5}, value="the rich result")

    ex = Experiment(name="demo", body=body, result_name="measure.json")
    assert execute(ex, _cfg(tmp_path)) == "the rich result"
    assert json.loads((tmp_path / "r" / "measure.json").read_text()) == {"rate": 0.5}
    assert not (tmp_path / "r" / "result.json").exists()


def test_a_folder_optional_experiment_runs_in_memory(tmp_path: Path) -> None:
    def body(config: Cfg, opened: OpenRun) -> Outcome:
        assert opened.folder is None
        with pytest.raises(RuntimeError, match="in memory"):
            _ = opened.rd
        return Outcome(result=None, value=42)

    assert execute(Experiment(name="demo", body=body, folder_optional=True), Cfg()) == 42
    with pytest.raises(ValueError, match="`out_dir` must be set"):
        execute(Experiment(name="demo", body=body), Cfg())


def test_outputs_without_a_manifest_mean_the_folder_holds_a_run(tmp_path: Path) -> None:
    root = tmp_path / "r"
    root.mkdir()
    (root / "measure.json").write_text("{}")
    ex = Experiment(
        name="demo", body=lambda c, o: {}, outputs=("measure.json",), what="measurement"
    )
    with pytest.raises(ValueError, match=r"already holds a measurement \(measure.json\)"):
        execute(ex, _cfg(tmp_path))
    with pytest.raises(ValueError, match="without a readable manifest.json"):
        execute(ex, _cfg(tmp_path, resume_from_checkpoint="latest"))
    assert _snapshot(root) == {"measure.json": b"{}"}


def test_inputs_inside_or_around_the_output_folder_are_refused(tmp_path: Path) -> None:
    data = tmp_path / "r" / "data.npy"
    data.parent.mkdir()
    data.write_bytes(b"x")
    ex = Experiment(name="demo", body=lambda c, o: {}, inputs=lambda c: [("reference", data)])
    with pytest.raises(ValueError, match="`reference` .* lies inside `out_dir`"):
        execute(ex, _cfg(tmp_path))
    outer = Experiment(name="demo", body=lambda c, o: {}, inputs=lambda c: [("images", tmp_path)])
    with pytest.raises(ValueError, match="must not be an input"):
        execute(outer, _cfg(tmp_path))
    assert _snapshot(tmp_path / "r") == {"data.npy": b"x"}


def test_a_job_fingerprints_its_settings_by_their_own_names(tmp_path: Path) -> None:
    @dataclass(frozen=True)
    class Settings:
        alpha: float = 0.1
        out_dir: Path = field(default=Path("x"), metadata={"resume": "free"})

    job = Job(settings=Settings(), run=RunOptions(out_dir=tmp_path / "r"))
    assert _run.fingerprint(job) == {"alpha": 0.1}
    execute(Experiment(name="job", body=lambda c, o: {}), job)
    again = Job(
        settings=Settings(alpha=0.2),
        run=RunOptions(out_dir=tmp_path / "r", resume_from_checkpoint="latest"),
    )
    with pytest.raises(ValueError, match=r"alpha: 0.1 -> 0.2"):
        execute(Experiment(name="job", body=lambda c, o: {}), again)


# --------------------------------------------------------------------------- every entry point
def _calls(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            names.add(
                f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            )
        if isinstance(node, ast.ImportFrom) and node.module == "deltahall.experiments._run":
            names.update(f"import:{a.name}" for a in node.names)
    return names


#: Calls that write, copy or move a file (``open`` only with a writing mode).
_FILE_WRITES = frozenset(
    {
        "write_json",
        "write_text",
        "write_bytes",
        "write_csv",
        "atomic_write_text",
        "atomic_write_bytes",
        "atomic_dir",
        "open",
        "dump",
        "replace",
        "rename",
        "copy",
        "copy2",
        "copyfile",
        "move",
        "touch",
    }
)


def _is_manifest_path(node: ast.AST, bound: frozenset[str] = frozenset()) -> bool:
    """Whether ``node`` is a path to a manifest: ``"manifest.json"`` (or a path string ending in
    it), a name ``MANIFEST``, ``x / <such>``, ``Path(<such>)``/``os.path.join(..., <such>)``/
    ``rd.path(<such>)``, or a name in ``bound`` (assigned such a path)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.replace("\\", "/").rsplit("/", 1)[-1] == "manifest.json"
    if isinstance(node, ast.Name):
        return node.id == "MANIFEST" or node.id in bound
    if isinstance(node, ast.Attribute):
        return node.attr == "MANIFEST"
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        return _is_manifest_path(node.right, bound)
    if isinstance(node, ast.Call):
        f = node.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
        if name in {"Path", "PurePath", "join", "joinpath", "path", "fspath", "str"}:
            return any(_is_manifest_path(a, bound) for a in node.args)
    return False


def manifest_writes(text: str) -> list[int]:
    """Lines of ``text`` that write, copy or move onto a file named ``manifest.json`` (directly,
    or through a name bound to such a path)."""
    tree = ast.parse(text)
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and _is_manifest_path(node.value):
            bound |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, (ast.AnnAssign, ast.NamedExpr)) and node.value is not None:
            if _is_manifest_path(node.value) and isinstance(node.target, ast.Name):
                bound.add(node.target.id)
    names = frozenset(bound)
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
        if name not in _FILE_WRITES:
            continue
        if name == "open":
            modes = [a.value for a in node.args[1:2] if isinstance(a, ast.Constant)]
            modes += [
                k.value.value
                for k in node.keywords
                if k.arg == "mode" and isinstance(k.value, ast.Constant)
            ]
            if not any(isinstance(m, str) and set(m) & set("wax+") for m in modes):
                continue
        parts = [*node.args, *(k.value for k in node.keywords)]
        if isinstance(f, ast.Attribute) and name not in {"replace", "rename"}:
            parts.append(f.value)  # (root / "manifest.json").write_text(...)
        if any(_is_manifest_path(p, names) for p in parts):
            lines.append(node.lineno)
    return sorted(lines)


def test_the_manifest_write_scan_can_fail() -> None:
    probe = (
        'rd.write_json("manifest.json", merged)\n'
        '(root / "manifest.json").write_text(text)\n'
        "atomic_write_text(out / MANIFEST, text)\n"
        'mp = Path(d) / "manifest.json"\n'
        "shutil.copy(src, mp)\n"
        'with open(root / "manifest.json", "w") as fh: fh.write(text)\n'
        'json.loads((root / "manifest.json").read_text())\n'  # a read: fine
        "with open(mp) as fh: json.load(fh)\n"  # a read: fine
        "tmp.replace(root / MANIFEST)\n"
        'cfg.replace(resume="latest" if (root / "manifest.json").is_file() else None)\n'  # fine
    )
    assert manifest_writes(probe) == [1, 2, 3, 5, 6, 9]


def test_no_module_but_the_runner_accepts_runs_itself() -> None:
    """``check_run``/``accept_run``/``open_run`` are the runner's internals: nothing else calls or
    imports them, and nothing else writes a manifest by hand (``RunDir.write_manifest``, or any
    write of a file named ``manifest.json``)."""
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path == SRC / "experiments" / "_run.py" or path.parent.name == "io":
            continue
        text = path.read_text(encoding="utf-8")
        used = _calls(ast.parse(text))
        bad = used & {
            "check_run",
            "accept_run",
            "open_run",
            "write_manifest",
            "import:check_run",
            "import:accept_run",
            "import:open_run",
        }
        bad |= {f"writes manifest.json at line {n}" for n in manifest_writes(text)}
        if bad:
            offenders.append(f"{path.relative_to(SRC)}: {sorted(bad)}")
    assert offenders == []


#: Every module holding an entry point that writes a run folder, and the name of its Experiment.
ENTRY_POINTS = {
    "experiments/coinflip/train.py": "EXPERIMENT",
    "experiments/coinflip/sweep.py": "SWEEP",
    "experiments/t2i/pipeline.py": "EXPERIMENT",
    "experiments/qa/pipeline.py": "EXPERIMENT",
    "experiments/qa/arms.py": "EXPERIMENT",
    "experiments/modes/pipeline.py": "EXPERIMENT",
    "experiments/main_job.py": "EXPERIMENT",
    "experiments/measure_run/__init__.py": "EXPERIMENT",
    "experiments/qa/intervals.py": "EXPERIMENT",
    "experiments/qa/arms_tables.py": "MERGE",
    "cli/theory.py": None,
}


@pytest.mark.parametrize("module", sorted(ENTRY_POINTS))
def test_every_entry_point_calls_execute(module: str) -> None:
    tree = ast.parse((SRC / module).read_text(encoding="utf-8"))
    assert "execute" in _calls(tree), f"{module} does not run through _run.execute"
    assert "write_manifest" not in _calls(tree), f"{module} writes a manifest itself"


@pytest.mark.parametrize(
    "module", sorted(m for m, name in ENTRY_POINTS.items() if name is not None)
)
def test_every_entry_point_declares_an_experiment(module: str) -> None:
    import importlib

    dotted = "deltahall." + module.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
    ex = getattr(importlib.import_module(dotted), ENTRY_POINTS[module])
    assert isinstance(ex, Experiment) and callable(ex.body)


class _Checked(Exception):
    """Raised by the patched ``check_run``: the entry point reached the runner's check."""


def _reaches_the_check(monkeypatch: pytest.MonkeyPatch, call: Any) -> Any:
    seen: list[Any] = []

    def check(config: Any, **kw: Any) -> Any:
        seen.append((config, kw["experiment"]))
        raise _Checked

    monkeypatch.setattr(_run, "check_run", check)
    try:
        call()  # the command line reports the unexpected exception and returns
    except _Checked:
        pass
    assert len(seen) == 1
    return seen[0]


def test_coinflip_run_and_sweep_reach_the_runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from deltahall.experiments.coinflip.config import CoinFlipConfig
    from deltahall.experiments.coinflip.sweep import SweepConfig, run_sweep
    from deltahall.experiments.coinflip.train import run

    cfg = dataclasses.replace(CoinFlipConfig(), run=RunOptions(out_dir=tmp_path / "c"))
    assert _reaches_the_check(monkeypatch, lambda: run(cfg))[1] == "coinflip"
    sweep = SweepConfig(ns=(2,), ms=(20,), rounds=1, run=RunOptions(out_dir=tmp_path / "s"))
    assert _reaches_the_check(monkeypatch, lambda: run_sweep(sweep))[1] == "coinflip-sweep"
    assert not (tmp_path / "c").exists() and not (tmp_path / "s").exists()


def test_modes_and_main_job_reach_the_runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from deltahall.experiments import main_job
    from deltahall.experiments.modes import ModesConfig, run

    cfg = dataclasses.replace(ModesConfig(), run=RunOptions(out_dir=tmp_path / "m"))
    assert _reaches_the_check(monkeypatch, lambda: run(cfg))[1] == "modes"
    job = main_job.MainJobConfig(out_dir=tmp_path / "j", progress=False)
    assert _reaches_the_check(monkeypatch, lambda: main_job.run(job))[1] == "main-job"
    assert not (tmp_path / "m").exists() and not (tmp_path / "j").exists()


def test_theory_commands_that_write_reach_the_runner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deltahall.cli.main import main

    argv = ["theory", "witness", "--theorem", "5.1", "--delta", "0.1", "--states", "2"]
    _reaches_the_check(monkeypatch, lambda: main([*argv, "--out-dir", str(tmp_path / "w")]))
    _reaches_the_check(
        monkeypatch, lambda: main(["theory", "figures", "--out-dir", str(tmp_path / "f")])
    )
    assert not (tmp_path / "w").exists() and not (tmp_path / "f").exists()


def test_theory_out_dir_is_refused_when_it_holds_a_run(tmp_path: Path, capsys) -> None:
    from deltahall.cli.main import main

    def argv(delta: str, *more: str) -> list[str]:
        head = ["theory", "witness", "--theorem", "5.1", "--states", "2", "--delta", delta]
        return [*head, "--out-dir", str(tmp_path / "w"), *more]

    assert main(argv("0.1")) == 0
    before = _snapshot(tmp_path / "w")
    capsys.readouterr()
    assert main(argv("0.1")) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(argv("0.2", "--resume-from-checkpoint", "latest")) == 2
    assert "delta: 0.1 -> 0.2" in capsys.readouterr().err
    assert _snapshot(tmp_path / "w") == before
    assert main(argv("0.1", "--resume-from-checkpoint", "latest")) == 0
    assert json.loads((tmp_path / "w" / "witness.json").read_text())["hallucinates"] is True


def test_an_experiment_is_checked_when_it_is_declared() -> None:
    with pytest.raises(ValueError, match="`name` must be a non-empty string"):
        Experiment(name="", body=lambda c, o: {})
    with pytest.raises(TypeError, match="`body` must be callable"):
        Experiment(name="x", body=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="need a run folder"):
        Experiment(name="x", body=lambda c, o: {}, prepare=lambda c, p: 1, folder_optional=True)


# --------------------------------------------------------------------------- derived writes
#: Calls that write into a run folder (files, figures, tables, a report) when made by the CLI.
_FOLDER_WRITES = frozenset(
    {
        "RunDir",
        "write_manifest",
        "write_json",
        "write_text",
        "write_bytes",
        "write_csv",
        "save_figure",
        "save_figures",
        "write_results",
        "summarise",
        "write",  # Report.write; sys.stdout/sys.stderr.write are not counted
    }
)
#: What a CLI function must call (or be handed to) for its writes: the two entries of the runner.
_RUNNER_CALLS = frozenset({"execute", "rewrite"})
#: CLI functions that still write a run folder without the runner, each with the reason; a
#: stale entry fails (remove it once the command goes through ``_derived.rewrite``).
PENDING_DERIVED: dict[str, str] = {}
#: Library functions the CLI calls to rebuild a run's derived files: each must call ``rewrite``.
REWRITERS = {"experiments/coinflip/report.py": ("write_sweep_report", "main_job_section")}


def _call_name(node: ast.Call) -> str:
    f = node.func
    if isinstance(f, ast.Attribute):
        if (
            f.attr == "write"
            and isinstance(f.value, ast.Attribute)
            and f.value.attr
            in (
                "stdout",
                "stderr",
            )
        ):
            return ""
        return f.attr
    return f.id if isinstance(f, ast.Name) else ""


def _own_calls(fn: ast.AST) -> list[ast.Call]:
    """Calls in ``fn``'s body, lambdas included, nested ``def``s not."""
    out: list[ast.Call] = []
    stack = list(ast.iter_child_nodes(fn))
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if isinstance(node, ast.Call):
            out.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return out


def unrunner_writes(text: str) -> list[str]:
    """``function: call`` for each folder write in ``text`` made outside the runner.

    A function's writes are through the runner when it calls ``execute``/``rewrite``, is nested
    in a function that does, or is handed by name to ``Experiment``/``execute``/``rewrite``.
    """
    tree = ast.parse(text)
    handed: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _call_name(node) in {"Experiment", *_RUNNER_CALLS}:
            for a in [*node.args, *(k.value for k in node.keywords)]:
                if isinstance(a, ast.Name):
                    handed.add(a.id)
    bad: list[str] = []

    def visit(node: ast.AST, safe: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                calls = _own_calls(child)
                ok = (
                    safe
                    or child.name in handed
                    or any(_call_name(c) in _RUNNER_CALLS for c in calls)
                )
                if not ok:
                    bad.extend(
                        f"{child.name}: {_call_name(c)}()"
                        for c in calls
                        if _call_name(c) in _FOLDER_WRITES
                    )
                visit(child, ok)
            else:
                visit(child, safe)

    visit(tree, False)
    return bad


def test_the_cli_write_scan_can_fail() -> None:
    probe = (
        "def _handle_table(args):\n"
        "    rows = rescore(args.run_dir)\n"
        "    write_results(args.run_dir, rows)\n"
        "def _handle_report(args):\n"
        "    Report('x').write(args.out)\n"
        "    sys.stdout.write('done')\n"
        "def _handle_ok(args):\n"
        "    def write(rd, manifest):\n"
        "        rd.write_csv('t.csv', [])\n"
        "    return rewrite(args.run_dir, experiment='qa', write=write, command='qa table')\n"
        "def _body(config, opened):\n"
        "    opened.rd.write_text('x', 'y')\n"
        "EXPERIMENT = Experiment(name='x', body=_body)\n"
    )
    assert unrunner_writes(probe) == ["_handle_table: write_results()", "_handle_report: write()"]


def test_every_cli_command_that_writes_a_run_folder_goes_through_the_runner() -> None:
    """A command writes into a run folder only through ``execute`` (a new run) or
    ``_derived.rewrite`` (derived files of an existing run)."""
    found: dict[str, list[str]] = {}
    for path in sorted((SRC / "cli").glob("*.py")):
        for hit in unrunner_writes(path.read_text(encoding="utf-8")):
            key = f"cli/{path.name}:{hit.split(':')[0]}"
            found.setdefault(key, []).append(hit)
    offenders = {k: v for k, v in found.items() if k not in PENDING_DERIVED}
    assert offenders == {}, "CLI writes outside execute/_derived.rewrite"
    stale = sorted(set(PENDING_DERIVED) - set(found))
    assert stale == [], (
        f"PENDING_DERIVED entries that go through the runner now (remove them): {stale}"
    )


@pytest.mark.parametrize("module", sorted(REWRITERS))
def test_library_rebuilds_go_through_rewrite(module: str) -> None:
    tree = ast.parse((SRC / module).read_text(encoding="utf-8"))
    fns = {n.name: n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    for name in REWRITERS[module]:
        assert "rewrite" in _calls(fns[name]), f"{module}:{name} does not call _derived.rewrite"
