"""The local engine: the real Coordinator, Scheduler and queries over the in-memory stores
and inline executors, on an event loop of their own, driven by a FakeClock.

Everything here runs on that loop. "Idle" means nothing can happen until the clock moves:
no loop turn under way or asked for, no submission, command or outcome waiting, no timer
due now, and no attempt running except steps waiting for child runs (which only the engine
can wake).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from wfray.adapters.memory.audit import InMemoryAuditLog
from wfray.adapters.memory.schedule_store import InMemoryScheduleStore
from wfray.adapters.memory.store import InMemoryRunStore
from wfray.application.messages import RunView
from wfray.application.ports import StepExecutor
from wfray.application.queries import Queries
from wfray.bootstrap import coordinator_settings
from wfray.config import Settings
from wfray.coordinator.scheduler import Scheduler
from wfray.domain.errors import WaitTimeoutError
from wfray.domain.schedule import next_fire_times
from wfray.testing.clock import FakeClock
from wfray.testing.observed import (
    Activity,
    FakeTimeExecutor,
    LocalStepServices,
    ObservedCoordinator,
)
from wfray.worker.step_runner import RunnerSettings


@dataclass(slots=True)
class Quiet:
    """What a wait found: the views, and if the engine went idle, the next due time."""

    views: list[RunView]
    idle: bool
    next_due: datetime | None
    busy: list[str]


class LocalEngine:
    def __init__(self, settings: Settings, clock: FakeClock) -> None:
        self.settings = settings
        self.clock = clock
        self.store = InMemoryRunStore()
        self.schedules = InMemoryScheduleStore()
        self.audit = InMemoryAuditLog()
        self.queries = Queries(self.store)
        self.services = LocalStepServices(clock)
        runner = RunnerSettings(
            max_result_bytes=settings.max_result_bytes,
            log_limit=settings.log_limit,
            secret_dir=settings.secret_dir,
            max_log_line_chars=settings.max_log_line_chars,
            log_flush_interval_s=0,  # lines travel with the outcome: no streaming thread
        )
        # no blob store: results of any size stay in the in-memory store
        self.executors: dict[str, FakeTimeExecutor] = {
            pool: FakeTimeExecutor(clock, settings=runner, services=self.services)
            for pool in ("cpu", "io")
        }
        self._activity: Activity | None = None
        self._coordinator: ObservedCoordinator | None = None
        self._scheduler: Scheduler | None = None

    @property
    def coordinator(self) -> ObservedCoordinator:
        if self._coordinator is None:
            raise RuntimeError("the local wfray is not started (use it in a `with` block)")
        return self._coordinator

    @property
    def scheduler(self) -> Scheduler:
        if self._scheduler is None:
            raise RuntimeError("the local wfray is not started (use it in a `with` block)")
        return self._scheduler

    async def ready(self, wait_s: float = 0.0) -> LocalEngine:
        """The engine as the coordinator's command handlers see it (ports.Desk)."""
        return self

    @property
    def activity(self) -> Activity:
        assert self._activity is not None
        return self._activity

    async def start(self) -> None:
        self._activity = Activity()
        executors: dict[str, StepExecutor] = dict(self.executors)
        coordinator = ObservedCoordinator(
            self.store,
            executors,
            self.clock,
            coordinator_settings(self.settings),
            activity=self._activity,
        )
        self.services.activity = self._activity
        self.services.bind(coordinator)
        await coordinator.start()
        self._coordinator = coordinator
        self._scheduler = Scheduler(self.schedules, coordinator, self.clock)

    async def stop(self) -> None:
        if self._coordinator is not None:
            await self._coordinator.stop()
        for executor in self.executors.values():
            executor.crash()  # steps still running are abandoned, as a stopped process would

    # -- idle ----------------------------------------------------------------------------------

    def busy(self) -> list[str]:
        """What keeps the engine busy now (empty: idle until the clock moves)."""
        c = self.coordinator
        now = self.clock.now()
        reasons = []
        if c.in_turn or c.wake.is_set() or c.durable.committing:
            reasons.append("a coordinator loop turn")
        if c.intake.pending or c.commands.pending or c.outcomes or c.streamed_logs:
            reasons.append("work waiting for the next loop turn")
        running = c.state.attempts
        if len(running) > self.services.parked:
            names = ", ".join(f"{r} {s}[{i}] attempt {a}" for r, s, i, a in sorted(running))
            reasons.append(f"attempts running ({names})")
        first_timer = c.state.timers.next_at()
        if first_timer is not None and first_timer <= now:
            reasons.append("a timer due now")
        beat = c.heartbeats.next_due()
        if beat is not None and beat <= now:
            reasons.append("a heartbeat check due now")
        return reasons

    async def settle(self, timeout_s: float) -> None:
        """Until idle, firing due schedule ticks on the way; WaitTimeoutError (naming what is
        still busy) if that takes longer than `timeout_s` of real time."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            reasons = self.busy()
            if not reasons:
                await self.scheduler.tick(self.clock.now())
                await asyncio.sleep(0)  # calls handed over from step threads run first
                reasons = self.busy()
                if not reasons:
                    return
                continue
            try:
                await self.activity.changed(deadline - loop.time())
            except TimeoutError:
                raise WaitTimeoutError(
                    f"the local wfray is still busy after {timeout_s:g}s of real time: "
                    f"{'; '.join(reasons)}. A step that blocks (on an event, a lock, a "
                    "server) holds it up; the fake clock does not stop a step's own code"
                ) from None

    def next_due(self) -> datetime | None:
        """The earliest moment after now at which something is due, if any."""
        c = self.coordinator
        now = self.clock.now()
        found = [t.at for t in c.state.timers if t.at > now]
        beat = c.heartbeats.next_due()
        token = c.state.queues.next_wakeup(now)
        found += [t for t in (beat, token) if t is not None and t > now]
        for record in self.schedules.load_all():
            if not record.spec.paused:
                found += next_fire_times(record.spec, max(now, record.last_fired), 1)
        return min(found, default=None)

    async def advance_to(self, target: datetime, timeout_s: float) -> None:
        """Move the clock to `target` through every due moment on the way, letting the
        engine act on each at its own time."""
        await self.settle(timeout_s)
        while True:
            due = self.next_due()
            step = target if due is None or due > target else due
            self.clock.set(step)
            self.coordinator.wake.set()
            await self.settle(timeout_s)
            if step >= target:
                return

    # -- waiting -------------------------------------------------------------------------------

    async def wait(self, run_ids: Sequence[str], timeout_s: float) -> Quiet:
        """Until the runs finish, the engine goes idle, or `timeout_s` of real time passes."""
        c = self.coordinator
        finishing = asyncio.ensure_future(c.wait(run_ids, timeout_s))
        quieting = asyncio.ensure_future(self.settle(timeout_s))
        await asyncio.wait({finishing, quieting}, return_when=asyncio.FIRST_COMPLETED)
        idle = quieting.done() and quieting.exception() is None
        for task in (finishing, quieting):
            task.cancel()
        await asyncio.gather(finishing, quieting, return_exceptions=True)
        busy = self.busy()
        views = await c.views(run_ids)
        return Quiet(views, idle and not busy, self.next_due(), busy)
