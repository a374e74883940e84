"""Run and task statuses and the transitions allowed between them.

Storage enforces the same table with compare-and-set (`UPDATE ... WHERE status = :expected`).
"""

from __future__ import annotations

from enum import StrEnum

from wfray.domain.errors import InvalidTransitionError


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation_failed"

    @property
    def finished(self) -> bool:
        return self in RUN_FINISHED


class TaskStatus(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation_failed"

    @property
    def finished(self) -> bool:
        return self in TASK_FINISHED


class AttemptStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    LOST = "lost"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


RUN_FINISHED = frozenset(
    {
        RunStatus.COMPLETED,
        RunStatus.FAILED,
        RunStatus.CANCELLED,
        RunStatus.COMPENSATED,
        RunStatus.COMPENSATION_FAILED,
    }
)

TASK_FINISHED = frozenset(
    {
        TaskStatus.COMPLETED,
        TaskStatus.FAILED,
        TaskStatus.CANCELLED,
        TaskStatus.SKIPPED,
        TaskStatus.COMPENSATED,
        TaskStatus.COMPENSATION_FAILED,
    }
)

# runs the coordinator reloads after a restart: they have work in flight
ACTIVE_RUNS = frozenset({RunStatus.RUNNING, RunStatus.COMPENSATING})

RUN_TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.QUEUED: frozenset({RunStatus.RUNNING, RunStatus.CANCELLED, RunStatus.FAILED}),
    RunStatus.RUNNING: frozenset(
        {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.COMPENSATING}
    ),
    RunStatus.FAILED: frozenset({RunStatus.COMPENSATING, RunStatus.RUNNING}),
    RunStatus.CANCELLED: frozenset({RunStatus.COMPENSATING, RunStatus.RUNNING}),
    RunStatus.COMPENSATING: frozenset({RunStatus.COMPENSATED, RunStatus.COMPENSATION_FAILED}),
    RunStatus.COMPENSATION_FAILED: frozenset({RunStatus.COMPENSATING}),
    RunStatus.COMPLETED: frozenset(),
    RunStatus.COMPENSATED: frozenset(),
}

TASK_TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.PENDING: frozenset(
        {
            TaskStatus.QUEUED,
            TaskStatus.RUNNING,
            TaskStatus.CANCELLED,
            TaskStatus.SKIPPED,
            TaskStatus.COMPLETED,
            TaskStatus.FAILED,
        }  # FAILED: a fan-out over a non-list
    ),
    TaskStatus.QUEUED: frozenset({TaskStatus.RUNNING, TaskStatus.CANCELLED}),
    TaskStatus.RUNNING: frozenset(
        {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.RETRYING, TaskStatus.CANCELLED}
    ),
    TaskStatus.RETRYING: frozenset({TaskStatus.QUEUED, TaskStatus.CANCELLED}),
    TaskStatus.COMPLETED: frozenset({TaskStatus.COMPENSATING}),
    # a resumed run reopens what did not complete
    TaskStatus.FAILED: frozenset({TaskStatus.QUEUED, TaskStatus.PENDING, TaskStatus.RUNNING}),
    TaskStatus.CANCELLED: frozenset({TaskStatus.QUEUED, TaskStatus.PENDING, TaskStatus.RUNNING}),
    TaskStatus.SKIPPED: frozenset(),
    TaskStatus.COMPENSATING: frozenset({TaskStatus.COMPENSATED, TaskStatus.COMPENSATION_FAILED}),
    TaskStatus.COMPENSATION_FAILED: frozenset({TaskStatus.COMPENSATING}),
    TaskStatus.COMPENSATED: frozenset(),
}


def check_run_transition(current: RunStatus, new: RunStatus) -> None:
    """Raise InvalidTransitionError unless a run may go from `current` to `new`."""
    if new not in RUN_TRANSITIONS[current]:
        raise InvalidTransitionError(f"run cannot go from {current.value!r} to {new.value!r}")


def check_task_transition(current: TaskStatus, new: TaskStatus) -> None:
    """Raise InvalidTransitionError unless a task may go from `current` to `new`."""
    if new not in TASK_TRANSITIONS[current]:
        raise InvalidTransitionError(f"task cannot go from {current.value!r} to {new.value!r}")
