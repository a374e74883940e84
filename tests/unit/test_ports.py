"""The application's ports live in ports.py, and both store adapters implement each side
of the store port, member for member.

mypy checks the adapters where a store is passed as a side; these tests also cover a member
no consumer reaches yet, and name the drift: the missing member or the other signature.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from wfray.adapters.memory.store import InMemoryRunStore
from wfray.adapters.sqlalchemy.store import SqlRunStore
from wfray.application.ports import RunLedger, RunLookup, RunReader, RunStore

WFRAY = Path(__file__).resolve().parents[2] / "wfray"
ROLES = ("application", "sdk", "worker", "coordinator")
PORT_MODULES = {"application/ports.py"}
# Seams between the coordinator's own parts, implemented inside the application: not ports.
LOCAL_SEAMS = {
    "coordinator/dispatcher.py:Placement",  # the reconciler's choice of executor
    "coordinator/outcomes.py:PoisonedOutcomes",  # the poison guard, for the outcome applier
    "application/metrics.py:Metrics",  # MetricsBuffer; adapters export the buffer
    # the desk the command handlers serve (the Ray host is one): it names the coordinator's
    # own classes, so it sits beside the handlers rather than in the shared ports
    "coordinator/desk.py:Started",
    "coordinator/desk.py:Desk",
    # what the health figures read of the coordinator, which imports them: named where
    # they are read, so that neither module imports the other
    "coordinator/health.py:Observed",
    "coordinator/health.py:Reconciling",
}
SIDES = [RunLookup, RunLedger, RunReader, RunStore]
ADAPTERS = [InMemoryRunStore, SqlRunStore]
WRITES = {"commit", "note_undelivered", "note_applying", "quarantine", "save_workflow"}
WRITES |= {"next_value", "put_claim"}


def members(protocol: type) -> dict[str, Callable[..., Any]]:
    """The methods a Protocol declares, its own and those of the Protocols it extends."""
    found: dict[str, Callable[..., Any]] = {}
    for cls in reversed(protocol.__mro__):
        if not getattr(cls, "_is_protocol", False) or cls.__module__ == "typing":
            continue
        for name, value in vars(cls).items():
            if inspect.isfunction(value) and not name.startswith("__"):
                found[name] = value
    return found


def shape(function: Callable[..., Any]) -> list[tuple[str, object, object, object]]:
    """Each parameter's name, kind, default and annotation, then the return annotation."""
    signature = inspect.signature(function)
    params = [(p.name, p.kind, p.default, p.annotation) for p in signature.parameters.values()]
    return [*params, ("return", None, None, signature.return_annotation)]


@pytest.mark.parametrize("side", SIDES, ids=lambda p: p.__name__)
@pytest.mark.parametrize("adapter", ADAPTERS, ids=lambda c: c.__name__)
def test_each_adapter_implements_each_side_with_the_same_signatures(
    side: type, adapter: type
) -> None:
    declared = members(side)
    assert declared, f"{side.__name__} declares no methods"
    missing = [name for name in declared if not callable(getattr(adapter, name, None))]
    assert missing == [], f"{adapter.__name__} lacks {missing} of {side.__name__}"
    differing = {
        name: (shape(declared[name]), shape(getattr(adapter, name)))
        for name in declared
        if shape(declared[name]) != shape(getattr(adapter, name))
    }
    assert differing == {}, (
        f"{adapter.__name__} differs from {side.__name__} in {sorted(differing)}"
    )


def test_the_store_is_exactly_both_sides() -> None:
    store, ledger, reader = members(RunStore), members(RunLedger), members(RunReader)
    assert set(store) == set(ledger) | set(reader)
    assert set(members(RunLookup)) == set(ledger) & set(reader)


def test_the_read_side_declares_no_write() -> None:
    # a reader handed to the HTTP API or the CLI cannot change what the coordinator wrote
    assert set(members(RunReader)) & WRITES == set()
    assert set(members(RunLedger)) >= WRITES


def test_the_members_are_found_through_the_protocols_extended() -> None:
    # guards `members` itself: an empty or partial walk would let the tests above pass
    assert {"find_runs", "commit", "list_runs", "close"} <= set(members(RunStore))
    assert "find_runs" in members(RunLedger) and "list_runs" not in members(RunLedger)


def test_the_application_declares_its_protocols_in_the_port_modules() -> None:
    found = set()
    for path in sorted(p for role in ROLES for p in (WFRAY / role).glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            bases = [ast.unparse(b) for b in getattr(node, "bases", [])]
            if isinstance(node, ast.ClassDef) and any(b.endswith("Protocol") for b in bases):
                found.add(f"{path.parent.name}/{path.name}:{node.name}")
    outside = {name for name in found if name.partition(":")[0] not in PORT_MODULES}
    assert outside == LOCAL_SEAMS
    ports = {"RunLedger", "RunReader", "StepServices", "ScheduleStore"}
    assert {f"application/ports.py:{name}" for name in ports} <= found
