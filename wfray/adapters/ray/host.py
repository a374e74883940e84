"""The coordinator actor's body: it starts what the composition root builds, keeps trying
until that has started, and answers the coordinator's clients.

A plain class: the Ray decoration is applied in actors.py, the one factory, as Ray Serve wraps
its plain ServeController; the constructor makes no Ray call. What it starts is built by the
composition root (bootstrap.build_system), handed in as `build`: the host names no adapter.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Protocol

from wfray.application.client_commands import Command, R
from wfray.application.ports import RunLedger
from wfray.application.wire import Sealed, open_outcome
from wfray.config import Settings
from wfray.coordinator.client_handlers import answer
from wfray.coordinator.desk import Started
from wfray.coordinator.health import note_crash
from wfray.domain.errors import VersionMismatchError, WfrayError
from wfray.domain.records import AttemptKey
from wfray.domain.versions import CURRENT

log = logging.getLogger("wfray.host")

COORDINATOR_NAME = "wfray-coordinator"
START_WAIT_S = 20.0


class Hosted(Started, Protocol):
    """What the host starts and serves (bootstrap.System is one): the handlers' view of it,
    the store it notes a crash in, and the loops to run beside the coordinator."""

    @property
    def store(self) -> RunLedger: ...

    @property
    def loops(self) -> Sequence[tuple[str, Callable[[], Coroutine[Any, Any, None]]]]: ...


Build = Callable[[Settings], Awaitable[Hosted]]


def never_restarted() -> bool:
    """For a host run in-process (a test's): no Ray restarts it."""
    return False


def executor_name(executor: str) -> str:
    """The Ray actor name of an executor: "cpu", "io", "io.1", ... (application/reconciler.py)."""
    return f"wfray-executor-{executor}"


def io_executor_ids(settings: Settings) -> list[str]:
    return ["io", *(f"io.{i}" for i in range(1, settings.io_executors))]


def executor_actor_names(namespace: str) -> list[str]:
    """The executor actors running in a namespace, whatever they were configured as."""
    import ray  # the host itself runs without it (tests host it in-process)

    return [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["namespace"] == namespace and a["name"].startswith(executor_name(""))
    ]


class CoordinatorHost:
    """Builds and starts the system on (re)start, recovering from the store; then serves it."""

    def __init__(
        self, settings: Settings, build: Build, restarted: Callable[[], bool] = never_restarted
    ) -> None:
        self.settings = settings
        self.build = build
        # asked at each start, not here: whether Ray restarted this actor, its process
        # replacing one that died (coordinator/health.py); the constructor makes no Ray call
        self.restarted = restarted
        self.system: Hosted | None = None
        self._starter: asyncio.Task[None] | None = None
        self._started: asyncio.Event | None = None
        self._start_error: Exception | None = None
        # an error no retry can cure (executors of another wfray): answered at once, for good
        self._refused: VersionMismatchError | None = None
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

    async def ready(self, wait_s: float = START_WAIT_S) -> Hosted:
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
            if self._refused is not None:
                raise self._refused
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
            except VersionMismatchError as exc:
                self._start_error = self._refused = exc
                log.error("coordinator not started: %s", exc)
                return
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
        restarted_by_ray = await asyncio.to_thread(self.restarted)  # the GCS answers it
        system = await self.build(self.settings)
        await system.coordinator.start(restarted_by_ray)
        assert system.coordinator._loop_task is not None
        system.coordinator._loop_task.add_done_callback(functools.partial(_crash, system))
        self._loops = [asyncio.create_task(run(), name=name) for name, run in system.loops]
        self.system = system

    async def stop(self) -> None:
        """Stop the loops and the coordinator: for a host run in-process (a test's); the
        actor is never stopped, only killed, and a restart recovers from the store."""
        for task in [self._starter, *self._loops]:
            if task is not None:
                task.cancel()
        if self.system is not None:
            await self.system.coordinator.stop()

    # -- what arrives ------------------------------------------------------------------------------

    def versions(self) -> dict[str, str]:
        """This coordinator's wfray and schema versions, as plain data (versions.py), answered
        before it has started: a client checks them before it trusts the actor."""
        return CURRENT.as_dict()

    async def handle(self, command: Command[R]) -> R:
        """Every client call: one command, answered by its handler (client_handlers.py)."""
        return await answer(self, command)

    # Fire and forget, once per attempt (report) or beat (heartbeat), from the processes that
    # run steps: not commands, so the busiest path pays for no wrapper and no lookup, and no
    # client's retrying call carries them (a lost one is covered by the executor's copy, or
    # by the next beat).

    async def report(self, pool: str, outcome: Sealed) -> None:
        (await self.ready()).coordinator.report(pool, open_outcome(outcome))

    async def heartbeat(self, beats: Sequence[tuple[AttemptKey, str | None]]) -> None:
        (await self.ready()).coordinator.heartbeat(beats)


def _crash(system: Hosted, task: asyncio.Task[None]) -> None:
    if task.cancelled() or task.exception() is None:
        return
    log.critical("coordinator loop died; restarting the actor", exc_info=task.exception())
    try:  # for the next start's cause; the store may be what failed
        note_crash(system.store)
    except Exception as exc:
        log.warning("could not note the crash in the store: %s", exc)
    os._exit(1)  # Ray restarts the actor (max_restarts=-1) and it recovers from the store
