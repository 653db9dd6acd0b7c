"""Imports go one way: every ``deltahall`` import points down the layer order, and none loops.

The layers, top to bottom (an import may point to its own layer or any layer below)::

    9  cli                   the command line; the library never imports it
    8  experiments           one package per experiment, the run lifecycle, the main job
    7  measure               the measurement instrument
    6  plotting              figures from data it is given; never reads files
    5  models | detectors    registry + embedders | fitted estimators (diagnostics use the theory)
    4  theory                pure numpy/scipy math of the paper
    3  io                    atomic writes, run directories, strict JSON, the HTML report
    2  stats | _registry     intervals and tests | the one Registry type
    1  _validation           argument checks and error types
    0  deltahall (the root)  ``deltahall/__init__.py``: ``__version__`` only

``models`` and ``detectors`` share level 5 and are *siblings*: neither imports the other (an
embedder is not an estimator, and a detector takes arrays, whatever made them). ``stats`` and
``_registry`` are siblings at level 2 for the same reason. A sibling edge is refused like an
upward one; to allow one, add it to :data:`SIBLING_EDGES` with the reason, so the exception is a
decision, not an accident. ``theory`` sits below ``detectors``: the detector diagnostics score
flags against the theory's Gaussian HDR instead of carrying their own copy of it.

The root package is level 0 so any layer may import ``deltahall.__version__``; the price is that
``deltahall/__init__.py`` imports nothing of the package (which also keeps ``import deltahall``
light). ``deltahall/__main__.py`` sits above ``cli`` and nothing may import it.

Every import counts: at module level and inside functions (a lazy import is still a dependency),
``import importlib; importlib.import_module("deltahall.x")`` with a literal name included. Imports
under ``if TYPE_CHECKING:`` are skipped: they never run. Relative imports are resolved against the
importing module's package.

A second test refuses import cycles between modules (lazy imports included), e.g. the former
``plotting/qa.py`` <-> ``experiments/qa/results.py`` and ``qa/standin.py`` <-> ``qa/truthfulqa.py``.

Inside ``experiments`` (:func:`test_experiment_packages_do_not_import_each_other`): an experiment
package (``experiments/<pkg>/``) imports its own modules and the lifecycle modules
(:data:`LIFECYCLE`: ``_run``, ``_checkpoint``, ``_config``, ``_derived``) and nothing of another experiment
package; the lifecycle imports no experiment package; only the composers (:data:`COMPOSERS`:
``main_job``, which runs every experiment, ``theory_checks``, the theory commands, and
``theory_report``, the main job's theory step) import packages, and nothing under
``experiments`` imports a composer but the main job, which runs the steps.

Run folders (:func:`test_only_results_modules_read_run_folders`): in ``experiments`` and ``cli``
a call that reads a file (:data:`FILE_READS`) may appear only in an experiment's results module
(``experiments/<pkg>/results.py``) or in a module of :data:`FILE_READERS`, each with its reason:
the lifecycle and resume (a run reading its own state back to continue it), caches (read back and
checked against their key) and inputs (files the user names, not run folders). A report module
gets its data from its results module; ``plotting`` reads nothing at all.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import deltahall

PACKAGE = "deltahall"
ROOT = Path(deltahall.__file__).resolve().parent

#: Level of each top-level name under ``deltahall``; the root package itself is level 0.
LAYERS: dict[str, int] = {
    "__main__": 10,
    "cli": 9,
    "experiments": 8,
    "measure": 7,
    "plotting": 6,
    "models": 5,
    "detectors": 5,
    "theory": 4,
    "io": 3,
    "stats": 2,
    "_registry": 2,
    "_validation": 1,
}
#: Allowed imports between different layers of the same level, as (importer, imported).
SIBLING_EDGES: frozenset[tuple[str, str]] = frozenset()
#: Folders under ``deltahall/`` that hold data, not code.
DATA_DIRS = frozenset({"data"})


class Edge(NamedTuple):
    """One ``deltahall`` import: ``importer`` (module) at ``path:line`` imports ``imported``."""

    path: Path
    line: int
    importer: str
    imported: str

    def __str__(self) -> str:
        return (
            f"{self.path.relative_to(ROOT.parent)}:{self.line} {self.importer} -> {self.imported}"
        )


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _nodes(node: ast.AST) -> Iterator[ast.AST]:
    """Every node below ``node`` except the bodies of ``if TYPE_CHECKING:`` (their ``else`` runs)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.orelse:
                yield stmt
                yield from _nodes(stmt)
            continue
        yield child
        yield from _nodes(child)


