"""The layer rule, checked on the source so it cannot rot silently.

Every folder of wfray (and each top-level module) has one `Layer` below that states what it
may import; a folder or module without one fails `test_every_folder_has_a_layer_rule`.
Imports under `if TYPE_CHECKING:` count too: a type-only dependency is still a dependency.
"""

from __future__ import annotations

import ast
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

# Takes the imported module and the name imported from it ("" for `import x`);
# returns True when the import is allowed.
Rule = Callable[[str, str], bool]


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def allow_only(*allowed: str) -> Rule:
    """A rule that allows the stdlib and the modules under `allowed`, nothing else."""

    def rule(module: str, name: str) -> bool:
        if module.split(".")[0] in sys.stdlib_module_names or _within(module, allowed):
            return True
        # `from wfray import domain` imports the module wfray.domain.
        return bool(name) and _within(f"{module}.{name}", allowed)

    return rule


def forbid(*forbidden: str) -> Rule:
    """A rule that allows anything but the modules under `forbidden`."""

    def rule(module: str, name: str) -> bool:
        full = f"{module}.{name}" if name else module
        return not (_within(module, forbidden) or _within(full, forbidden))

    return rule


def all_of(*rules: Rule) -> Rule:
    return lambda module, name: all(rule(module, name) for rule in rules)


INFRASTRUCTURE = ("ray", "sqlalchemy", "fastapi", "httpx", "alembic", "psycopg", "starlette")
WEB = ("fastapi", "starlette", "uvicorn")

# croniter: pure calendar arithmetic the schedule rules need (no I/O, no framework).
domain_rule = allow_only("pydantic", "typing_extensions", "croniter", "wfray.domain")
OUTER = ("wfray.adapters", "wfray.entrypoints", "wfray.integrations", "wfray.analytics")
OUTER += ("wfray.bootstrap", "wfray.client", "wfray.testing")
# What every role shares (ports, messages, views, commands): it knows none of the roles.
application_rule = forbid(*INFRASTRUCTURE, *OUTER, "wfray.sdk", "wfray.worker", "wfray.coordinator")
# What users import to declare workflows and what their steps call: never the engine.
sdk_rule = forbid(*INFRASTRUCTURE, *OUTER, "wfray.worker", "wfray.coordinator")
# What runs a step where it runs: the step's side of the sdk, never the coordinator.
worker_rule = forbid(*INFRASTRUCTURE, *OUTER, "wfray.coordinator")
# The single writer's state and phases: it never runs user code, so it needs no sdk either.
coordinator_rule = forbid(*INFRASTRUCTURE, *OUTER, "wfray.sdk", "wfray.worker")
# The adapters serve the layers inside; what uses them (the CLI and API, analytics, the
# built-in tasks) is outside them. The Ray adapter hosts the coordinator that bootstrap
# wires, so it may import the composition root and the other adapters.
adapters_rule = forbid(*WEB, "wfray.entrypoints", "wfray.analytics", "wfray.integrations")
memory_adapter_rule = all_of(
    adapters_rule, forbid(*INFRASTRUCTURE, "wfray.adapters.ray", "wfray.adapters.sqlalchemy")
)
sql_adapter_rule = all_of(
    adapters_rule,
    forbid("ray", "wfray.adapters.ray", "wfray.adapters.memory", "wfray.bootstrap"),
)
# Analytics holds no SQL: no SQLAlchemy (so no deletes of its own) and no tables. It reads
# the history through the SQL adapter's Arrow reader and changes the store only through the
# entry points made for it (RetentionStore's SqlRetentionStore, SqlHistoryWriter, erasure's
# SqlErasureStore) and records what it did through the audit trail's SqlAuditLog. Retention
# deletes the blobs of the runs it deletes, and the code package copies nothing names.
analytics_rule = allow_only(
    "pyarrow",
    "duckdb",
    "wfray.domain",
    "wfray.analytics",
    "wfray.adapters.blob",
    "wfray.adapters.package_copies",
    "wfray.adapters.sqlalchemy.arrow",
    "wfray.adapters.sqlalchemy.retention",
    "wfray.adapters.sqlalchemy.history_rows",
    "wfray.adapters.sqlalchemy.erasure",
    "wfray.adapters.sqlalchemy.audit",
)
# What user steps call: the domain's errors, the step context and task decorator, and the
# client libraries of what they talk to; never the store, Ray or the entrypoints.
integrations_rule = allow_only(
    "pydantic",
    "httpx",
    "httpcore",
    "reportlab",
    "wfray.domain",
    "wfray.application",
    "wfray.sdk",
    "wfray.integrations",
)
# The CLI and the HTTP API may use every layer, but the store only through its adapters'
# entry points, never its tables; `jobs` is an application that uses wfray, not a part.
entrypoints_rule = forbid("wfray.adapters.sqlalchemy.tables", "jobs")
# Settings are read once from the environment, with nothing but the domain's value types.
settings_rule = allow_only("pydantic", "wfray.domain", "wfray.config_env", "wfray.api_tokens")
# What users import to test their workflows without a cluster: the real engine over the
# in-memory store, in-process; so no Ray, no database, no web framework.
user_test_kit_rule = forbid(
    *INFRASTRUCTURE,
    "wfray.adapters.sqlalchemy",
    "wfray.entrypoints",
    "wfray.analytics",
    "wfray.integrations",
)
# The client: wfray's calls over a transport (Ray's, or the test kit's); Ray-free, so that
# the test kit can use it; it reads blob results through the blob store.
client_rule = allow_only(
    "pydantic",
    "wfray.domain",
    "wfray.application",
    "wfray.sdk",
    "wfray.config",
    "wfray.client",
    "wfray.adapters.blob",
)
# The public facade: the user API, the client and the Ray connection to a cluster.
facade_rule = allow_only(
    "wfray.domain",
    "wfray.application",
    "wfray.sdk",
    "wfray.config",
    "wfray.client",
    "wfray.adapters.ray",
)
# The composition root wires every layer below the entrypoints, which call it.
bootstrap_rule = forbid(*WEB, "wfray.entrypoints", "wfray.analytics", "jobs")


