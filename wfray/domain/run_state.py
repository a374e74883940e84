"""A run as the engine sees it (its record, schema and tasks), what one event changed, and
the two checked moves every rule makes: a task's or the run's status, transition-checked."""

from __future__ import annotations

from dataclasses import dataclass, field

from wfray.domain.records import WHOLE_STEP, RunRecord, TaskKey, TaskRecord
from wfray.domain.status import (
    RunStatus,
    TaskStatus,
    check_run_transition,
    check_task_transition,
)
from wfray.domain.workflow import WorkflowSchema


@dataclass(slots=True)
class Changes:
    """What one event changed: new and updated tasks, and whether the run changed."""

    new_tasks: list[TaskRecord] = field(default_factory=list)
    updated_tasks: list[tuple[TaskRecord, TaskStatus]] = field(default_factory=list)
    run_changed: RunStatus | None = None  # the run's status before the change
    ready: list[TaskRecord] = field(default_factory=list)  # tasks that became queued
    collect: list[str] = field(default_factory=list)  # paged fan-outs whose items all completed

    def extend(self, other: Changes) -> None:
        self.new_tasks.extend(other.new_tasks)
        self.updated_tasks.extend(other.updated_tasks)
        self.ready.extend(other.ready)
        self.collect.extend(other.collect)
        if self.run_changed is None:
            self.run_changed = other.run_changed


@dataclass(slots=True)
class RunState:
    """A run with its schema and its task executions, keyed by (step, map_index)."""

    run: RunRecord
    schema: WorkflowSchema
    tasks: dict[TaskKey, TaskRecord] = field(default_factory=dict)
    children: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # completed items per fanned-out step: a completion need not look at every sibling
    items_done: dict[str, int] = field(default_factory=dict)
    # per waiting step, how many of its parents (in order) are known completed: a fan-in
    # over N steps looks at each parent once, not N times (a completed task stays so)
    parents_done: dict[str, int] = field(default_factory=dict)
    # A fan-out wider than `window` items is paged: its items are created a slice at a
    # time as the coordinator has room (`next_item`: the next index to create, while some
    # are left), a completed item leaves memory (`items_done` counts it), and the results
    # are collected from the store once, when the last one completes (`collected`).
    window: int | None = None  # None: no fan-out is paged
    paged: set[str] = field(default_factory=set)
    next_item: dict[str, int] = field(default_factory=dict)
    collected: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    # A paged fan-out whose step has a compensation, while its run is undone: the next map
    # index of its completed items to page back in from the store (saga.py); absent once
    # every completed item was paged in (an undone item leaves memory again).
    undo_from: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.children:
            self.children = self.schema.downstream()
        for task in self.tasks.values():
            if task.map_index != WHOLE_STEP and task.status is TaskStatus.COMPLETED:
                self.items_done[task.step] = self.items_done.get(task.step, 0) + 1

    def task(self, step: str, map_index: int = WHOLE_STEP) -> TaskRecord:
        return self.tasks[(step, map_index)]

    def pages(self, step: str, count: int) -> bool:
        """Is a fan-out of `count` items of `step` too wide to hold in memory? (Its
        completed items are paged back in if the run is undone: saga.py.)"""
        window = self.window
        return window is not None and count > window

    def items(self, step: str) -> list[TaskRecord]:
        group = self.tasks[(step, WHOLE_STEP)]
        return [self.tasks[(step, i)] for i in range(group.map_count or 0)]

    @property
    def finished(self) -> bool:
        return self.run.status.finished


def attempts_running(state: RunState) -> bool:
    """Whether an attempt of one of the run's steps is still running somewhere."""
    return any(
        task.status is TaskStatus.RUNNING and task.map_count is None
        for task in state.tasks.values()
    )


def set_task(task: TaskRecord, status: TaskStatus, changes: Changes) -> None:
    check_task_transition(task.status, status)
    changes.updated_tasks.append((task, task.status))
    task.status = status


def set_run(state: RunState, status: RunStatus, changes: Changes) -> None:
    check_run_transition(state.run.status, status)
    if changes.run_changed is None:
        changes.run_changed = state.run.status
    state.run.status = status
