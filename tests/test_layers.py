"""The layer rules and the import graph, read from the source (no subprocess per module).

Two graphs: *every* import statement (module level, inside functions, under TYPE_CHECKING), for the
no-circle rule and the rules that hold even for lazy imports; and the *eager* one (what importing a
module runs at once: module level, not in functions, not under TYPE_CHECKING, plus the packages a
dotted name passes through), for "starts without torch" rules. One subprocess checks that the eager
graph agrees with what Python really loads.
"""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from tests.helpers import ROOT

PACKAGE = ROOT / "tuitrain"


def _modules() -> dict[str, tuple[ast.Module, bool]]:
    """Module name -> (its syntax tree, whether it is a package's __init__)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (ast.parse(path.read_text(), filename=str(path)),
                                                                is_package)
    return found


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _statements(tree: ast.Module, eager: bool):
    """The import statements of a module: all of them, or only those that run when it is imported."""
    if not eager:
        yield from (n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)))
        return
    todo: list[ast.AST] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        elif isinstance(node, ast.If) and _is_type_checking(node):
            todo.extend(node.orelse)
        else:
            todo.extend(ast.iter_child_nodes(node))


def _targets(name: str, eager: bool) -> set[str]:
    """What ``name`` imports: tuitrain modules by full name, anything else by its top-level package."""
    tree, is_package = MODULES[name]
    package = name if is_package else name.rpartition(".")[0]  # what a relative import starts from
    dotted: set[str] = set()
    for node in _statements(tree, eager):
        if isinstance(node, ast.Import):
            dotted.update(alias.name for alias in node.names)
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            dotted.add(base)
            dotted.update(f"{base}.{alias.name}" for alias in node.names)
    found: set[str] = set()
    for target in dotted:
        if target.split(".")[0] != "tuitrain":
            found.add(target.split(".")[0])
            continue
        parts = target.split(".")
        # importing a.b.c runs a, a.b and a.b.c
        found.update(p for p in (".".join(parts[:i]) for i in range(1, len(parts) + 1)) if p in MODULES)
    found.discard(name)
    return found


def import_graph(eager: bool = False) -> dict[str, set[str]]:
    """Module -> what it imports (tuitrain modules and the top-level names of other packages)."""
    return {name: _targets(name, eager) for name in MODULES}


def closure(graph: dict[str, set[str]], start: str) -> set[str]:
    """Everything ``start`` can bring in, through tuitrain's own modules (the packages a dotted name
    passes through included). A package's __init__ counts with its eager imports only: its lazy ones
    (``tuitrain.fit`` and the like) run when a user asks for them, not when a submodule is imported."""
    eager = import_graph(eager=True)
    parts = start.split(".")
    todo = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        is_package = name in MODULES and MODULES[name][1]
        todo.extend((eager if is_package else graph).get(name, ()))
    return seen


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), or a module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


ENGINE_SIDE = ["engine", "steering", "task", "schedule", "monitor", "trainstate", "device", "evaluation", "window",
               "models", "data", "checkpoints", "config", "records", "session", "progress", "system"]
RUNDIR = sorted(name for name in MODULES if name.startswith("tuitrain.rundir"))
NO_TORCH = ["tuitrain.app", "tuitrain.backends", "tuitrain.compare_app", "tuitrain.control", "tuitrain.cli", "tuitrain.remote",
            "tuitrain.runstate", *sorted(name for name in MODULES if name.startswith("tuitrain.widgets"))]


def test_the_graphs_see_what_they_should():
    every, eager = import_graph(), import_graph(eager=True)
    assert "tuitrain.device" in every["tuitrain.backends"]  # imported inside a method
    assert "tuitrain.device" not in eager["tuitrain.backends"]
    assert "tuitrain.trainstate" in every["tuitrain.monitor"]  # under TYPE_CHECKING
    assert "torch" in every["tuitrain.engine"] and "textual" in every["tuitrain.app"]
    assert "tuitrain.rundir" in closure(eager, "tuitrain.rundir.files")  # a dotted import runs its parents
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circle_among_tuitrain_modules():
    def ancestors(name: str) -> set[str]:  # a submodule runs its packages first; that is no circle
        parts = name.split(".")
        return {".".join(parts[:i]) for i in range(1, len(parts))}

    graph = {name: {t for t in targets if t in MODULES} - ancestors(name) for name, targets in import_graph().items()}
    assert cycles(graph) == []


def test_the_engine_side_imports_no_engine():
    """Checkpoints, steering and the policies work on parts: the engine imports them, never back."""
    graph = import_graph()
    for name in ("checkpoints", "steering", "monitor", "schedule", "device", "trainstate", "evaluation", "task"):
        assert "tuitrain.engine" not in graph[f"tuitrain.{name}"], name


@pytest.mark.parametrize("name", ENGINE_SIDE)
def test_the_engine_side_never_imports_textual_even_lazily(name):
    assert "textual" not in closure(import_graph(), f"tuitrain.{name}")


@pytest.mark.parametrize("name", RUNDIR)
def test_the_run_directory_package_imports_neither_torch_nor_textual(name):
    """Everything that writes or reads a run directory is plain Python: a viewer, ``runs`` and the
    remote stream start without either."""
    brought = closure(import_graph(), name)
    assert "torch" not in brought and "textual" not in brought


@pytest.mark.parametrize("name", NO_TORCH)
def test_the_dashboard_and_watch_start_without_torch(name):
    """The dashboard and `watch` start without torch (the live backend and the CLI import it lazily,
    only to train)."""
    assert "torch" not in closure(import_graph(eager=True), name)


@pytest.mark.slow
def test_the_eager_graph_agrees_with_python():
    """What the source says importing the CLI and the app loads is what Python loads."""
    code = "import sys, tuitrain.cli, tuitrain.app; print(' '.join(sorted(sys.modules)))"
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                cwd=ROOT).stdout.split())
    eager = import_graph(eager=True)
    predicted = closure(eager, "tuitrain.cli") | closure(eager, "tuitrain.app")
    ours = {name for name in predicted if name.startswith("tuitrain")}
    assert ours <= loaded
    assert "torch" not in loaded and "torch" not in predicted
    assert {name for name in loaded if name.startswith("tuitrain.")} <= ours | {"tuitrain.__main__"}


def _private_uses(name: str) -> list[str]:
    """Private names (``_x``) of other tuitrain modules that ``name`` uses: imported by name, or read
    as an attribute of an imported tuitrain module."""
    tree, _ = MODULES[name]
    found: list[str] = []
    aliases: dict[str, str] = {}  # local name -> the tuitrain module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tuitrain"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if full in MODULES:
                    aliases[alias.asname or alias.name] = full
                elif alias.name.startswith("_") and not alias.name.startswith("__") and node.module != name:
                    found.append(f"{node.module}.{alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("tuitrain") and alias.asname:
                    aliases[alias.asname] = alias.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            found.append(f"{aliases[node.value.id]}.{node.attr}")
    return found


def test_no_module_uses_another_modules_private_names():
    used = {name: uses for name in sorted(MODULES) if (uses := _private_uses(name))}
    assert used == {}
