"""The Coordinator: one loop that turns events into decisions, commits them, then acts.

Ray-free: the Ray adapter hosts it in a detached actor. Each loop turn takes everything that
arrived (submissions, outcomes, lost attempts, due timers), asks the engine and the queue
manager what follows, commits all of it in one transaction (group commit without linger),
and only then answers callers and sends dispatches. Its memory is a cache of the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from wfray.application.messages import (
    CommandResult,
    Outcome,
    RunView,
    SubmitRequest,
    SubmitResult,
)
from wfray.application.metrics import Metrics, MetricsBuffer
from wfray.application.moments import Moment
from wfray.application.ports import Clock, PackageKeeper, RunLedger, StepExecutor
from wfray.application.storable import clean_logs, problem
from wfray.coordinator import publishing
from wfray.coordinator.claims import ClaimDesk
from wfray.coordinator.commands import Commands
from wfray.coordinator.compensator import Compensator
from wfray.coordinator.dispatcher import Dispatcher, Launcher
from wfray.coordinator.durable import DurableStore
from wfray.coordinator.fanout import FanOuts
from wfray.coordinator.health import Health, record_start, stats
from wfray.coordinator.heartbeats import HeartbeatWatch
from wfray.coordinator.intake import Intake
from wfray.coordinator.loading import RunLoader
from wfray.coordinator.outcomes import OutcomeApplier
from wfray.coordinator.poison import REFUSED, PoisonGuard
from wfray.coordinator.reconciler import Reconciler
from wfray.coordinator.settings import CoordinatorSettings
from wfray.coordinator.state import CoordinatorState
from wfray.coordinator.turn import Turn, acks_of
from wfray.coordinator.turn_moments import Moved, kinds_ending
from wfray.coordinator.undo_pages import UndoPages
from wfray.coordinator.waiting import Waiting
from wfray.domain import engine
from wfray.domain.code_env import CodeEnv
from wfray.domain.records import AttemptKey, LogRecord
from wfray.domain.workflow import WorkflowSchema

log = logging.getLogger("wfray.coordinator")

__all__ = ["AttemptKey", "Coordinator", "CoordinatorSettings"]
T = TypeVar("T")


class Coordinator:
    """Orchestrates runs: persists every decision before acting on it.

    `stopwatch` (monotonic seconds) times loop turns and commits for the metrics.
    """

    def __init__(
        self,
        store: RunLedger,
        executors: dict[str, StepExecutor],
        clock: Clock,
        settings: CoordinatorSettings | None = None,
        stopwatch: Callable[[], float] = time.perf_counter,
        packages: PackageKeeper | None = None,
    ) -> None:
        self.store = store
        self.packages = packages
        self.executors = executors
        self.clock = clock
        self.stopwatch = stopwatch
        self.settings = settings = settings or CoordinatorSettings()
        self.state = state = CoordinatorState(settings)
        self.metrics: Metrics = MetricsBuffer()
        self.health = Health()
        self.durable = durable = DurableStore(
            store, settings.commit_retry_max_s, self.metrics, stopwatch
        )
        self.wake = wake = asyncio.Event()
        self.loader = loader = RunLoader(state, durable)
        self.heartbeats = heartbeats = HeartbeatWatch(state)
        self.outcomes: list[tuple[str, Outcome]] = []  # the inbox: arrived, for the next turn
        self.reconciler = Reconciler(
            state, executors, durable, loader, heartbeats, clock, settings, self.outcomes, wake
        )
        self.launcher = launcher = Launcher(state, self.reconciler, self.heartbeats, settings)
        self.compensator = Compensator(state, launcher, settings.default_retry)
        self.dispatcher = Dispatcher(state, launcher, loader, durable, wake)
        self.fanouts = FanOuts(state, durable, self.compensator, wake)
        self.undo_pages = UndoPages(state, durable, wake)
        self.intake = Intake(state, durable, loader, settings, wake)
        self.commands = Commands(state, self.compensator, loader, wake)
        self.guard = PoisonGuard(
            state,
            durable,
            self.reconciler,
            heartbeats,
            clock,
            settings,
            self.metrics,
            self.outcomes,
        )
        self.outcome_applier = OutcomeApplier(state, settings, self.compensator, self.guard)
        self.waiting = Waiting(state, durable)
        self.claims = ClaimDesk(state, durable, clock)  # steps' claims, one store call each
        self.streamed_logs: list[LogRecord] = []
        # callers of append_logs, answered once their lines are committed
        self.log_waiters: list[asyncio.Future[bool]] = []
        self._loop_task: asyncio.Task[None] | None = None
        self.turns = 0

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, restarted_by_ray: bool = False) -> None:
        """Recover from the store, reconcile with the executors, and start the loop.
        `restarted_by_ray`: this process replaces a dead one of the same actor (health.py)."""
        cause, starts = await self.durably(record_start, self.store, restarted_by_ray)
        self.health.started(self.clock.now(), cause, starts)
        await self.reconciler.recover()
        await self.guard.quarantine_repeats()
        self._loop_task = asyncio.create_task(self._run_loop(), name="wfray-coordinator-loop")
        self.reconciler.start_drainers()

    async def stop(self) -> None:
        self.durable.stopping = True
        self.wake.set()
        await self.reconciler.stop_drainers()
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task

    @property
    def stopping(self) -> bool:
        return self.durable.stopping

    # -- the public calls ------------------------------------------------------------------

    async def register(
        self, schemas: Sequence[WorkflowSchema], env_hash: str | None = None
    ) -> None:
        """Store workflow schemas (idempotent: a version is its content hash), and the
        runtime env of the registering client as the one their events' runs run in."""
        for schema in schemas:
            if (schema.name, schema.version) not in self.state.schemas:
                await self.durably(self.store.save_workflow, schema)
                self.state.schemas[(schema.name, schema.version)] = schema
        now = self.clock.now()
        await publishing.subscribe(self.durable, self.loader, schemas, env_hash, now)

    async def record_env(self, env: CodeEnv) -> str:
        """Store a runtime environment once per content hash; returns the hash runs name
        it by. Checked again here: a client's word is input."""
        env = CodeEnv.from_json(env.to_json())
        if env.hash not in self.state.envs:
            if self.packages is not None and env.packages:
                # copied before any run can name the env: its job may end right after
                await asyncio.to_thread(self.packages.keep, env.packages)
            await self.durably(self.store.save_runtime_env, env.hash, env.to_json())
            self.loader.remember_env(env)
        return env.hash

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
        answers = await self.commands.submit(kind, run_ids, reason or "cancelled on request")
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
        its input as validated by the publisher (`wfray.sdk.events.validated_inputs`) and its
        uniqueness key (`wfray.sdk.events.unique_keys`)."""
        return await publishing.publish(
            self.durable, self.intake, name, payload_json, event_id, source, inputs, keys
        )

    async def retry_compensation(self, run_ids: Sequence[str]) -> list[CommandResult]:
        """Take runs off the dead-letter list: their failed compensations are tried again."""
        return await self.commands.submit("retry-compensation", run_ids, "")

    async def resume(self, run_ids: Sequence[str]) -> list[CommandResult]:
        """Resume failed or cancelled runs from the steps that did not complete."""
        return await self.commands.submit("resume", run_ids, "")

    async def wait(self, run_ids: Sequence[str], timeout_s: float) -> list[RunView]:
        """Wait until the runs finish (or the timeout passes) and return their views."""
        return await self.waiting.wait(run_ids, timeout_s)

    async def views(self, run_ids: Sequence[str]) -> list[RunView]:
        """The runs as the store holds them (a turn being committed is waited for)."""
        return await self.waiting.views(run_ids)

    async def schema(self, name: str, version: str | None) -> WorkflowSchema:
        return await self.loader.schema(name, version)

    def stats(self) -> dict[str, object]:
        return stats(self)

    # -- the loop ---------------------------------------------------------------------------

    async def _run_loop(self) -> None:
        while not self.stopping:
            timeout = self._idle_timeout()
            if timeout is None or timeout > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout)
            self.wake.clear()
            if self.durable.stopping:  # stop() was called while the loop waited
                return
            await self._turn()

    def _idle_timeout(self) -> float | None:
        now, memory = self.clock.now(), self.state
        due = (memory.timers.next_at(), self.heartbeats.next_due(), memory.queues.next_wakeup(now))
        deadlines = [moment for moment in due if moment is not None]
        if not deadlines:
            return None
        return max(0.0, (min(deadlines) - now).total_seconds())

    async def _turn(self) -> None:
        started = self.stopwatch()
        try:
            await self._decide_commit_act()
        finally:
            self.health.last_turn_s = took = self.stopwatch() - started
            self.metrics.turn_took(took)

    async def _decide_commit_act(self) -> None:
        """Decide (the phases fill the turn's batch), commit, then act on what committed."""
        self.turns += 1
        turn = await self._decide(self.clock.now())
        moved = Moved(self.state, turn.touched, turn.outcomes, turn.dispatches, turn.ended_kinds)
        moved.reached(Moment.COORDINATOR_BEFORE_COMMIT)
        try:
            await self.durable.commit(turn.batch)
        except REFUSED as exc:  # not an outage: what it holds (poison.py)
            await self._set_aside(turn, exc)
        self.state.count_committed(self.metrics, turn.aside)
        moved.reached(Moment.COORDINATOR_AFTER_COMMIT)
        await self._act(turn)

    async def _decide(self, now: datetime) -> Turn:
        """The phases, in order: each reads the state, adds rows to the batch, and leaves in
        the turn what to do once they are committed."""
        turn = Turn(now)
        batch, touched, memory = turn.batch, turn.touched, self.state
        turn.accepted = await self.intake.take(batch, now, touched)
        turn.outcomes = list(self.outcomes)
        self.outcomes.clear()
        turn.ended_kinds = kinds_ending(memory, turn.outcomes)
        await self.guard.applying(turn.outcomes)
        self.heartbeats.apply(batch)
        turn.log_waiters, self.log_waiters = self.log_waiters, []
        if self.streamed_logs:
            batch.logs.extend(self.streamed_logs)
            self.streamed_logs = []
        for _, outcome in turn.outcomes:
            self.outcome_applier.apply(outcome, batch, now, touched)
        turn.silent, turn.to_cancel = self.heartbeats.expire(now)
        for outcome in turn.silent:  # recorded as lost
            self.outcome_applier.apply(outcome, batch, now, touched)
        expire = functools.partial(self.commands.internal, "expire")  # through the store
        memory.fire_timers(batch, now, touched, expire)
        turn.answers, turn.to_stop = await self.commands.take(batch, now, touched)
        touched |= memory.retouch
        memory.retouch = set()
        self.fanouts.complete(batch, now, touched)
        self.fanouts.create(batch, now, touched)
        turn.dispatches = self.dispatcher.dispatch(batch, now, touched)
        turn.dispatches += self.compensator.advance(
            [memory.runs[r] for r in touched if r in memory.runs], batch, now
        )
        return turn

    async def _set_aside(self, turn: Turn, refused: Exception) -> None:
        """Commit what can be of a refused batch; the runs set aside go back to what the
        store holds, and their outcomes to the inbox, for the next turn."""
        aside = await self.guard.commit_around(turn.batch, refused, turn.outcomes, turn.accepted)
        await self.reconciler.reload(aside)
        self.outcomes[:0] = turn.set_aside(aside, self.state.status_of)
        turn.touched |= aside  # settled as loaded: a run the store holds finished may go

    async def _act(self, turn: Turn) -> None:
        """What the committed rows allow: answers, cancels, acknowledgements, dispatches."""
        for pool, keys in turn.to_cancel.items():
            self.reconciler.cancel_in(pool, keys)
        for waiter in turn.log_waiters:
            if not waiter.done():
                waiter.set_result(True)
        self.intake.answer(turn.accepted)
        for future, answer in turn.answers:
            if not future.done():
                future.set_result(answer)
        self.reconciler.stop(turn.to_stop)
        self.reconciler.acknowledge(acks_of(turn.outcomes, turn.aside))
        self.reconciler.send(turn.dispatches)
        self._settle(turn.touched)
        await self.dispatcher.page_in()
        await self.fanouts.collect()
        await self.undo_pages.page_in()

    async def durably(self, call: Callable[..., T], *args: Any) -> T:
        """A store call in a thread, database outages waited out (durable.py)."""
        return await self.durable.call(call, *args)

    # -- after the commit ----------------------------------------------------------------------

    def _settle(self, touched: set[str]) -> None:
        """Answer waiters of finished runs and drop from memory what needs no attention."""
        memory = self.state
        for run_id in touched:
            state = memory.runs.get(run_id)
            if state is None:
                continue
            if state.finished:
                self.waiting.finished(state.run)
                if not engine.attempts_running(state):  # else stay, to record how they end
                    memory.evict(run_id)
            elif not memory.live(state):
                memory.evict(run_id)
