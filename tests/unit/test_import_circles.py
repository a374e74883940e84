"""No modules of wfray import each other round a circle when imported (`import_circles`):
there only what runs at import counts, not imports in functions or under `if TYPE_CHECKING:`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.unit.test_architecture import REPO_ROOT, _module_name, _package_of, _write


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """The imports a module runs when it is imported: not those in functions (run later),
    nor those under `if TYPE_CHECKING:` (never run)."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _module_level(node.body)
            yield from _module_level(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from _module_level(block)
        elif isinstance(node, ast.With):
            yield from _module_level(node.body)


def import_graph(root: Path) -> dict[str, set[str]]:
    """Each module of wfray, and the wfray modules it imports when imported (`from p import
    m` imports the module p.m where there is one, else p itself)."""
    paths = {_module_name(p, root): p for p in sorted((root / "wfray").rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        package = _package_of(path, root).split(".")
        imported: set[str] = set()
        for node in _module_level(ast.parse(path.read_text(encoding="utf-8")).body):
            if isinstance(node, ast.Import):
                imported.update(a.name for a in node.names)
                continue
            base = node.module or ""
            if node.level:
                parent = package[: len(package) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            imported.update(
                f"{base}.{a.name}" if f"{base}.{a.name}" in paths else base for a in node.names
            )
        graph[module] = {m for m in imported if m in paths and m != module}
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other, round a circle (Tarjan's strongly
    connected components, without recursion), each sorted."""
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []
    for start in sorted(graph):
        if start in order:
            continue
        work = [(start, iter(sorted(graph[start])))]
        order[start] = low[start] = len(order)
        stack.append(start)
        on_stack.add(start)
        while work:
            module, imported = work[-1]
            following = next(imported, None)
            if following is not None:
                if following not in order:
                    order[following] = low[following] = len(order)
                    stack.append(following)
                    on_stack.add(following)
                    work.append((following, iter(sorted(graph[following]))))
                elif following in on_stack:
                    low[module] = min(low[module], order[following])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[module])
            if low[module] == order[module]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == module:
                        break
                if len(group) > 1:
                    circles.append(sorted(group))
    return sorted(circles)


def test_no_modules_import_each_other_round_a_circle() -> None:
    circles = import_circles(import_graph(REPO_ROOT))
    assert circles == [], (
        "these modules import each other when imported: move what both need into a third, "
        "or name what one reads of the other as a Protocol in it"
    )


def test_circle_check_counts_what_runs_at_import_only(tmp_path: Path) -> None:
    _write(tmp_path, "wfray/__init__.py", "")
    _write(tmp_path, "wfray/a.py", "from wfray import b\n")
    _write(tmp_path, "wfray/b.py", "from .c import thing\n")
    _write(tmp_path, "wfray/c.py", "try:\n    import wfray.a\nexcept ImportError:\n    pass\n")
    _write(
        tmp_path,
        "wfray/d.py",
        """
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            from wfray.e import E
        def later():
            from wfray import e
        """,
    )
    _write(tmp_path, "wfray/e.py", "import wfray.d\n")

    graph = import_graph(tmp_path)
    assert graph["wfray.b"] == {"wfray.c"} and graph["wfray.d"] == set()
    assert import_circles(graph) == [["wfray.a", "wfray.b", "wfray.c"]]
