"""The public facade: `wfray.__all__` is pinned here, so adding or removing a public name is
a deliberate edit of this test; every name in it imports, and the README's examples use
nothing else from `wfray`."""

from __future__ import annotations

import ast
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path

import wfray

README = Path(__file__).resolve().parents[2] / "README.md"

PUBLIC_NAMES = [
    "BacklogFullError",
    "ClaimNotHeldError",
    "Client",
    "CycleError",
    "DefinitionError",
    "InputValidationError",
    "InvalidClaimError",
    "NonRetryableError",
    "QueueConfig",
    "RetryLater",
    "RetryPolicy",
    "RunFailedError",
    "RunHandle",
    "RunNotFoundError",
    "RunStatus",
    "Schedule",
    "Settings",
    "StepContext",
    "StoreUnavailableError",
    "TaskStatus",
    "UniqueKeyError",
    "UniquePolicy",
    "UniqueRunError",
    "UnknownWorkflowError",
    "WaitTimeoutError",
    "WfrayError",
    "Workflow",
    "connect",
    "load_settings",
    "schedule",
    "task",
]

_PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
_FROM_WFRAY = re.compile(r"^\s*from wfray import (?:\(([^)]*)\)|([\w ,]+))", re.MULTILINE)
_WFRAY_ATTRIBUTE = re.compile(r"\bwfray\.(\w+)")


def test_all_is_the_published_list() -> None:
    assert sorted(wfray.__all__) == PUBLIC_NAMES
    assert len(set(wfray.__all__)) == len(wfray.__all__)


def test_every_public_name_imports_from_wfray() -> None:
    namespace: dict[str, object] = {}
    exec("from wfray import *", namespace)  # what `__all__` promises, lazy names included
    missing = [name for name in wfray.__all__ if namespace.get(name) is None]
    assert missing == []


def _names_taken_from_wfray(block: str) -> Iterator[str]:
    """The names a block of Python takes from `wfray`: `from wfray import X` and `wfray.X`
    (submodules such as `wfray.integrations` are not names of the facade)."""
    submodules = {info.name for info in pkgutil.iter_modules(wfray.__path__)}
    try:
        tree = ast.parse(block)
    except SyntaxError:  # an excerpt, not a program: read it as text
        for parenthesised, plain in _FROM_WFRAY.findall(block):
            yield from (n for n in re.split(r"[\s,]+", parenthesised or plain) if n)
        yield from (n for n in _WFRAY_ATTRIBUTE.findall(block) if n not in submodules)
        return
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "wfray" and node.level == 0:
            yield from (alias.name for alias in node.names)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "wfray"
            and node.attr not in submodules
        ):
            yield node.attr


def _readme_names() -> set[str]:
    blocks = _PYTHON_BLOCK.findall(README.read_text(encoding="utf-8"))
    return {name for block in blocks for name in _names_taken_from_wfray(block)}


def test_names_are_read_from_programs_and_from_excerpts() -> None:
    program = "import wfray\nfrom wfray import (RetryPolicy,\n    task)\nwfray.integrations.x()\n"
    excerpt = "from wfray import Workflow, schedule\nclient = wfray.connect()\n@flow.step(\n"
    wrapped = "from wfray import (\n    RetryPolicy,\n    task,\n)\ndef f(:\n"
    assert set(_names_taken_from_wfray(program)) == {"RetryPolicy", "task"}
    assert set(_names_taken_from_wfray(excerpt)) == {"Workflow", "schedule", "connect"}
    assert set(_names_taken_from_wfray(wrapped)) == {"RetryPolicy", "task"}


def test_the_readme_uses_only_public_names() -> None:
    used = _readme_names()
    assert {"RetryPolicy", "StepContext", "Workflow", "connect"} <= used  # the parse found them
    assert sorted(used - set(wfray.__all__)) == []
