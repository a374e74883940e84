"""The Coordinator: one loop that turns events into decisions, commits them, then acts.

Ray-free: the Ray adapter hosts it in a detached actor. Each loop turn takes everything that
arrived (submissions, outcomes, lost attempts, due timers), asks the engine and the queue
manager what follows, commits all of it in one transaction (group commit without linger),
and only then answers callers and sends dispatches. Its memory is a cache of the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from wfray.application import events
from wfray.application.arguments import ArgumentBuilder
from wfray.application.batch import Batch
from wfray.application.claims import ClaimDesk
from wfray.application.commands import Commands
from wfray.application.compensator import Compensator
from wfray.application.dispatcher import Dispatcher
from wfray.application.fusion import SHORT_STEP_S, ShortSteps
from wfray.application.heartbeats import HeartbeatWatch
from wfray.application.intake import Intake
from wfray.application.messages import (
    CommandResult,
    Outcome,
    RunView,
    SubmitRequest,
    SubmitResult,
)
from wfray.application.metrics import Metrics, MetricsBuffer
from wfray.application.outcomes import apply as apply_outcome
from wfray.application.poison import REFUSED, PoisonGuard
from wfray.application.ports import Clock, RunStore, StepExecutor
from wfray.application.reconciler import Reconciler
from wfray.application.storable import TextLimits, clean_logs, problem
from wfray.application.waiting import Waiting
from wfray.domain import engine
from wfray.domain.engine import Changes, RunState
from wfray.domain.errors import StoreUnavailableError, UnknownWorkflowError
from wfray.domain.policy import RetryPolicy
from wfray.domain.queueing import QueueConfig, QueueManager
from wfray.domain.records import WHOLE_STEP, AttemptRecord, LogRecord, RunRecord, TaskRecord
from wfray.domain.status import TaskStatus
from wfray.domain.workflow import WorkflowSchema

log = logging.getLogger("wfray.coordinator")

AttemptKey = tuple[str, str, int, int]
DEADLINE = ""  # the step name of a run's deadline in the timer heap
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CoordinatorSettings:
    queues: tuple[QueueConfig, ...] = ()
    pool_windows: dict[str, int] = field(default_factory=lambda: {"cpu": 256, "io": 256})
    default_retry: RetryPolicy = field(default_factory=RetryPolicy)
    memory_cap: int = 10_000
    max_backlog: int = 1_000_000
    max_map_items: int = 1_000_000  # a longer list mapped over fails its step (outcomes.py)
    quarantine_after_deaths: int = 3  # starts gone down applying one outcome (poison.py)
    drain_wait_s: float = 1.0
    commit_retry_max_s: float = 5.0
    share_short_steps: bool = True  # may short cpu attempts share Ray tasks (fusion.py)
    short_step_s: float = SHORT_STEP_S  # under this mean duration a step is short
    text_limits: TextLimits = field(default_factory=TextLimits)  # storable.py


class Coordinator:
    """Orchestrates runs: persists every decision before acting on it."""

    def __init__(
        self,
        store: RunStore,
        executors: dict[str, StepExecutor],
        clock: Clock,
        settings: CoordinatorSettings | None = None,
    ) -> None:
        self.store = store
        self.executors = executors
        self.clock = clock
        self.settings = settings or CoordinatorSettings()
        self.runs: dict[str, RunState] = {}
        self.schemas: dict[tuple[str, str], WorkflowSchema] = {}
        self.attempts: dict[AttemptKey, AttemptRecord] = {}
        self.queues = QueueManager(
            list(self.settings.queues), self.settings.pool_windows, self.settings.memory_cap
        )
        self.args = ArgumentBuilder()
        self.intake = Intake(self)
        self.compensator = Compensator(self)
        self.dispatcher = Dispatcher(self)
        self.retouch: set[str] = set()  # runs to look at in the next turn (after recovery)
        self.reconciler = Reconciler(self)
        self.heartbeats = HeartbeatWatch(self)
        self.short_steps = ShortSteps(self.settings.short_step_s)
        self.streamed_logs: list[LogRecord] = []
        # callers of append_logs, answered once their lines are committed
        self.log_waiters: list[asyncio.Future[bool]] = []
        self.guard = PoisonGuard(self)
        self.metrics: Metrics = MetricsBuffer()
        self.timers: list[tuple[datetime, str, str, int]] = []
        self.outcomes: list[tuple[str, Outcome]] = []
        self.waiting = Waiting(self)
        self.commands = Commands(self)
        self.claims = ClaimDesk(self)  # claims.py: steps' claims, one store call each
        self.seq = 0
        self.queued_count = 0
        self.wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False
        self.committing: asyncio.Future[None] | None = None
        self.turns = 0

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Recover from the store, reconcile with the executors, and start the loop."""
        await self.reconciler.recover()
        self._loop_task = asyncio.create_task(self._run_loop(), name="wfray-coordinator-loop")
        self.reconciler.start_drainers()

    async def stop(self) -> None:
        self._stopping = True
        self.wake.set()
        await self.reconciler.stop_drainers()
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task

    @property
    def stopping(self) -> bool:
        return self._stopping

    # -- the public calls ------------------------------------------------------------------

    async def register(self, schemas: Sequence[WorkflowSchema]) -> None:
        """Store workflow schemas (idempotent: a version is its content hash)."""
        for schema in schemas:
            if (schema.name, schema.version) not in self.schemas:
                await self.durably(self.store.save_workflow, schema)
                self.schemas[(schema.name, schema.version)] = schema

    def heartbeat(self, beats: Sequence[tuple[AttemptKey, str | None]]) -> None:
        """Running attempts report they are alive, with their progress (JSON) if any."""
        now = self.clock.now()
        for key, progress_json in beats:
            if problem(progress_json) is not None:
                progress_json = None  # a hint for operators, never worth a failed commit
            self.heartbeats.beat(tuple(key), progress_json, now)  # type: ignore[arg-type]
        self.wake.set()

    def report(self, pool: str, outcome: Outcome) -> None:
        """An outcome straight from the worker (Dispatch.report_directly). The executor
        delivers it too; whichever comes first is applied, the other is ignored."""
        self.outcomes.append((pool, outcome))
        self.wake.set()

    async def append_logs(self, lines: Sequence[LogRecord]) -> bool:
        """Log lines of running attempts, stored with the next commit; answers once they
        are committed, so the worker keeps them until then (and sends them again if this
        coordinator dies first: the store drops lines it holds already)."""
        self.streamed_logs.extend(clean_logs(list(lines), self.settings.text_limits))
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.log_waiters.append(waiter)
        self.wake.set()
        return await waiter

    async def submit(self, requests: Sequence[SubmitRequest]) -> list[SubmitResult]:
        """Start runs; answers only after they are committed."""
        return await self.intake.submit(requests)

    async def submit_and_wait(
        self, requests: Sequence[SubmitRequest], timeout_s: float
    ) -> tuple[list[SubmitResult], list[RunView]]:
        """Start runs and wait until they finish (or the timeout passes): one call where a
        caller would make two."""
        results = await self.submit(requests)
        views = await self.wait([r.run_id for r in results if r.error is None], timeout_s)
        return results, views

    async def cancel(
        self, run_ids: Sequence[str], reason: str = "", compensate: bool = True
    ) -> list[CommandResult]:
        """Cancel runs: waiting steps at once, running attempts through their executors;
        then what they completed is compensated, unless `compensate` is False.

        Cancelling a run that already finished changes nothing and says so.
        """
        kind = "cancel" if compensate else "cancel-only"
        answers = await self._command(kind, run_ids, reason or "cancelled on request")
        applied = [a.run_id for a in answers if a.applied]
        children = await self.durably(self.store.child_runs, applied) if applied else []
        active = [run.run_id for run in children if not run.status.finished]
        if active:  # cancelling a parent cancels its children (and theirs)
            await self.cancel(active, f"parent run cancelled: {reason}".rstrip(": "), compensate)
        return answers

    async def next_value(self, counter: str, count: int = 1) -> int:
        """Advance a named counter in the store (invoice numbers): never the same value
        twice, gaps allowed."""
        return await self.durably(self.store.next_value, counter, count)

    async def publish(
        self,
        name: str,
        payload_json: str,
        event_id: str,
        source: str = "client",
        inputs: Mapping[str, str] | None = None,
        keys: Mapping[str, str] | None = None,
    ) -> list[str]:
        """Start every workflow subscribed to event `name`, once per event id, each with
        its input as validated by the publisher (`events.validated_inputs`) and its
        uniqueness key (`events.unique_keys`)."""
        return await events.publish(self, name, payload_json, event_id, source, inputs, keys)

    async def retry_compensation(self, run_ids: Sequence[str]) -> list[CommandResult]:
        """Take runs off the dead-letter list: their failed compensations are tried again."""
        return await self._command("retry-compensation", run_ids, "")

    async def resume(self, run_ids: Sequence[str]) -> list[CommandResult]:
        """Resume failed or cancelled runs from the steps that did not complete."""
        return await self._command("resume", run_ids, "")

    async def _command(self, kind: str, run_ids: Sequence[str], reason: str) -> list[CommandResult]:
        return await self.commands.submit(kind, run_ids, reason)

    async def wait(self, run_ids: Sequence[str], timeout_s: float) -> list[RunView]:
        """Wait until the runs finish (or the timeout passes) and return their views."""
        return await self.waiting.wait(run_ids, timeout_s)

    async def views(self, run_ids: Sequence[str]) -> list[RunView]:
        """The runs as the store holds them (a turn being committed is waited for)."""
        return await self.waiting.views(run_ids)

    async def schema(self, name: str, version: str | None) -> WorkflowSchema:
        if version is not None and (name, version) in self.schemas:
            return self.schemas[(name, version)]
        found = await self.durably(self.store.get_workflow, name, version)
        if found is None:
            what = f"{name!r} version {version!r}" if version else repr(name)
            raise UnknownWorkflowError(f"unknown workflow {what}; register it before submitting")
        self.schemas[(found.name, found.version)] = found
        return found

    def stats(self) -> dict[str, object]:
        return {
            "runs_in_memory": len(self.runs),
            "tasks_held": self.queues.held,
            "running_attempts": len(self.attempts),
            "running_by_executor": {e: n for e, n in self.reconciler.running_on.items() if n},
            "queued": self.queued_count,
            "timers": len(self.timers),
            "turns": self.turns,
            "traffic": dict(self.reconciler.traffic),
            "queues": self.queues.depth(),
            "metrics": self.metrics.snapshot() if isinstance(self.metrics, MetricsBuffer) else {},
        }

    # -- the loop ---------------------------------------------------------------------------

    async def _run_loop(self) -> None:
        while not self._stopping:
            timeout = self._idle_timeout()
            if timeout is None or timeout > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout)
            self.wake.clear()
            if self.stopping:
                return
            await self._turn()

    def _idle_timeout(self) -> float | None:
        now = self.clock.now()
        deadlines = [self.timers[0][0]] if self.timers else []
        beat_due = self.heartbeats.next_due()
        if beat_due is not None:
            deadlines.append(beat_due)
        token = self.queues.next_wakeup(now)
        if token is not None:
            deadlines.append(token)
        if not deadlines:
            return None
        return max(0.0, (min(deadlines) - now).total_seconds())

    async def _turn(self) -> None:
        self.turns += 1
        now = self.clock.now()
        batch = Batch()
        touched: set[str] = set()
        accepted = await self.intake.take(batch, now, touched)
        outcomes, self.outcomes = self.outcomes, []
        await self.guard.applying(outcomes)
        acks: dict[str, int] = {}
        self.heartbeats.apply(batch)
        log_waiters, self.log_waiters = self.log_waiters, []
        if self.streamed_logs:
            batch.logs.extend(self.streamed_logs)
            self.streamed_logs = []
        for pool, outcome in outcomes:
            apply_outcome(self, outcome, batch, now, touched)
            acks[pool] = max(acks.get(pool, 0), outcome.seq)
        for outcome in self.heartbeats.expire(now):
            apply_outcome(self, outcome, batch, now, touched)
        self._fire_timers(batch, now, touched)
        cancelled, to_stop = await self.commands.take(batch, now, touched)
        touched |= self.retouch
        self.retouch = set()
        dispatches = self.dispatcher.dispatch(batch, now, touched)
        dispatches += self.compensator.advance(
            [self.runs[r] for r in touched if r in self.runs], batch, now
        )
        aside: set[str] | None = None
        try:
            await self._commit(batch)
        except REFUSED as exc:  # not an outage: what it holds (poison.py)
            aside = await self.guard.commit_around(batch, exc, outcomes, accepted)
        for waiter in log_waiters:
            if not waiter.done():
                waiter.set_result(True)
        self.intake.answer(accepted)
        for future, answer in cancelled:
            if not future.done():
                future.set_result(answer)
        self.reconciler.stop(to_stop)
        if aside is not None:
            self._settle(touched - aside)
            await self.guard.rebuild(dispatches, aside)
            return
        self.reconciler.acknowledge(acks)
        self.reconciler.send(dispatches)
        self._settle(touched)
        await self.dispatcher.page_in()

    def reset_memory(self) -> None:
        """Forget every run, attempt, queue and timer: `reconciler.recover` rebuilds them from
        the store (waiters, pending submissions and commands stay)."""
        self.runs.clear()
        self.attempts.clear()
        self.queues = QueueManager(
            list(self.settings.queues), self.settings.pool_windows, self.settings.memory_cap
        )
        self.args = ArgumentBuilder()
        self.heartbeats = HeartbeatWatch(self)
        self.timers = []
        self.retouch = set()
        self.reconciler.running_on.clear()

    async def _commit(self, batch: Batch) -> None:
        if not len(batch):
            return
        self.committing = asyncio.get_running_loop().create_future()
        try:
            await self.durably(self.store.commit, batch)
        finally:
            if not self.committing.done():
                self.committing.set_result(None)
            self.committing = None

    async def durably(self, call: Callable[..., T], *args: Any) -> T:
        """Run a store call in a thread, waiting out database outages (a restart, a failover).

        A commit interrupted around COMMIT is replayed: the store makes that idempotent.
        """
        delay = 0.05
        while True:
            try:
                return await asyncio.to_thread(call, *args)
            except StoreUnavailableError as exc:
                if self._stopping:
                    raise
                name = getattr(call, "__name__", "call")
                log.warning("store unavailable, retrying %s in %.2fs: %s", name, delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.commit_retry_max_s)

    # -- applying events ---------------------------------------------------------------------

    def record(self, state: RunState, changes: Changes, batch: Batch) -> None:
        """Put an engine decision into the batch and queue what became ready."""
        for task in changes.ready:
            self._enqueue(task)
        for task in changes.new_tasks:
            batch.insert_task(task)
        for task, expected in changes.updated_tasks:
            batch.update_task(task, expected)
            if expected is TaskStatus.QUEUED and task.status is TaskStatus.CANCELLED:
                self.queued_count -= 1  # held or not, it left the backlog
        if changes.run_changed is not None:
            batch.update_run(state.run, changes.run_changed)
            if state.run.status.finished:
                self.metrics.run_finished(state.run.workflow, state.run.status.value)

    def _enqueue(self, task: TaskRecord) -> None:
        self.seq += 1
        task.seq = self.seq
        self.queued_count += 1
        self.queues.push(task)

    def watch_deadline(self, run_id: str, deadline: datetime) -> None:
        heapq.heappush(self.timers, (deadline, run_id, DEADLINE, WHOLE_STEP))

    def _fire_timers(self, batch: Batch, now: datetime, touched: set[str]) -> None:
        while self.timers and self.timers[0][0] <= now:
            _, run_id, step, index = heapq.heappop(self.timers)
            if step == DEADLINE:
                self.commands.internal("expire", run_id)  # the run may wait in the store only
                continue
            state = self.runs.get(run_id)
            task = state.tasks.get((step, index)) if state else None
            if state is None or task is None:
                continue
            if task.status is TaskStatus.COMPENSATING:
                touched.add(run_id)  # a compensation's retry is due: the saga phase sends it
            elif task.status is TaskStatus.RETRYING:
                touched.add(run_id)
                self.record(state, engine.requeue(task, now), batch)

    # -- after the commit ----------------------------------------------------------------------

    def _settle(self, touched: set[str]) -> None:
        """Answer waiters of finished runs and drop from memory what needs no attention."""
        for run_id in touched:
            state = self.runs.get(run_id)
            if state is None:
                continue
            if state.finished:
                self.waiting.finished(state.run)
                if not engine.attempts_running(state):  # else stay, to record how they end
                    self._evict(run_id)
            elif not self._live(state):
                self._evict(run_id)

    def _live(self, state: RunState) -> bool:
        for task in state.tasks.values():
            if task.status in (TaskStatus.RUNNING, TaskStatus.RETRYING, TaskStatus.COMPENSATING):
                return True
            if task.status is TaskStatus.QUEUED and self.queues.holds(
                (task.run_id, task.step, task.map_index)
            ):
                return True
        return False

    def _evict(self, run_id: str) -> None:
        self.runs.pop(run_id, None)
        self.args.forget(run_id)

    async def load_runs(self, run_ids: set[str]) -> None:
        """Bring runs (and their tasks) from the store into memory."""
        if not run_ids:
            return
        ids = sorted(run_ids)
        runs = await self.durably(self.store.find_runs, ids)
        tasks = await self.durably(self.store.get_tasks, ids)
        for run in runs.values():
            if run.run_id not in self.runs:
                self.adopt(
                    run,
                    [t for t in tasks if t.run_id == run.run_id],
                    await self.schema(run.workflow, run.version),
                )

    def adopt(self, run: RunRecord, tasks: list[TaskRecord], schema: WorkflowSchema) -> RunState:
        state = RunState(run=run, schema=schema, tasks={t.key: t for t in tasks})
        self.runs[run.run_id] = state
        return state
