"""No import circle among tuitrain's modules, read from the source: every import statement counts,
at module level, inside functions (the lazy ones) and under TYPE_CHECKING."""

from __future__ import annotations

import ast

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


def import_graph() -> dict[str, set[str]]:
    """Module -> the tuitrain modules it imports (``from tuitrain import x`` counts as tuitrain.x)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, (tree, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]  # what a relative import starts from
        targets: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*anchor, *([base] if base else [])])
                targets.add(base)
                targets.update(f"{base}.{alias.name}" for alias in node.names)
        graph[name] = {t for t in targets if t in modules and t not in (name, "tuitrain")}
    return graph


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


def test_the_graph_sees_lazy_and_type_checking_imports():
    graph = import_graph()
    assert "tuitrain.device" in graph["tuitrain.backends"]  # imported inside a method
    assert "tuitrain.trainstate" in graph["tuitrain.monitor"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circle_among_tuitrain_modules():
    assert cycles(import_graph()) == []


def test_the_engine_side_imports_no_engine():
    """Checkpoints, steering and the policies work on parts: the engine imports them, never back."""
    graph = import_graph()
    for name in ("checkpoints", "steering", "monitor", "schedule", "device", "trainstate", "evaluation", "task"):
        assert "tuitrain.engine" not in graph[f"tuitrain.{name}"], name