@dataclass(frozen=True)
class Layer:
    """A folder (or top-level module) of wfray, as a dotted name, and what it may import."""

    name: str
    rule: Rule
    may_import: str


LAYERS = (
    Layer(
        "wfray.domain",
        domain_rule,
        "only the stdlib, pydantic, typing_extensions, croniter and wfray.domain",
    ),
    Layer(
        "wfray.application",
        application_rule,
        "no infrastructure, no outer layer (adapters, entrypoints, integrations, analytics, "
        "bootstrap, client, testing) and no role (sdk, worker, coordinator)",
    ),
    Layer("wfray.sdk", sdk_rule, "what wfray.application may, and wfray.application"),
    Layer("wfray.worker", worker_rule, "what wfray.sdk may, and wfray.sdk"),
    Layer("wfray.coordinator", coordinator_rule, "what wfray.application may, and it"),
    Layer(
        "wfray.adapters",
        adapters_rule,
        "anything but a web framework and what uses the adapters (entrypoints, analytics, "
        "integrations)",
    ),
    Layer(
        "wfray.adapters.memory",
        memory_adapter_rule,
        "what wfray.adapters may, but no infrastructure and no other adapter",
    ),
    Layer(
        "wfray.adapters.sqlalchemy",
        sql_adapter_rule,
        "what wfray.adapters may, but not Ray, the other adapters or bootstrap",
    ),
    Layer("wfray.adapters.ray", adapters_rule, "what wfray.adapters may"),
    Layer(
        "wfray.entrypoints",
        entrypoints_rule,
        "any layer, but not the SQL tables (the store goes through its adapters) nor jobs",
    ),
    Layer(
        "wfray.integrations",
        integrations_rule,
        "the stdlib, pydantic, httpx, httpcore, reportlab, wfray.domain, application, sdk",
    ),
    Layer(
        "wfray.analytics",
        analytics_rule,
        "the stdlib, pyarrow, duckdb, wfray.domain, the blob store and the SQL adapter's "
        "arrow, retention and history_rows modules; never sqlalchemy or the tables",
    ),
    Layer(
        "wfray.testing",
        user_test_kit_rule,
        "any layer but the entrypoints, analytics and integrations, and no infrastructure "
        "(no Ray, database or web framework)",
    ),
    Layer(
        "wfray.client",
        client_rule,
        "the stdlib, pydantic, domain, application, sdk, config, itself and the blob store",
    ),
    Layer("wfray.__init__", facade_rule, "domain, application, sdk, config, the client and Ray's"),
    Layer("wfray.job", entrypoints_rule, "what wfray.entrypoints may (`-m wfray.job`)"),
    Layer("wfray.bootstrap", bootstrap_rule, "any layer but entrypoints and analytics"),
    Layer("wfray.observability", allow_only(), "only the stdlib: it names the files it ships"),
    Layer("wfray.config", settings_rule, "the stdlib, pydantic and wfray.domain"),
    Layer("wfray.config_env", settings_rule, "the stdlib, pydantic and wfray.domain"),
    Layer("wfray.api_tokens", settings_rule, "the stdlib, pydantic and wfray.domain"),
)


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


