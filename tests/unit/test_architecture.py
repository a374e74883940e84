"""The layer rule, checked on the source so it cannot rot silently.

wfray/domain may import only the stdlib, pydantic, typing_extensions and itself;
wfray/application may import no infrastructure and nothing from the outer layers.
Imports under `if TYPE_CHECKING:` count too: a type-only dependency is still a dependency.
"""

from __future__ import annotations

import ast
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

# croniter: pure calendar arithmetic the schedule rules need (no I/O, no framework).
DOMAIN_ALLOWED = ("pydantic", "typing_extensions", "croniter", "wfray.domain")
APPLICATION_FORBIDDEN = (
    "ray",
    "sqlalchemy",
    "fastapi",
    "httpx",
    "alembic",
    "psycopg",
    "starlette",
    "wfray.adapters",
    "wfray.entrypoints",
)

# Takes the imported module and the name imported from it ("" for `import x`);
# returns True when the import is allowed.
Rule = Callable[[str, str], bool]


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def domain_rule(module: str, name: str) -> bool:
    if module.split(".")[0] in sys.stdlib_module_names or _within(module, DOMAIN_ALLOWED):
        return True
    # `from wfray import domain` imports the module wfray.domain.
    return bool(name) and _within(f"{module}.{name}", DOMAIN_ALLOWED)


def application_rule(module: str, name: str) -> bool:
    full = f"{module}.{name}" if name else module
    return not (_within(module, APPLICATION_FORBIDDEN) or _within(full, APPLICATION_FORBIDDEN))


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package_of(path: Path, root: Path) -> str:
    module = _module_name(path, root)
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _dynamic_import(node: ast.Call) -> str | None:
    """The module named by `importlib.import_module("x")` or `__import__("x")`, if literal."""
    func = node.func
    called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
    if called not in {"__import__", "import_module"} or not node.args:
        return None
    first = node.args[0]
    return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None


def _imports(path: Path, root: Path) -> Iterator[tuple[int, str, str]]:
    """Yield (line, module, imported name) for every import in one file, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, ""
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                package = _package_of(path, root).split(".")
                if node.level > len(package):
                    yield node.lineno, "." * node.level + module, "<beyond top-level package>"
                    continue
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            for alias in node.names:
                yield node.lineno, module, "" if alias.name == "*" else alias.name
        elif isinstance(node, ast.Call) and (dynamic := _dynamic_import(node)):
            yield node.lineno, dynamic, ""


def layer_violations(root: Path, layer: str, rule: Rule) -> list[str]:
    """Return one message per forbidden import under `root/<layer>` (a dotted package name).

    Raises:
        FileNotFoundError: if the layer's folder does not exist, so a renamed or missing
            layer fails the check instead of passing it vacuously.
    """
    folder = root.joinpath(*layer.split("."))
    if not folder.is_dir():
        raise FileNotFoundError(f"layer folder {folder} does not exist")
    found = []
    for path in sorted(folder.rglob("*.py")):
        for line, module, name in sorted(_imports(path, root)):
            if not rule(module, name):
                shown = f"from {module} import {name}" if name else f"import {module}"
                found.append(f"{path.relative_to(root)}:{line}: forbidden `{shown}`")
    return found


def test_domain_imports_only_stdlib_and_pydantic() -> None:
    violations = layer_violations(REPO_ROOT, "wfray.domain", domain_rule)
    assert not violations, (
        "wfray/domain may import only the stdlib, pydantic, typing_extensions, croniter and "
        "wfray.domain:\n" + "\n".join(violations)
    )


def test_application_imports_no_infrastructure() -> None:
    violations = layer_violations(REPO_ROOT, "wfray.application", application_rule)
    assert not violations, (
        "wfray/application must not import infrastructure or outer layers:\n"
        + "\n".join(violations)
    )


def _write(root: Path, relative: str, source: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source).lstrip(), encoding="utf-8")


def test_checker_reports_forbidden_imports(tmp_path: Path) -> None:
    _write(tmp_path, "wfray/__init__.py", "")
    _write(tmp_path, "wfray/domain/__init__.py", "from . import run\nfrom wfray import domain\n")
    _write(
        tmp_path,
        "wfray/domain/run.py",
        """
        from __future__ import annotations
        import os.path
        from typing import TYPE_CHECKING
        from pydantic import BaseModel
        from .status import Status
        if TYPE_CHECKING:
            import ray
        from ..adapters import memory
        from wfray import application
        """,
    )
    _write(
        tmp_path,
        "wfray/domain/sub/deep.py",
        """
        from ...domain.run import Run
        from ... import ports
        """,
    )
    _write(
        tmp_path,
        "wfray/application/service.py",
        """
        import importlib
        from wfray.domain import run
        from wfray.adapters.sql import SqlRunStore
        from sqlalchemy.orm import Session
        from wfray import entrypoints
        importlib.import_module("httpx")
        import raylet  # not ray: prefixes match whole dotted parts
        """,
    )

    assert layer_violations(tmp_path, "wfray.domain", domain_rule) == [
        "wfray/domain/run.py:7: forbidden `import ray`",
        "wfray/domain/run.py:8: forbidden `from wfray.adapters import memory`",
        "wfray/domain/run.py:9: forbidden `from wfray import application`",
        "wfray/domain/sub/deep.py:2: forbidden `from wfray import ports`",
    ]
    assert layer_violations(tmp_path, "wfray.application", application_rule) == [
        "wfray/application/service.py:3: forbidden `from wfray.adapters.sql import SqlRunStore`",
        "wfray/application/service.py:4: forbidden `from sqlalchemy.orm import Session`",
        "wfray/application/service.py:5: forbidden `from wfray import entrypoints`",
        "wfray/application/service.py:6: forbidden `import httpx`",
    ]


def test_checker_fails_on_missing_layer_and_passes_empty_one(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        layer_violations(tmp_path, "wfray.domain", domain_rule)
    (tmp_path / "wfray" / "domain").mkdir(parents=True)
    assert layer_violations(tmp_path, "wfray.domain", domain_rule) == []
