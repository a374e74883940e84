"""A batch: everything one coordinator loop turn decided, committed in one transaction.

Changes to the same record within a turn coalesce: the record is written once in its final
state, compare-and-set against the status it had at the previous commit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wfray.domain.records import AttemptKey, AttemptRecord, LogRecord, RunRecord, TaskRecord
from wfray.domain.status import AttemptStatus, RunStatus, TaskStatus
from wfray.domain.workflow import WorkflowSchema

RunKey = str
TaskRowKey = tuple[str, str, int]


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """A row of a batch that the store refused on its own (the rest would go in).

    `what` is run, task, attempt, log or workflow; `key` names the row: (run_id,),
    (run_id, step, map_index), the same plus the attempt, or for a log line its attempt key
    and its index in `Batch.logs`.
    """

    run_id: str
    what: str
    key: tuple[Any, ...]
    reason: str


@dataclass(slots=True)
class Batch:
    """Rows to insert, rows to update (with the status expected in the store), and logs."""

    new_runs: dict[RunKey, RunRecord] = field(default_factory=dict)
    run_updates: dict[RunKey, tuple[RunRecord, RunStatus]] = field(default_factory=dict)
    new_tasks: dict[TaskRowKey, TaskRecord] = field(default_factory=dict)
    task_updates: dict[TaskRowKey, tuple[TaskRecord, TaskStatus]] = field(default_factory=dict)
    new_attempts: dict[AttemptKey, AttemptRecord] = field(default_factory=dict)
    attempt_updates: dict[AttemptKey, tuple[AttemptRecord, AttemptStatus]] = field(
        default_factory=dict
    )
    logs: list[LogRecord] = field(default_factory=list)
    workflows: list[WorkflowSchema] = field(default_factory=list)

    def insert_run(self, run: RunRecord) -> None:
        self.new_runs[run.run_id] = run

    def update_run(self, run: RunRecord, expected: RunStatus) -> None:
        if run.run_id in self.new_runs or run.run_id in self.run_updates:
            return  # already in the batch: written in its final state
        self.run_updates[run.run_id] = (run, expected)

    def insert_task(self, task: TaskRecord) -> None:
        self.new_tasks[(task.run_id, task.step, task.map_index)] = task

    def update_task(self, task: TaskRecord, expected: TaskStatus) -> None:
        key = (task.run_id, task.step, task.map_index)
        if key in self.new_tasks or key in self.task_updates:
            return
        self.task_updates[key] = (task, expected)

    def insert_attempt(self, attempt: AttemptRecord) -> None:
        key = (attempt.run_id, attempt.step, attempt.map_index, attempt.attempt)
        self.new_attempts[key] = attempt

    def update_attempt(self, attempt: AttemptRecord, expected: AttemptStatus) -> None:
        key = (attempt.run_id, attempt.step, attempt.map_index, attempt.attempt)
        if key in self.new_attempts or key in self.attempt_updates:
            return
        self.attempt_updates[key] = (attempt, expected)

    def without(self, run_ids: set[str], lines: set[int]) -> Batch:
        """This batch less every row of `run_ids` and the log lines at indexes `lines` (log
        lines of those runs stay: no other row depends on them)."""
        return Batch(
            new_runs={k: v for k, v in self.new_runs.items() if k not in run_ids},
            run_updates={k: v for k, v in self.run_updates.items() if k not in run_ids},
            new_tasks={k: v for k, v in self.new_tasks.items() if k[0] not in run_ids},
            task_updates={k: v for k, v in self.task_updates.items() if k[0] not in run_ids},
            new_attempts={k: v for k, v in self.new_attempts.items() if k[0] not in run_ids},
            attempt_updates={k: v for k, v in self.attempt_updates.items() if k[0] not in run_ids},
            logs=[line for i, line in enumerate(self.logs) if i not in lines],
            workflows=list(self.workflows),
        )

    def __len__(self) -> int:
        return (
            len(self.new_runs)
            + len(self.run_updates)
            + len(self.new_tasks)
            + len(self.task_updates)
            + len(self.new_attempts)
            + len(self.attempt_updates)
            + len(self.logs)
            + len(self.workflows)
        )
