"""Operator commands (cancel, resume, retry a compensation), applied in a loop turn."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from wfray.application.batch import Batch
from wfray.application.messages import CommandResult
from wfray.application.storable import clean_text
from wfray.coordinator.compensator import Compensator
from wfray.coordinator.loading import RunLoader
from wfray.coordinator.state import CoordinatorState
from wfray.domain import engine, saga
from wfray.domain.records import AttemptKey
from wfray.domain.run_state import RunState
from wfray.domain.status import RunStatus

Answers = list[tuple["asyncio.Future[CommandResult]", CommandResult]]


@dataclass(eq=False)
class Commands:
    state: CoordinatorState
    compensator: Compensator
    loader: RunLoader
    wake: asyncio.Event
    # (kind, run id, reason, answer), applied in the next loop turn
    pending: list[tuple[str, str, str, asyncio.Future[CommandResult]]] = field(
        default_factory=list, init=False
    )

    def internal(self, kind: str, run_id: str) -> None:
        """A command the coordinator gives itself (nobody awaits its answer)."""
        future: asyncio.Future[CommandResult] = asyncio.get_running_loop().create_future()
        self.pending.append((kind, run_id, "", future))

    async def submit(self, kind: str, run_ids: Sequence[str], reason: str) -> list[CommandResult]:
        loop = asyncio.get_running_loop()
        # a reason is kept as the run's error: storable (no NUL) and bounded like one
        reason = clean_text(reason, self.state.settings.text_limits.error_chars)
        futures = []
        for run_id in run_ids:
            future: asyncio.Future[CommandResult] = loop.create_future()
            self.pending.append((kind, run_id, reason, future))
            futures.append(future)
        self.wake.set()
        return list(await asyncio.gather(*futures))

    async def take(
        self, batch: Batch, now: datetime, touched: set[str]
    ) -> tuple[list[tuple[asyncio.Future[CommandResult], CommandResult]], list[AttemptKey]]:
        if not self.pending:
            return [], []
        commands, self.pending = self.pending, []
        await self.loader.load_runs(
            {run_id for _, run_id, _, _ in commands if run_id not in self.state.runs}
        )
        answers = []
        to_stop: list[AttemptKey] = []
        for kind, run_id, reason, future in commands:
            state = self.state.runs.get(run_id)
            if state is None:
                answer = CommandResult(run_id, False, "unknown", f"no run with id {run_id!r}")
            elif kind in ("cancel", "cancel-only"):
                answer = self._cancel_one(state, reason, now, batch, to_stop)
                if answer.applied and kind == "cancel":
                    self.compensator.run_ended(state, batch, now)
                    answer.status = state.run.status.value
            elif kind == "expire":
                answer = self._expire_one(state, now, batch, to_stop)
            elif kind == "retry-compensation":
                answer = self._retry_compensation_one(state, now, batch)
            else:
                answer = self._resume_one(state, now, batch)
            if state is not None:
                touched.add(run_id)
            answers.append((future, answer))
        return answers, to_stop

    def _cancel_one(
        self, state: RunState, reason: str, now: datetime, batch: Batch, to_stop: list[AttemptKey]
    ) -> CommandResult:
        run_id, status = state.run.run_id, state.run.status.value
        if state.finished:
            return CommandResult(run_id, False, status, f"run already {status}: nothing to do")
        self.state.record(state, engine.cancel_run(state, reason, now), batch)
        to_stop += self.state.attempts_of(run_id)
        return CommandResult(run_id, True, state.run.status.value, "cancelled")

    def _expire_one(
        self, state: RunState, now: datetime, batch: Batch, to_stop: list[AttemptKey]
    ) -> CommandResult:
        run_id = state.run.run_id
        if state.finished:
            return CommandResult(run_id, False, state.run.status.value, "finished in time")
        self.state.record(state, engine.expire_run(state, now), batch)
        to_stop += self.state.attempts_of(run_id)
        self.compensator.run_ended(state, batch, now)
        return CommandResult(run_id, True, state.run.status.value, "deadline exceeded")

    def _retry_compensation_one(
        self, state: RunState, now: datetime, batch: Batch
    ) -> CommandResult:
        run_id, status = state.run.run_id, state.run.status.value
        if state.run.status is not RunStatus.COMPENSATION_FAILED:
            return CommandResult(
                run_id,
                False,
                status,
                f"run is {status}: only a run whose compensation failed can have it retried",
            )
        self.state.record(state, saga.retry(state, now), batch)
        return CommandResult(run_id, True, state.run.status.value, "compensation retried")

    def _resume_one(self, state: RunState, now: datetime, batch: Batch) -> CommandResult:
        run_id, status = state.run.run_id, state.run.status.value
        if state.run.status not in engine.RESUMABLE:
            return CommandResult(
                run_id,
                False,
                status,
                f"run is {status}: only a failed or cancelled run can be resumed",
            )
        if engine.attempts_running(state):
            return CommandResult(
                run_id, False, status, "attempts of the run are still ending: resume it in a moment"
            )
        self.state.record(state, engine.resume_run(state, now), batch)
        return CommandResult(run_id, True, state.run.status.value, "resumed")