def _is_import_module_call(node: ast.AST) -> bool:
    if (
        not isinstance(node, ast.Call)
        or not node.args
        or not isinstance(node.args[0], ast.Constant)
    ):
        return False
    f = node.func
    return (isinstance(f, ast.Attribute) and f.attr == "import_module") or (
        isinstance(f, ast.Name) and f.id in ("import_module", "__import__")
    )


def parse_imports(text: str, path: Path, modules: dict[str, Path]) -> list[Edge]:
    """The ``deltahall`` imports in ``text``, the source of the file ``path`` under ``deltahall/``.

    ``from a import b`` names ``a.b`` when that is a module, else ``a``.
    """
    importer = module_name(path)
    package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
    tree = ast.parse(text, filename=str(path))
    out: list[Edge] = []
    for node in _nodes(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names
            ]
        elif isinstance(node, ast.Call) and _is_import_module_call(node):
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                targets = [arg.value]
        for t in dict.fromkeys(targets):
            if t == PACKAGE or t.startswith(PACKAGE + "."):
                out.append(Edge(path, getattr(node, "lineno", 0), importer, t))
    return out


def imports_of(path: Path, modules: dict[str, Path]) -> list[Edge]:
    return parse_imports(path.read_text(encoding="utf-8"), path, modules)


def all_edges() -> list[Edge]:
    modules = source_modules()
    return [e for p in modules.values() for e in imports_of(p, modules)]


