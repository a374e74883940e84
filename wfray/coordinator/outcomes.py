"""Applying outcomes: how an attempt ended becomes the next decision of the engine, a
retry timer, or a step of the saga; every ended attempt is noted, to be counted for the
metrics once its rows commit (coordinator.py)."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from wfray.application.batch import Batch
from wfray.application.messages import Outcome
from wfray.application.storable import screen
from wfray.coordinator.compensator import COMPENSATION, Compensator
from wfray.coordinator.dispatcher import count_failure
from wfray.coordinator.settings import CoordinatorSettings
from wfray.coordinator.state import CoordinatorState, EndedAttempt
from wfray.domain import engine
from wfray.domain.policy import RetryPolicy
from wfray.domain.records import WHOLE_STEP, AttemptRecord, TaskRecord
from wfray.domain.run_state import Changes, RunState
from wfray.domain.status import AttemptStatus, RunStatus, TaskStatus

log = logging.getLogger("wfray.coordinator")


class PoisonedOutcomes(Protocol):
    def replace_poisoned(self, outcome: Outcome) -> None: ...


@dataclass(eq=False)
class OutcomeApplier:
    state: CoordinatorState
    settings: CoordinatorSettings
    compensator: Compensator
    poisoned: PoisonedOutcomes

    def apply(self, outcome: Outcome, batch: Batch, now: datetime, touched: set[str]) -> None:
        """How an attempt ended: record it, then let the engine (or the saga) decide what
        follows."""
        memory = self.state
        attempt = memory.attempt_ended(outcome.attempt_key)
        if attempt is None:
            return  # already applied (an outcome replayed after a restart)
        screen(outcome, self.settings.text_limits)
        self.poisoned.replace_poisoned(outcome)
        _refuse_wide_fan_out(memory.runs.get(outcome.run_id), outcome, self.settings.max_map_items)
        _fill_attempt(attempt, outcome)
        batch.update_attempt(attempt, AttemptStatus.RUNNING)
        self._count_attempt(attempt)
        batch.logs.extend(outcome.logs)
        state = memory.runs.get(outcome.run_id)
        if state is None:
            log.warning("outcome for run %s, which is not active: recorded only", outcome.run_id)
            return
        task = state.tasks.get((outcome.step, outcome.map_index))
        if task is None:  # a paged fan-out's item that completed already: recorded only
            return
        touched.add(state.run.run_id)
        if outcome.progress_json is not None and task.attempts == outcome.attempt:
            task.progress_json = outcome.progress_json  # stored with the task's update
        memory.queues.finished(task)
        if attempt.kind == COMPENSATION:
            if task.status is TaskStatus.COMPENSATING and task.attempts == outcome.attempt:
                memory.record(state, self.compensator.outcome(state, task, outcome, now), batch)
            return
        if task.status is not TaskStatus.RUNNING or task.attempts != outcome.attempt:
            return  # the run moved on (failed or cancelled): keep the record only
        if outcome.status is AttemptStatus.SUCCEEDED:
            changes = engine.complete_task(
                state, task, outcome.result_json, outcome.result_ref, outcome.result_items, now
            )
        elif outcome.status is AttemptStatus.CANCELLED and state.finished:
            changes = engine.cancel_task(task, outcome.error_message or "cancelled", now)
        else:
            changes = self._failed(state, task, outcome, now)
        memory.record(state, changes, batch)
        if state.run.status is RunStatus.FAILED:
            self.compensator.run_ended(state, batch, now)

    def _count_attempt(self, attempt: AttemptRecord) -> None:
        state = self.state.runs.get(attempt.run_id)
        duration = None
        if attempt.started_at is not None and attempt.finished_at is not None:
            duration = (attempt.finished_at - attempt.started_at).total_seconds()
            if state is not None and attempt.kind == "step":
                self.state.short_steps.finished(state.run.workflow, attempt.step, duration)
        workflow = state.run.workflow if state else "?"
        self.state.ended_attempts.append(
            EndedAttempt(
                attempt.run_id, workflow, attempt.step, attempt.kind, attempt.status.value, duration
            )
        )

    def _failed(
        self, state: RunState, task: TaskRecord, outcome: Outcome, now: datetime
    ) -> Changes:
        failure = count_failure(task, outcome)
        override = _override(state.run.retry_json)
        policy = state.schema.retry_for(task.step, override, self.settings.default_retry)
        decision = policy.decide(failure, task.failures, task.lost, now)
        if decision.retry_at is None or state.finished:  # no retry for a run that ended
            return engine.fail_task(state, task, failure, now)
        changes = engine.schedule_retry(task, failure, decision.retry_at)
        self.state.retries.append((state.run.run_id, state.run.workflow, task.step))
        self.state.timers.retry_at(decision.retry_at, task)
        return changes


def _refuse_wide_fan_out(state: RunState | None, outcome: Outcome, limit: int) -> None:
    """A list longer than the limit that a later step maps over fails its step at once
    (not retried: the same list would come back), before a task row is written for it."""
    items = outcome.result_items
    if state is None or outcome.status is not AttemptStatus.SUCCEEDED or items is None:
        return
    if items <= limit or outcome.map_index != WHOLE_STEP:
        return
    mappers = [s.name for s in state.schema.steps if s.map == outcome.step]
    if not mappers:
        return
    outcome.status = AttemptStatus.FAILED
    outcome.result_json = outcome.result_ref = None
    outcome.error_type = "wfray.FanOutTooLargeError"
    outcome.error_message = (
        f"step {outcome.step!r} returned {items:,} items for step {mappers[0]!r} to map over, "
        f"over the limit of {limit:,} (WFRAY_MAX_MAP_ITEMS); split the work into several "
        "runs or child workflows, or raise the limit"
    )
    outcome.retryable = False


@functools.lru_cache(maxsize=1024)
def _override(retry_json: str | None) -> RetryPolicy | None:
    return None if retry_json is None else RetryPolicy.model_validate_json(retry_json)


def _fill_attempt(attempt: AttemptRecord, outcome: Outcome) -> None:
    attempt.status = outcome.status
    attempt.started_at = outcome.started_at
    attempt.finished_at = outcome.finished_at
    attempt.node_id = outcome.worker.node_id
    attempt.worker_id = outcome.worker.worker_id
    attempt.host = outcome.worker.host
    attempt.pid = outcome.worker.pid
    attempt.error_type = outcome.error_type
    attempt.error_message = outcome.error_message
    attempt.traceback = outcome.traceback
