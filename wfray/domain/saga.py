"""Compensation (the saga): undo, in reverse dependency order, what a failed run completed.

When a run fails for good (or is cancelled, unless the caller said not to), each completed
task whose step declares a compensation is compensated once every compensable task that
depends on it, directly or not, has been compensated. Independent branches compensate side
by side. Each compensation runs under its own retry policy; one that fails for good blocks
what lies upstream of it and the run ends `compensation_failed`, on the dead-letter list,
from where it can be retried.

A paged fan-out (wider than the coordinator's memory cap) keeps its completed items in the
store: while its run is undone they are paged back in, a page at a time (`undo_from`, its
cursor; the coordinator's `undo_pages.py` reads them), and an undone item leaves memory
again. Until its last page is read, the fan-out counts as not yet compensated.
"""

from __future__ import annotations

from datetime import datetime

from wfray.domain.policy import FailureInfo
from wfray.domain.records import TaskRecord
from wfray.domain.run_state import Changes, RunState, set_run, set_task
from wfray.domain.status import RunStatus, TaskStatus
from wfray.domain.workflow import WorkflowSchema

UNDONE = frozenset(
    {
        TaskStatus.COMPLETED,
        TaskStatus.COMPENSATING,
        TaskStatus.COMPENSATED,
        TaskStatus.COMPENSATION_FAILED,
    }
)


def descendants(schema: WorkflowSchema) -> dict[str, frozenset[str]]:
    """Step -> every step that depends on it, directly or through others."""
    children = schema.downstream()
    found: dict[str, frozenset[str]] = {}

    def walk(step: str) -> frozenset[str]:
        if step not in found:
            below: set[str] = set()
            for child in children[step]:
                below.add(child)
                below |= walk(child)
            found[step] = frozenset(below)
        return found[step]

    for step in reversed(schema.step_names):  # children first: shallow recursion
        walk(step)
    return found


def compensable(state: RunState) -> list[TaskRecord]:
    """Tasks that completed (or are being undone) and whose step can be undone."""
    return [
        task
        for task in state.tasks.values()
        if task.map_count is None
        and task.status in UNDONE
        and state.schema.step(task.step).compensation is not None
    ]


def paged_undo(state: RunState) -> list[str]:
    """Paged fan-outs with a compensation whose completed items are in the store."""
    return [
        step
        for step in sorted(state.paged)
        if state.schema.step(step).compensation is not None and state.items_done.get(step, 0)
    ]


def begin(state: RunState, now: datetime) -> Changes | None:
    """A run that failed or was cancelled starts compensating, if it has anything to undo."""
    if state.run.status not in (RunStatus.FAILED, RunStatus.CANCELLED):
        return None
    paged = paged_undo(state)
    if not paged and not any(t.status is TaskStatus.COMPLETED for t in compensable(state)):
        return None
    changes = Changes()
    state.run.finished_at = None
    set_run(state, RunStatus.COMPENSATING, changes)
    for step in paged:
        state.undo_from[step] = 0
    return changes


def undo_paged(state: RunState) -> None:
    """A compensating run loaded from the store pages in its fan-outs' completed items
    (those undone already are no longer completed: they are not read again)."""
    if state.run.status is RunStatus.COMPENSATING:
        for step in paged_undo(state):
            state.undo_from.setdefault(step, 0)


def wants_page(state: RunState, step: str) -> bool:
    """Is `step`'s page in memory undone (nothing of it completed or being undone)?"""
    return step in state.undo_from and not any(
        task.step == step
        and task.map_index >= 0
        and task.status in (TaskStatus.COMPLETED, TaskStatus.COMPENSATING)
        for task in state.tasks.values()
    )


def paged_in(state: RunState, step: str, items: list[TaskRecord], limit: int) -> None:
    """A page of `step`'s completed items, read from the store from `undo_from[step]` on,
    at most `limit`: a shorter page was the last."""
    for item in items:
        state.tasks.setdefault(item.key, item)
    if len(items) < limit:
        del state.undo_from[step]
    else:
        state.undo_from[step] = items[-1].map_index + 1


def ready(state: RunState, below: dict[str, frozenset[str]]) -> list[TaskRecord]:
    """Completed tasks whose compensation may start now: all compensable tasks downstream
    of them are compensated (a paged fan-out: its last page read too). One pass over the
    tasks, not one per task."""
    tasks = compensable(state)
    undone = {t.step for t in tasks if t.status is not TaskStatus.COMPENSATED}
    undone.update(state.undo_from)
    return [
        task
        for task in tasks
        if task.status is TaskStatus.COMPLETED and not below[task.step] & undone
    ]


def start(task: TaskRecord, now: datetime) -> Changes:
    """A compensation attempt is dispatched for a completed task."""
    changes = Changes()
    if task.status is TaskStatus.COMPLETED:
        task.failures = task.lost = 0  # the compensation's own retry budget
        set_task(task, TaskStatus.COMPENSATING, changes)
    else:
        changes.updated_tasks.append((task, task.status))  # a retry: same status, new attempt
    task.ready_at = None
    task.attempts += 1
    return changes


def succeeded(task: TaskRecord, now: datetime) -> Changes:
    changes = Changes()
    task.error_type = task.error_message = None
    set_task(task, TaskStatus.COMPENSATED, changes)
    return changes


def retry_later(task: TaskRecord, failure: FailureInfo, retry_at: datetime) -> Changes:
    """A compensation attempt failed and will be tried again at `retry_at`."""
    changes = Changes()
    task.error_type, task.error_message = failure.error_type, failure.message
    task.ready_at = retry_at
    changes.updated_tasks.append((task, task.status))
    return changes


def gave_up(task: TaskRecord, failure: FailureInfo) -> Changes:
    changes = Changes()
    task.error_type, task.error_message = failure.error_type, failure.message
    set_task(task, TaskStatus.COMPENSATION_FAILED, changes)
    return changes


def finish(state: RunState, below: dict[str, frozenset[str]], now: datetime) -> Changes | None:
    """End the compensation when nothing is being undone and nothing more can start."""
    if state.run.status is not RunStatus.COMPENSATING:
        return None
    tasks = compensable(state)
    if state.undo_from or any(t.status is TaskStatus.COMPENSATING for t in tasks):
        return None
    if ready(state, below):
        return None
    changes = Changes()
    state.run.finished_at = now
    if all(t.status is TaskStatus.COMPENSATED for t in tasks):
        set_run(state, RunStatus.COMPENSATED, changes)
    else:
        failed = [t.step for t in tasks if t.status is TaskStatus.COMPENSATION_FAILED]
        state.run.error = (state.run.error or "") + f"; compensation failed: {', '.join(failed)}"
        set_run(state, RunStatus.COMPENSATION_FAILED, changes)
    return changes


def retry(state: RunState, now: datetime) -> Changes:
    """Take a run off the dead-letter list: its failed compensations are tried again now."""
    changes = Changes()
    for task in compensable(state):
        if task.status is TaskStatus.COMPENSATION_FAILED:
            task.failures = task.lost = 0
            task.ready_at = now
            set_task(task, TaskStatus.COMPENSATING, changes)
    state.run.finished_at = None
    set_run(state, RunStatus.COMPENSATING, changes)
    undo_paged(state)  # what a failure upstream of them left completed
    return changes