def layer_of(module: str) -> str:
    """``deltahall.experiments.qa.results`` -> ``experiments``; the root package -> ``deltahall``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] != "__version__" else PACKAGE


def level_of(layer: str) -> int:
    return 0 if layer == PACKAGE else LAYERS[layer]


def layer_order() -> str:
    """``"__main__ -> cli -> ... -> models | detectors -> theory -> io -> ... -> _validation"``."""
    levels = sorted(set(LAYERS.values()), reverse=True)
    return " -> ".join(" | ".join(k for k in LAYERS if LAYERS[k] == lv) for lv in levels)


def test_every_top_level_name_has_a_layer() -> None:
    names = {
        p.stem if p.is_file() else p.name
        for p in ROOT.iterdir()
        if (p.is_file() and p.suffix == ".py")
        or (p.is_dir() and not p.name.startswith((".", "__")))
    }
    unknown = sorted(names - set(LAYERS) - DATA_DIRS - {"__init__"})
    assert not unknown, f"place these in LAYERS (tests/test_layers.py) before using them: {unknown}"


def test_the_scanner_sees_lazy_imports_and_skips_type_checking() -> None:
    # A scanner that missed function-level imports would pass any tree: check it on known text,
    # parsed as if it were deltahall/plotting/_probe.py (nothing is written into the package).
    text = (
        "from typing import TYPE_CHECKING\n"
        "import deltahall.io\n"
        "if TYPE_CHECKING:\n    from deltahall.cli import main\n"
        "else:\n    from deltahall import _validation\n"
        "def f():\n    from deltahall.experiments.qa import results\n"
        "    import importlib\n    importlib.import_module('deltahall.cli.main')\n"
        "from . import theory\n"
        "import numpy\n"
    )
    edges = parse_imports(text, ROOT / "plotting" / "_probe.py", source_modules())
    assert [(e.line, e.imported) for e in edges] == [
        (2, "deltahall.io"),
        (6, "deltahall._validation"),
        (8, "deltahall.experiments.qa.results"),
        (10, "deltahall.cli.main"),
        (11, "deltahall.plotting.theory"),
    ]
    assert [layer_of(e.imported) for e in edges] == [
        "io",
        "_validation",
        "experiments",
        "cli",
        "plotting",
    ]
    assert layer_of("deltahall.__version__") == layer_of("deltahall") == "deltahall"


def test_imports_point_down_the_layers() -> None:
    bad = []
    for e in all_edges():
        src, dst = layer_of(e.importer), layer_of(e.imported)
        if src == dst:
            continue
        if e.imported.startswith(f"{PACKAGE}.__main__"):
            bad.append(f"{e}  (nothing imports __main__)")
        elif src == PACKAGE:
            bad.append(f"{e}  (deltahall/__init__.py imports nothing of the package)")
        elif level_of(dst) > level_of(src):
            bad.append(f"{e}  ({src} is below {dst})")
        elif level_of(dst) == level_of(src) and (src, dst) not in SIBLING_EDGES:
            bad.append(f"{e}  ({src} and {dst} are siblings)")
    assert not bad, f"imports against the layer order {layer_order()}:\n" + "\n".join(bad)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_cycle_finder_finds_a_loop_and_only_loops() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set(), "c": {"b"}}) == []


def test_no_import_cycles() -> None:
    modules = source_modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    where: dict[tuple[str, str], Edge] = {}
    for e in all_edges():
        target = e.imported
        while target not in modules and "." in target:  # deltahall.__version__ -> deltahall
            target = target.rpartition(".")[0]
        if target != e.importer and target in modules:
            graph[e.importer].add(target)
            where.setdefault((e.importer, target), e)
    loops = _cycles(graph)
    lines = []
    for comp in loops:
        members = set(comp)
        lines.append("cycle: " + ", ".join(comp))
        lines += [f"  {where[(a, b)]}" for a in comp for b in sorted(graph[a] & members)]
    assert not loops, "import cycles (lazy imports included):\n" + "\n".join(lines)


#: Calls that read files; plotting modules draw from data they are given and make none of them.
_READS = frozenset(
    {
        "open",
        "read_csv",
        "read_json",
        "read_text",
        "read_bytes",
        "load",
        "loadtxt",
        "genfromtxt",
        "read_metrics",
        "read_losses",
        "read_scores",
        "glob",
        "rglob",
        "iterdir",
    }
)


def test_plotting_reads_no_files() -> None:
    bad = []
    for path in sorted((ROOT / "plotting").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Call):
                f = node.func
                name = (
                    f.id
                    if isinstance(f, ast.Name)
                    else f.attr
                    if isinstance(f, ast.Attribute)
                    else ""
                )
                if name in _READS:
                    bad.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} {name}()")
    assert not bad, (
        "plotting modules must draw from data they are given, not read files:\n" + "\n".join(bad)
    )


def test_detector_diagnostics_take_the_truth_from_the_theory() -> None:
    # The order is a decision: theory below detectors, so the diagnostics' true HDR is the
    # theory's (one home for the Gaussian HDR), not a copy. An edge that disappears fails here.
    assert level_of("theory") < level_of("detectors") == level_of("models")
    modules = source_modules()
    edges = imports_of(ROOT / "detectors" / "diagnostics.py", modules)
    assert any(layer_of(e.imported) == "theory" for e in edges), [str(e) for e in edges]


# ----------------------------------------------------------------------------- experiments

EXPERIMENTS = f"{PACKAGE}.experiments"
#: Modules directly under ``experiments/`` that every experiment package may import: the run
#: lifecycle. They import no experiment package (the lifecycle must not depend on one experiment).
LIFECYCLE = frozenset({"_run", "_checkpoint", "_config", "_derived"})
#: Modules directly under ``experiments/`` that compose experiment packages, with the reason.
#: Nothing under ``experiments/`` imports a composer but ``main_job`` (the CLI does).
COMPOSERS: dict[str, str] = {
    "main_job": "runs every experiment's step and assembles the one report",
    "theory_checks": "the theory commands: witnesses, one bound, and the bound_sweep package",
    "theory_report": "the main job's theory step: witnesses, the paper's cases, bound_sweep",
}


def _experiment_part(module: str) -> tuple[str, str] | None:
    """``("package", "qa")`` for ``deltahall.experiments.qa.results``, ``("shared", "_run")`` for
    ``deltahall.experiments._run``, ``("root", "")`` for ``deltahall.experiments``; None outside."""
    if module == EXPERIMENTS:
        return ("root", "")
    if not module.startswith(EXPERIMENTS + "."):
        return None
    head = module[len(EXPERIMENTS) + 1 :].split(".")[0]
    if (ROOT / "experiments" / head).is_dir():
        return ("package", head)
    return ("shared", head)


def experiment_edge_problems(edges: list[Edge]) -> list[str]:
    """Edges inside ``experiments`` that break the package rule (module notes), with why."""
    bad = []
    for e in edges:
        src, dst = _experiment_part(e.importer), _experiment_part(e.imported)
        if src is None or dst is None or dst[0] == "root" or src == dst:
            continue
        if dst[0] == "shared" and dst[1] not in LIFECYCLE | set(COMPOSERS):
            bad.append(f"{e}  ({dst[1]} is neither lifecycle nor a composer: place it)")
        elif dst[0] == "shared" and dst[1] in COMPOSERS and src[1] != "main_job":
            bad.append(f"{e}  ({dst[1]} composes experiments; only the CLI imports it)")
        elif dst[0] == "package" and src[0] == "package":
            bad.append(f"{e}  (experiment {src[1]} imports experiment {dst[1]})")
        elif dst[0] == "package" and src[1] not in COMPOSERS:
            bad.append(f"{e}  ({src[1] or '__init__'} is shared: it imports no experiment package)")
    return bad


def test_the_experiment_rule_catches_each_kind_of_edge() -> None:
    # Known text, parsed as if it were experiments/coinflip/_probe.py and experiments/_run.py.
    modules = source_modules()
    probe = (
        "from deltahall.experiments.qa import results\n"  # another package: refused
        "from deltahall.experiments import main_job\n"  # a composer: refused
        "from deltahall.experiments._run import RunOptions\n"  # the lifecycle: fine
        "from deltahall.experiments.coinflip import config\n"  # its own package: fine
    )
    edges = parse_imports(probe, ROOT / "experiments" / "coinflip" / "_probe.py", modules)
    bad = experiment_edge_problems(edges)
    assert len(bad) == 2 and "imports experiment qa" in bad[0] and "composes" in bad[1], bad
    lifecycle = parse_imports(
        "from deltahall.experiments.t2i import config\n", ROOT / "experiments" / "_run.py", modules
    )
    assert "is shared" in experiment_edge_problems(lifecycle)[0]
    composer = parse_imports(
        "from deltahall.experiments.t2i import report\n",
        ROOT / "experiments" / "main_job.py",
        modules,
    )
    assert experiment_edge_problems(composer) == []
    other = parse_imports(
        "from deltahall.experiments import theory_report\n",
        ROOT / "experiments" / "theory_checks.py",
        modules,
    )
    assert "composes experiments" in experiment_edge_problems(other)[0]
    step = parse_imports(
        "from deltahall.experiments import theory_report\n",
        ROOT / "experiments" / "main_job.py",
        modules,
    )
    assert experiment_edge_problems(step) == []  # the main job runs every step


def test_experiment_packages_do_not_import_each_other() -> None:
    bad = experiment_edge_problems(all_edges())
    assert not bad, "imports against the experiment rule (tests/test_layers.py):\n" + "\n".join(bad)


# ----------------------------------------------------------------------------- run folders

#: Calls that read a file. ``json.loads`` of a string is not one (its ``read_text`` is).
FILE_READS = frozenset(
    {
        "open",
        "read_csv",
        "read_json",
        "read_run_json",
        "read_text",
        "read_bytes",
        "load",
        "loadtxt",
        "genfromtxt",
        "load_file",
        "safe_open",
        "read_jsonl",
        "iter_jsonl",
    }
)
#: Modules under ``experiments`` and ``cli`` that read files although they are no results module,
#: with the reason. Reading a run's results back for a report or a table belongs in
#: ``experiments/<pkg>/results.py``; a module added here needs one of these reasons.
FILE_READERS: dict[str, str] = {
    # the lifecycle and resume: a run reads its own state back to continue it
    "experiments._run": "lifecycle: the manifest of the run it accepts or resumes",
    "experiments._checkpoint": "lifecycle: a checkpoint's weights and state, to resume",
    "experiments.main_job": "lifecycle: its own manifest and summary, to say which steps it reused",
    "experiments.modes.pipeline": "resume: the run's own timing so far",
    "experiments.modes.recursive": "resume: the generations' models this run saved",
    "experiments.qa.arms": "resume: the finished seeds and their rows (the arms' progress)",
    "experiments.qa.finetune": "resume: adapter weights and loss rows of the checkpoint it continues",
    "experiments.qa.pipeline": "resume: each saved epoch's adapter weights, to generate with them",
    # results modules under another name
    "experiments.qa.arms_tables": "qa arms' results module: merges and tabulates its seed runs",
    # caches, read back and checked against their key
    "experiments.t2i.detector": "cache: the fitted detector, refused unless its spec matches",
    "experiments.t2i.tiny": "cache: the tiny model's marker, refused unless its spec matches",
    # inputs the user names, not run folders
    "experiments.qa.dataset": "input: the question file",
    "experiments.qa.generate": "input: a generated-answers JSONL",
    "experiments.qa.truthfulqa": "input: the TruthfulQA file",
    "experiments.t2i.data": "input: reference images",
    "cli.config_args": "input: the --config file",
    "cli.embed": "input: images and JSONL to embed",
    "cli.hcdr": "input: arrays and detector files",
    # output: a command prints a file it has just written
    "cli.qa": "output: `qa intervals` prints the table1_ci.md it has just written",
}


def _is_results_module(rel: str) -> bool:
    parts = rel.split(".")
    return len(parts) == 3 and parts[0] == "experiments" and parts[2] == "results"


def file_reads(text: str, path: Path) -> list[str]:
    """``path:line name()`` for every call of a :data:`FILE_READS` name in ``text``."""
    out = []
    for node in ast.walk(ast.parse(text, filename=str(path))):
        if isinstance(node, ast.Call):
            f = node.func
            name = (
                f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            )
            if name in FILE_READS:
                out.append((node.lineno, f"{path.relative_to(ROOT.parent)}:{node.lineno} {name}()"))
    return [hit for _, hit in sorted(out)]


def test_the_reader_scan_sees_run_file_reads() -> None:
    text = (
        "import json\n"
        "m = json.loads((root / 'manifest.json').read_text(encoding='utf-8'))\n"
        "rows = RunDir(root).read_json('result.json')\n"
        "x = json.loads('{}')\n"
    )
    hits = file_reads(text, ROOT / "experiments" / "qa" / "report.py")
    assert [h.split(" ")[-1] for h in hits] == ["read_text()", "read_json()"], hits
    assert _is_results_module("experiments.qa.results")
    assert not _is_results_module("experiments.qa.report")


def test_only_results_modules_read_run_folders() -> None:
    bad = []
    for sub in ("experiments", "cli"):
        for path in sorted((ROOT / sub).rglob("*.py")):
            rel = module_name(path).removeprefix(PACKAGE + ".")
            if _is_results_module(rel) or rel in FILE_READERS:
                continue
            bad += file_reads(path.read_text(encoding="utf-8"), path)
    assert not bad, (
        "files read outside a results module (get the data from experiments/<pkg>/results.py, "
        "or add the module to FILE_READERS with its reason):\n" + "\n".join(bad)
    )


def test_every_listed_reader_still_reads() -> None:
    # A stale entry would let a future read through unseen: each listed module must exist and read.
    stale = []
    for rel in sorted(FILE_READERS):
        path = ROOT.joinpath(*rel.split(".")).with_suffix(".py")
        if not path.is_file() or not file_reads(path.read_text(encoding="utf-8"), path):
            stale.append(rel)
    assert not stale, f"FILE_READERS entries that read nothing (remove them): {stale}"


#: Folders at the repository root that are not part of the project (caches, builds, git).
_NOT_PROJECT = frozenset(
    {".git", ".benchmarks", ".hypothesis", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
    | {".venv", "build", "dist", "src"}
)


def test_readme_layout_names_every_folder() -> None:
    # Issue 13 item 6: the layout block of README.md names every folder of the package and the repo.
    repo = ROOT.parent.parent
    readme = repo / "README.md"
    if not readme.is_file():  # an installed wheel has no README beside it
        return
    text = readme.read_text(encoding="utf-8")
    start = text.index("src/deltahall/          layers")
    block = text[start : text.index("```", start)]
    folders = {p.name for p in ROOT.rglob("*") if p.is_dir() and p.name != "__pycache__"}
    folders |= {
        p.name
        for p in repo.iterdir()
        if p.is_dir() and p.name not in _NOT_PROJECT and not p.name.endswith(".egg-info")
    }
    missing = sorted(f for f in folders if f"{f}/" not in block)
    assert not missing, f"README.md's layout block does not name these folders: {missing}"
