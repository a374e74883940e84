"""The coordinator actor's body: it starts what the composition root builds, keeps trying
until that has started, and answers the coordinator's clients.

A plain class: the Ray decoration is applied in actors.py, the one factory, as Ray Serve wraps
its plain ServeController; the constructor makes no Ray call.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from wfray.adapters.ray.executor import collect_garbage_rarely
from wfray.application.claims import ClaimView
from wfray.application.coordinator import Coordinator
from wfray.application.messages import CommandResult, RunView, SubmitRequest, SubmitResult
from wfray.application.scheduler import ScheduleInfo, Scheduler
from wfray.application.wire import Sealed, open_outcome
from wfray.bootstrap import System, build_system
from wfray.config import Settings
from wfray.domain.errors import WfrayError
from wfray.domain.records import LogRecord
from wfray.domain.schedule import ScheduleSpec
from wfray.domain.workflow import WorkflowSchema

log = logging.getLogger("wfray.host")

COORDINATOR_NAME = "wfray-coordinator"
START_WAIT_S = 20.0

Build = Callable[[Settings], Awaitable[System]]


def executor_name(executor: str) -> str:
    """The Ray actor name of an executor: "cpu", "io", "io.1", ... (application/reconciler.py)."""
    return f"wfray-executor-{executor}"


def io_executor_ids(settings: Settings) -> list[str]:
    return ["io", *(f"io.{i}" for i in range(1, settings.io_executors))]


class CoordinatorHost:
    """Builds and starts the system on (re)start, recovering from the store; then serves it."""

    def __init__(self, settings: Settings, build: Build = build_system) -> None:
        logging.basicConfig(level=logging.INFO)
        collect_garbage_rarely()
        self.settings = settings
        self.build = build
        self.system: System | None = None
        self._starter: asyncio.Task[None] | None = None
        self._started: asyncio.Event | None = None
        self._start_error: Exception | None = None
        self._loops: list[asyncio.Task[None]] = []

    def begin_start(self) -> None:
        """Set the start going on the running event loop, if it is not already."""
        if self._starter is None:
            self._started = asyncio.Event()
            self._starter = asyncio.create_task(self._keep_starting(), name="wfray-start")

    async def start(self, wait_s: float = START_WAIT_S) -> None:
        """Start (or keep trying to start) the system; fail clearly if it has not started
        within `wait_s` (a busy cluster may need the client's whole budget)."""
        self.begin_start()
        if self.system is None:
            asked_at = time.monotonic()
            try:
                await self._wait_started(wait_s)
            except TimeoutError:
                kind = type(self._start_error) if self._start_error else WfrayError
                if not issubclass(kind, WfrayError):
                    kind = WfrayError
                raise kind(
                    f"wfray could not start within {time.monotonic() - asked_at:.0f}s: "
                    f"{self._start_error or 'still starting'}"
                ) from None

    async def ready(self, wait_s: float = START_WAIT_S) -> System:
        """The started system, once it has started (within `wait_s`)."""
        await self.start(wait_s)
        assert self.system is not None
        return self.system

    async def _wait_started(self, wait_s: float) -> None:
        """Until started. A start that keeps failing (the store unreachable, say) is given up
        after START_WAIT_S; one that is only slow (a loaded cluster) gets all of `wait_s`."""
        assert self._started is not None
        deadline = time.monotonic() + wait_s
        failing_since = time.monotonic() + START_WAIT_S
        while True:
            left = deadline - time.monotonic()
            if self._start_error is not None:
                left = min(left, failing_since - time.monotonic())
            if left <= 0:
                raise TimeoutError
            try:
                await asyncio.wait_for(asyncio.shield(self._started.wait()), min(left, 1.0))
                return
            except TimeoutError:
                continue

    async def _keep_starting(self) -> None:
        # keeps trying (say, while the database is down) so a restarted coordinator
        # resumes its runs by itself, without waiting for a client call
        delay = 0.5
        while True:
            try:
                await self._start()
            except Exception as exc:
                self._start_error = exc
                log.warning("coordinator start failed, retrying in %.1fs: %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            assert self._started is not None
            self._started.set()
            return

    async def _start(self) -> None:
        system = await self.build(self.settings)
        await system.coordinator.start()
        assert system.coordinator._loop_task is not None
        system.coordinator._loop_task.add_done_callback(_crash_on_failure)
        self._loops = [asyncio.create_task(run(), name=name) for name, run in system.loops]
        self.system = system

    async def _ready(self) -> Coordinator:
        return (await self.ready()).coordinator

    async def register(self, schemas: Sequence[WorkflowSchema]) -> None:
        await (await self._ready()).register(schemas)

    async def submit(self, requests: Sequence[SubmitRequest]) -> list[SubmitResult]:
        return await (await self._ready()).submit(requests)

    async def wait(self, run_ids: Sequence[str], timeout_s: float) -> list[RunView]:
        return await (await self._ready()).wait(run_ids, timeout_s)

    async def submit_and_wait(
        self, requests: Sequence[SubmitRequest], timeout_s: float
    ) -> tuple[list[SubmitResult], list[RunView]]:
        return await (await self._ready()).submit_and_wait(requests, timeout_s)

    async def views(self, run_ids: Sequence[str]) -> list[RunView]:
        return await (await self._ready()).views(run_ids)

    async def query(self, name: str, *args: Any, **kwargs: Any) -> Any:
        queries = (await self.ready()).queries
        return await asyncio.to_thread(queries.call, name, *args, **kwargs)

    async def cancel(
        self, run_ids: Sequence[str], reason: str = "", compensate: bool = True
    ) -> list[CommandResult]:
        return await (await self._ready()).cancel(run_ids, reason, compensate)

    async def retry_compensation(self, run_ids: Sequence[str]) -> list[CommandResult]:
        return await (await self._ready()).retry_compensation(run_ids)

    async def publish(
        self,
        name: str,
        payload_json: str,
        event_id: str,
        source: str = "client",
        inputs: Mapping[str, str] | None = None,
        keys: Mapping[str, str] | None = None,
    ) -> list[str]:
        coordinator = await self._ready()
        return await coordinator.publish(name, payload_json, event_id, source, inputs, keys)

    async def next_value(self, counter: str, count: int = 1) -> int:
        return await (await self._ready()).next_value(counter, count)

    async def claim(self, key: str, attempt: tuple[str, str, int, int], ttl_s: float) -> ClaimView:
        return await (await self._ready()).claims.claim(key, attempt, ttl_s)

    async def finish_claim(
        self, key: str, attempt: tuple[str, str, int, int], result_json: str
    ) -> ClaimView:
        return await (await self._ready()).claims.done(key, attempt, result_json)

    async def claimed(
        self, key: str, asker: tuple[str, str, int, int] | None = None
    ) -> ClaimView | None:
        return await (await self._ready()).claims.read(key, asker)

    async def run_claims(self, run_ids: Sequence[str]) -> list[ClaimView]:
        return await (await self._ready()).claims.of_runs(list(run_ids))

    async def report(self, pool: str, outcome: Sealed) -> None:
        (await self._ready()).report(pool, open_outcome(outcome))

    async def append_logs(self, lines: Sequence[LogRecord]) -> bool:
        """Answers once the lines are committed (the worker keeps them until then)."""
        return await (await self._ready()).append_logs(lines)

    async def heartbeat(
        self, beats: Sequence[tuple[tuple[str, str, int, int], str | None]]
    ) -> None:
        (await self._ready()).heartbeat(beats)

    async def resume(self, run_ids: Sequence[str]) -> list[CommandResult]:
        return await (await self._ready()).resume(run_ids)

    async def stats(self) -> dict[str, object]:
        return (await self._ready()).stats()

    async def pid(self) -> int:
        return os.getpid()

    # -- schedules ---------------------------------------------------------------------------

    async def _ready_scheduler(self) -> Scheduler:
        return (await self.ready()).scheduler

    async def upsert_schedule(self, spec: ScheduleSpec) -> bool:
        return await (await self._ready_scheduler()).upsert(spec)

    async def declare_schedules(self, specs: Sequence[ScheduleSpec]) -> None:
        await (await self._ready_scheduler()).declare(specs)

    async def delete_schedule(self, name: str) -> None:
        await (await self._ready_scheduler()).delete(name)

    async def pause_schedule(self, name: str) -> None:
        await (await self._ready_scheduler()).pause(name)

    async def resume_schedule(self, name: str) -> None:
        await (await self._ready_scheduler()).resume(name)

    async def trigger_schedule(self, name: str) -> SubmitResult:
        return await (await self._ready_scheduler()).trigger(name)

    async def list_schedules(self, count: int = 3) -> list[ScheduleInfo]:
        return await (await self._ready_scheduler()).list_schedules(count)


def _crash_on_failure(task: asyncio.Task[None]) -> None:
    if task.cancelled() or task.exception() is None:
        return
    log.critical("coordinator loop died; restarting the actor", exc_info=task.exception())
    os._exit(1)  # Ray restarts the actor (max_restarts=-1) and it recovers from the store
