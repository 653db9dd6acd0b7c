"""Imports go one way: every ``deltahall`` import points down the layer order, and none loops.

The layers, top to bottom (an import may point to its own layer or any layer below)::

    7  cli                         the command line; the library never imports it
    6  experiments                 runs, run directories, report sections
    5  measure                     the measurement instrument
    4  plotting                    figures from data it is given; never reads run directories
    3  models | detectors | theory registry + embedders | fitted estimators | pure numpy/scipy math
    2  io | stats                  atomic writes, run directories, the HTML report | intervals and tests
    1  _validation                 argument checks and error types
    0  deltahall (the root)        ``deltahall/__init__.py``: ``__version__`` only

``models``, ``detectors`` and ``theory`` share level 3 and are *siblings*: none of them imports
another (today detectors fit mixtures on arrays without using :mod:`deltahall.theory`, and the
theory never needs a fitted detector). A sibling edge is refused like an upward one; to allow one,
add it to :data:`SIBLING_EDGES` with the reason, so the exception is a decision, not an accident.

The root package is level 0 so any layer may import ``deltahall.__version__``; the price is that
``deltahall/__init__.py`` imports nothing of the package (which also keeps ``import deltahall``
light). ``deltahall/__main__.py`` sits above ``cli`` and nothing may import it.

Every import counts: at module level and inside functions (a lazy import is still a dependency),
``import importlib; importlib.import_module("deltahall.x")`` with a literal name included. Imports
under ``if TYPE_CHECKING:`` are skipped: they never run. Relative imports are resolved against the
importing module's package.

A second test refuses import cycles between modules (lazy imports included), e.g. the former
``plotting/qa.py`` <-> ``experiments/qa/results.py`` and ``qa/standin.py`` <-> ``qa/truthfulqa.py``.
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
    "__main__": 8,
    "cli": 7,
    "experiments": 6,
    "measure": 5,
    "plotting": 4,
    "models": 3,
    "detectors": 3,
    "theory": 3,
    "io": 2,
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
    """``"__main__ -> cli -> ... -> models | detectors | theory -> io -> _validation"``."""
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
