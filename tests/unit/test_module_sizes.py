"""Modules stay small and functions short, so that each can be read in one sitting.

A module over 400 lines is probably two modules; a function over 60 lines is probably two
functions. Alembic revisions are exempt: they are a record of what the schema was, written
once and never read as a whole.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "wfray"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
EXEMPT = PACKAGE / "adapters" / "sqlalchemy" / "migrations"


def package_modules() -> list[Path]:
    modules = sorted(p for p in PACKAGE.rglob("*.py") if EXEMPT not in p.parents)
    assert len(modules) > 100, "the package was not found where this test looks for it"
    return modules


def test_no_module_is_longer_than_400_lines() -> None:
    too_long = {
        str(path.relative_to(PACKAGE)): count
        for path in package_modules()
        if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not too_long, f"modules over {MAX_MODULE_LINES} lines: {too_long}"


def test_no_function_is_longer_than_60_lines() -> None:
    too_long: dict[str, int] = {}
    for path in package_modules():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                length = (node.end_lineno or node.lineno) - first + 1
                if length > MAX_FUNCTION_LINES:
                    too_long[f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}"] = length
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines: {too_long}"