def _layer_files(root: Path, layer: str) -> list[Path]:
    folder = root.joinpath(*layer.split("."))
    if folder.is_dir():
        return sorted(folder.rglob("*.py"))
    if folder.with_suffix(".py").is_file():
        return [folder.with_suffix(".py")]
    raise FileNotFoundError(f"layer folder {folder} does not exist (nor {folder}.py)")


def layer_violations(root: Path, layer: str, rule: Rule) -> list[str]:
    """Return one message per forbidden import under `root/<layer>` (a dotted package name,
    or a module's: `wfray.config` checks wfray/config.py, `wfray.__init__` the package's own).

    Raises:
        FileNotFoundError: if the layer's folder (or module) does not exist, so a renamed or
            missing layer fails the check instead of passing it vacuously.
    """
    found = []
    for path in _layer_files(root, layer):
        for line, module, name in sorted(_imports(path, root)):
            if not rule(module, name):
                shown = f"from {module} import {name}" if name else f"import {module}"
                found.append(f"{path.relative_to(root)}:{line}: forbidden `{shown}`")
    return found


@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: layer.name)
def test_layer_imports_only_what_its_rule_allows(layer: Layer) -> None:
    violations = layer_violations(REPO_ROOT, layer.name, layer.rule)
    assert not violations, f"{layer.name} may import {layer.may_import}:\n" + "\n".join(violations)


def _layers_present(root: Path) -> set[str]:
    """Every package folder and module directly in wfray/, and every adapter's folder."""
    present = set()
    for parent in (root / "wfray", root / "wfray" / "adapters"):
        package = ".".join(parent.relative_to(root).parts)
        for path in parent.iterdir():
            if path.is_dir() and (path / "__init__.py").is_file():
                present.add(f"{package}.{path.name}")
            elif path.suffix == ".py" and parent.name == "wfray":
                present.add(f"{package}.{path.stem}")
    return present


def test_every_folder_has_a_layer_rule() -> None:
    ruled = {layer.name for layer in LAYERS}
    present = _layers_present(REPO_ROOT)
    assert present - ruled == set(), "give each of these a Layer (what it may import)"
    assert ruled - present == set(), "these layers no longer exist: drop or rename their Layer"


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


def test_analytics_rule_refuses_sql_and_tables_but_not_its_adapters(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "wfray/analytics/prune.py",
        """
        import sqlalchemy as sa
        from sqlalchemy import delete
        from wfray.adapters.sqlalchemy.tables import runs
        from wfray.adapters.sqlalchemy import tables
        from wfray.adapters.sqlalchemy.engine import create_engine
        from wfray.adapters.sqlalchemy.retention import SqlRetentionStore
        from wfray.adapters.sqlalchemy import arrow
        from wfray.domain.status import RUN_FINISHED
        import pyarrow as pa
        """,
    )

    assert layer_violations(tmp_path, "wfray.analytics", analytics_rule) == [
        "wfray/analytics/prune.py:1: forbidden `import sqlalchemy`",
        "wfray/analytics/prune.py:2: forbidden `from sqlalchemy import delete`",
        "wfray/analytics/prune.py:3: forbidden `from wfray.adapters.sqlalchemy.tables import runs`",
        "wfray/analytics/prune.py:4: forbidden `from wfray.adapters.sqlalchemy import tables`",
        "wfray/analytics/prune.py:5: forbidden "
        "`from wfray.adapters.sqlalchemy.engine import create_engine`",
    ]


def test_a_top_level_module_is_a_layer_of_its_own(tmp_path: Path) -> None:
    _write(tmp_path, "wfray/config.py", "import os\nfrom wfray.domain import policy\nimport ray\n")
    _write(tmp_path, "wfray/configure/__init__.py", "import ray\n")

    assert layer_violations(tmp_path, "wfray.config", settings_rule) == [
        "wfray/config.py:3: forbidden `import ray`"
    ]


def test_layers_present_lists_folders_modules_and_adapters(tmp_path: Path) -> None:
    for relative in (
        "wfray/__init__.py",
        "wfray/config.py",
        "wfray/domain/__init__.py",
        "wfray/adapters/__init__.py",
        "wfray/adapters/blob.py",
        "wfray/adapters/ray/__init__.py",
        "wfray/adapters/ray/host.py",
        "wfray/domain/deep/__init__.py",
    ):
        _write(tmp_path, relative, "")
    (tmp_path / "wfray" / "fonts").mkdir()  # data, not a package

    assert _layers_present(tmp_path) == {
        "wfray.__init__",
        "wfray.config",
        "wfray.domain",
        "wfray.adapters",
        "wfray.adapters.ray",
    }
