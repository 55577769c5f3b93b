"""The shape of the code: no import cycles, no module reaching into another's private names, small modules.

The layering itself is checked by import-linter (`lint-imports`, contracts in pyproject.toml), which
`make test` runs before this suite.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent / "onair"
MAX_LINES = 500


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.find_modules_directly_imported_by(v)):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_import_cycles_counting_type_checking_and_function_imports() -> None:
    # grimp counts imports under `if TYPE_CHECKING:` and inside functions like any other
    graph = grimp.build_graph("onair", include_external_packages=False)
    # a package's __init__ importing its own submodules is how packages re-export: not a cycle
    for module in list(graph.modules):
        for sub in graph.find_modules_directly_imported_by(module):
            if sub.startswith(module + "."):
                graph.remove_import(importer=module, imported=sub)
    assert _cycles(graph) == []


def test_no_module_over_500_lines() -> None:
    big = {name: n for name, path in _modules()
           if ".migrations." not in name and (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert big == {}


def _defined_private_names(tree: ast.Module) -> set[str]:
    """Private names a module defines: its own functions, classes, attributes it assigns (`self._x = ...`)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if n.startswith("_")}


def _private_reaches(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    own = _defined_private_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("onair"):
            found += [f"{path.name}:{node.lineno} imports {a.name}" for a in node.names
                      if a.name.startswith("_") and not a.name.startswith("__")]
        elif isinstance(node, ast.Attribute):
            name = node.attr
            if not name.startswith("_") or name.startswith("__") or name in own:
                continue
            base = node.value
            if isinstance(base, ast.Name) and base.id in ("self", "cls"):
                continue
            found.append(f"{path.name}:{node.lineno} reaches .{name}")
    return found


def test_no_module_reaches_into_private_names_it_does_not_define() -> None:
    found = [hit for name, path in _modules() if ".migrations." not in name for hit in _private_reaches(path)]
    assert found == []
