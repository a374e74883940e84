"""Recording operator actions where they are carried out: in the coordinator's handlers.

A handler runs the action, then records it with its outcome (or its error) before answering,
so no client can act without leaving an entry: what a caller chooses is only who it says it
is (its `Origin`), and an entry point that knows better (the API: the token's name and the
client's address) sets that itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from wfray.application.messages import CommandResult
from wfray.coordinator.desk import Started
from wfray.domain.audit import AuditEntry, Origin, audit_entry

T = TypeVar("T")


async def audited(
    started: Started,
    origin: Origin | None,
    action: str,
    targets: Sequence[object],
    params: Mapping[str, object] | None,
    act: Callable[[], Awaitable[T]],
    outcome_of: Callable[[T], str],
) -> T:
    """`act()`'s answer, once the action and its outcome are recorded (errors too)."""
    try:
        answer = await act()
    except Exception as exc:
        entry = _entry(started, origin, action, targets, params, f"error: {error_text(exc)}")
        await record(started, [entry])
        raise
    await record(started, [_entry(started, origin, action, targets, params, outcome_of(answer))])
    return answer


async def record(started: Started, entries: Sequence[AuditEntry]) -> None:
    await asyncio.to_thread(started.audit.record, entries)


def rebounded(entries: Sequence[AuditEntry]) -> list[AuditEntry]:
    """Entries that crossed a process boundary, cleaned and bounded again."""
    return [
        audit_entry(
            e.at,
            Origin(e.actor, e.via, e.address),
            e.action,
            e.targets,
            e.params,
            e.outcome,
        )
        for e in entries
    ]


def results_outcome(results: list[CommandResult]) -> str:
    """Each run's answer: `<id>: applied (<status>)` or `<id>: refused (<status>): why`."""
    parts = []
    for result in results:
        if result.applied:
            parts.append(f"{result.run_id}: applied ({result.status})")
        else:
            parts.append(f"{result.run_id}: refused ({result.status}): {result.message}")
    return "; ".join(parts)


def done(_: Any) -> str:
    return "done"


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _entry(
    started: Started,
    origin: Origin | None,
    action: str,
    targets: Sequence[object],
    params: Mapping[str, object] | None,
    outcome: str,
) -> AuditEntry:
    return audit_entry(started.coordinator.clock.now(), origin, action, targets, params, outcome)
