"""The modules of fluxlite import one another one way only: no cycle, however long.

The graph is read from the source (nothing is imported): an edge for every ``import`` and
``from ... import`` of a fluxlite module that can run, at module level or inside a function
(an import put off until it is needed is still a dependency). Imports under ``if
TYPE_CHECKING:`` never run and are not counted; nor is a package's ``__init__`` that Python
runs on the way to one of its modules, only the modules an import names. A cycle is printed
with the file and line of each of its imports.
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "fluxlite"

Edges = dict[str, dict[str, str]]  # module -> imported module -> "file:line" of the import


def module_names(root: Path) -> dict[str, Path]:
    """Every module below ``root`` by its dotted name (a package by its own name)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement that can run: anywhere but an ``if TYPE_CHECKING:`` body."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(root: Path) -> Edges:
    """The modules of the package at ``root`` and the package modules each one imports."""
    mods = module_names(root)
    top = root.name
    edges: Edges = {}
    for name, path in mods.items():
        is_pkg = path.name == "__init__.py"
        out: dict[str, str] = {}
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            where = f"{path.relative_to(root.parent)}:{node.lineno}"
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:  # relative: from its package, or from a parent's
                    pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                    pkg = pkg[: len(pkg) - node.level + 1]
                    base = ".".join([*pkg, base] if base else pkg)
                # ``from pkg import name``: the module pkg.name when there is one, else pkg
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base
                           for a in node.names]
            for t in targets:
                if (t == top or t.startswith(top + ".")) and t in mods and t != name:
                    out.setdefault(t, where)
        edges[name] = out
    return edges


def cycles(edges: Edges) -> list[list[str]]:
    """One cycle of each strongly connected group of modules (Tarjan's algorithm), as the
    list of its modules with the first repeated at the end."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(edges):
        if v not in index:
            connect(v)
    return [_one_cycle(edges, g) for g in groups]


def _one_cycle(edges: Edges, group: set[str]) -> list[str]:
    """A shortest way from the group's first module back to itself, inside the group."""
    start = min(group)
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(edges[v]):
                if w not in group:
                    continue
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if w not in came_from:
                    came_from[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle in {sorted(group)}")


def describe(edges: Edges, cycle: list[str]) -> str:
    """A cycle in one line: each module, and where it imports the next."""
    steps = [f"{a} ({edges[a][b]}) -> " for a, b in itertools.pairwise(cycle)]
    return "".join(steps) + cycle[-1]


def test_no_two_modules_of_fluxlite_import_each_other() -> None:
    edges = import_graph(PACKAGE)
    assert len(edges) > 50 and "fluxlite.runner" in edges  # the package was read
    found = [describe(edges, c) for c in cycles(edges)]
    assert not found, "import cycles:\n" + "\n".join(found)


# -- the finder itself finds what it must -----------------------------------------------


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for name, text in {"__init__.py": "", **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.mark.parametrize("files, cycle", [
    # a function-level import closes the loop
    ({"a.py": "from pkg.b import x\n", "b.py": "def f():\n    from pkg import a\n"},
     ["pkg.a", "pkg.b", "pkg.a"]),
    # relative imports, three modules around, one inside a subpackage
    ({"a.py": "from .sub import c\n", "sub/__init__.py": "", "sub/c.py": "from ..b import y\n",
      "b.py": "import pkg.a\n"}, ["pkg.a", "pkg.sub.c", "pkg.b", "pkg.a"]),
    # the package's front importing a module that imports a name of the front
    ({"__init__.py": "def g():\n    from pkg.a import f\n", "a.py": "from pkg import VERSION\n"},
     ["pkg", "pkg.a", "pkg"]),
])
def test_a_cycle_is_found_and_printed(tmp_path: Path, files: dict[str, str],
                                      cycle: list[str]) -> None:
    edges = import_graph(_package(tmp_path, files))
    assert cycles(edges) == [cycle]
    assert describe(edges, cycle).startswith(f"{cycle[0]} (pkg/")


def test_imports_only_for_type_checking_and_one_way_imports_are_no_cycle(
        tmp_path: Path) -> None:
    edges = import_graph(_package(tmp_path, {
        "a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import T\n",
        "b.py": "import pkg.a\nfrom pkg.c import z\n",
        "c.py": "import os\n"}))
    assert edges == {"pkg": {}, "pkg.a": {}, "pkg.b": {"pkg.a": "pkg/b.py:1", "pkg.c":
                                                       "pkg/b.py:2"}, "pkg.c": {}}
    assert cycles(edges) == []
