"""The coordinator's side of compensation: when to start undoing, dispatching the undo
attempts, and applying their outcomes. The rules themselves live in `wfray.domain.saga`."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from wfray.application.batch import Batch
from wfray.application.messages import ArgSpec, Dispatch, Outcome
from wfray.coordinator.arguments import task_ref
from wfray.coordinator.dispatcher import Launcher, count_failure
from wfray.coordinator.state import CoordinatorState
from wfray.domain import engine, saga
from wfray.domain.policy import RetryPolicy
from wfray.domain.records import TaskRecord
from wfray.domain.run_state import Changes, RunState
from wfray.domain.status import AttemptStatus, RunStatus, TaskStatus
from wfray.domain.workflow import INPUT, RESULT

COMPENSATION = "compensation"


class Compensator:
    def __init__(
        self, state: CoordinatorState, launcher: Launcher, default_retry: RetryPolicy
    ) -> None:
        self.state = state
        self.launcher = launcher
        self.default_retry = default_retry
        self._below: dict[tuple[str, str], dict[str, frozenset[str]]] = {}

    def below(self, state: RunState) -> dict[str, frozenset[str]]:
        key = (state.schema.name, state.schema.version)
        if key not in self._below:
            self._below[key] = saga.descendants(state.schema)
        return self._below[key]

    def run_ended(self, state: RunState, batch: Batch, now: datetime) -> None:
        """A run just failed (or was cancelled with compensation): undo what it did."""
        changes = saga.begin(state, now)
        if changes is not None:
            self.state.record(state, changes, batch)

    def advance(self, states: Iterable[RunState], batch: Batch, now: datetime) -> list[Dispatch]:
        """Start the compensations that may start; end the compensation that is done."""
        dispatches: list[Dispatch] = []
        for state in states:
            if state.run.status is not RunStatus.COMPENSATING or engine.attempts_running(state):
                continue  # undo only once every forward attempt has ended
            for task in saga.compensable(state):
                due = task.ready_at is not None and task.ready_at <= now
                if task.status is TaskStatus.COMPENSATING and due and not self._running(task):
                    dispatches.append(self._dispatch(state, task, batch, now))
            for task in saga.ready(state, self.below(state)):
                dispatches.append(self._dispatch(state, task, batch, now))
            changes = saga.finish(state, self.below(state), now)
            if changes is not None:
                self.state.record(state, changes, batch)
        return dispatches

    def _running(self, task: TaskRecord) -> bool:
        return (task.run_id, task.step, task.map_index, task.attempts) in self.state.attempts

    def _dispatch(self, state: RunState, task: TaskRecord, batch: Batch, now: datetime) -> Dispatch:
        self.state.record(state, saga.start(task, now), batch)
        step = state.schema.step(task.step)
        self.state.queues.started(task)
        args: dict[str, ArgSpec] = {}
        for param, source in step.compensation_bindings.items():
            if source == RESULT:
                args[param] = task_ref(task)
            elif source == INPUT:
                args[param] = {"json": state.run.input_json}
        assert step.compensation is not None
        return self.launcher.launch(state, task, step.compensation, args, batch, now, COMPENSATION)

    def outcome(
        self, state: RunState, task: TaskRecord, outcome: Outcome, now: datetime
    ) -> Changes:
        """A compensation attempt ended."""
        if outcome.status is AttemptStatus.SUCCEEDED:
            return saga.succeeded(task, now)
        failure = count_failure(task, outcome)
        step = state.schema.step(task.step)
        policy = step.compensation_retry or state.schema.retry_for(
            task.step, None, self.default_retry
        )
        decision = policy.decide(failure, task.failures, task.lost, now)
        if decision.retry_at is None:
            return saga.gave_up(task, failure)
        self.state.timers.retry_at(decision.retry_at, task)
        return saga.retry_later(task, failure, decision.retry_at)
