"""Sizes that keep the layers readable: a command module parses its arguments, calls the
library and returns a code, so it stays well under COMMAND_LINES lines; no function of
fluxlite is longer than FUNCTION_LINES lines (from its ``def`` to its last line, as the
AST counts them: ``end_lineno - lineno + 1``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import fluxlite

PACKAGE = Path(fluxlite.__file__).parent
COMMAND_LINES = 160
FUNCTION_LINES = 100

# Command modules allowed over COMMAND_LINES, by file name: none, and none to be added.
COMMANDS_OVER: frozenset[str] = frozenset()

# Functions over FUNCTION_LINES, as "path/in/fluxlite.py:qualified.name": none, and none to
# be added (a function on it that has become short enough fails the test below).
FUNCTIONS_OVER: frozenset[str] = frozenset()


def long_functions(source: str, limit: int = FUNCTION_LINES) -> dict[str, int]:
    """The functions and methods of ``source`` longer than ``limit`` lines, by qualified
    name (``Class.method``, ``outer.inner``), with their lengths."""
    found: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = prefix + child.name
                if not isinstance(child, ast.ClassDef):
                    n = (child.end_lineno or child.lineno) - child.lineno + 1
                    if n > limit:
                        found[name] = n
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return found


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _commands() -> list[Path]:
    return sorted((PACKAGE / "commands").glob("*.py"))


@pytest.mark.parametrize("path", _commands(), ids=lambda p: p.name)
def test_a_command_module_is_short(path: Path) -> None:
    n = len(path.read_text(encoding="utf-8").splitlines())
    if path.name in COMMANDS_OVER:
        assert n > COMMAND_LINES, f"take commands/{path.name} off COMMANDS_OVER"
        return
    assert n <= COMMAND_LINES, (
        f"commands/{path.name} has {n} lines (at most {COMMAND_LINES}): a command parses "
        "its arguments, calls the library and returns a code; move the rest into the library")


def test_no_function_is_longer_than_the_limit() -> None:
    found = {f"{p.relative_to(PACKAGE)}:{name}": n for p in _modules()
             for name, n in long_functions(p.read_text(encoding="utf-8")).items()}
    new = {k: n for k, n in found.items() if k not in FUNCTIONS_OVER}
    assert not new, "over {} lines: {}".format(
        FUNCTION_LINES, ", ".join(f"{k} ({n})" for k, n in sorted(new.items())))
    short = sorted(FUNCTIONS_OVER - found.keys())
    assert not short, f"no longer over {FUNCTION_LINES} lines (or gone): take {short} " \
                      "off FUNCTIONS_OVER"


def test_the_measure_finds_a_long_function_and_method() -> None:
    body = "    x = 1\n" * 99
    src = (f"def fits():\n{body}\n"  # 100 lines: at the limit
           f"class C:\n    def m(self):\n    {body.replace(chr(10), chr(10) + '    ')}"
           f"    y = 2\n\n"
           f"def outer():\n    def inner():\n{body.replace('    x', '        x')}"
           f"        y = 2\n    return inner\n")
    assert long_functions(src) == {"C.m": 101, "outer": 103, "outer.inner": 101}
