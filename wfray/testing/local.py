"""LocalWfray: wfray in this process, for tests. The real client (wfray.Client) over an
in-process transport to the real coordinator, the in-memory store, inline executors and a
FakeClock; no Ray.

The engine runs on an event loop in a thread of its own; the calls here are sync, like the
real client's. Time moves only when the test advances the clock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any, TypeVar

from wfray.application.client_commands import Command, R
from wfray.application.messages import RunView, SubmitRequest
from wfray.client.client import Client
from wfray.client.handle import result_adapter
from wfray.config import Settings, load_settings
from wfray.coordinator.client_handlers import answer
from wfray.domain.errors import RunFailedError, WfrayError
from wfray.domain.status import RunStatus
from wfray.sdk.definition import Workflow
from wfray.testing import asserts
from wfray.testing.clock import FakeClock
from wfray.testing.engine import LocalEngine, Quiet
from wfray.testing.handle import LocalRunHandle, unfinished
from wfray.testing.loop import EngineLoop

T = TypeVar("T")


class LocalTransport:
    """Commands answered on the engine's loop by the coordinator's own handlers."""

    def __init__(self, local: LocalWfray) -> None:
        self.local = local

    def call(
        self,
        command: Command[R],
        *,
        timeout_s: float = 60.0,
        before_resend: Callable[[], None] | None = None,
    ) -> R:
        return self.local._call(answer(self.local.engine, command), timeout_s)


class LocalWfray(Client, asserts.Assertions):
    """wfray in this process with a fake clock. Use it as a context manager.

    Args:
        clock: the FakeClock to run on (default: a new one at the current time).
        settings: wfray Settings (queues, default retry, limits); the environment is not
            read, and the database settings are ignored (the store is in memory).
        settle_timeout_s: real seconds a step may run before `advance()` or a wait gives
            up on the engine becoming idle.
        **overrides: Settings fields, as `wfray.load_settings` takes them.
    """

    def __init__(
        self,
        clock: FakeClock | None = None,
        settings: Settings | None = None,
        *,
        settle_timeout_s: float = 30.0,
        **overrides: Any,
    ) -> None:
        super().__init__(settings or load_settings(env={}, **overrides), LocalTransport(self))
        self.clock = clock or FakeClock()
        self.settle_timeout_s = settle_timeout_s
        self.engine = LocalEngine(self.settings, self.clock)
        self._engine_loop = EngineLoop()
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> LocalWfray:
        if self._engine_loop.running or self._closed:
            raise RuntimeError("a local wfray starts once: make a new one")
        self.clock.attach(self._drive)  # first: a clock already in use fails before a thread
        self._engine_loop.start()
        try:
            self._call(self.engine.start())
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop the engine. Steps still running are abandoned (sync code in a thread runs
        on to its end, as in the real io pool)."""
        if not self._engine_loop.running:
            return
        self._closed = True
        self.clock.detach()
        try:
            self._call(_shut_down(self.engine), self.settle_timeout_s)
        finally:
            self._engine_loop.stop(self.settle_timeout_s)

    shutdown = close

    def __enter__(self) -> LocalWfray:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def advance(self, by: float | timedelta) -> datetime:
        """`self.clock.advance(by)`: seconds or a timedelta; returns the new time."""
        return self.clock.advance(by)

    def settle(self) -> None:
        """Let the engine do everything it can at the current time, then return: submitted
        runs run as far as they get without the clock moving (retries due later wait)."""
        self._call(self.engine.settle(self.settle_timeout_s), None)

    def _drive(self, target: datetime) -> None:
        self._call(self.engine.advance_to(target, self.settle_timeout_s), None)

    def _call(self, coroutine: Coroutine[Any, Any, T], timeout_s: float | None = 60.0) -> T:
        return self._engine_loop.call(coroutine, timeout_s)

    # -- what waits on the fake clock ----------------------------------------------------------

    def _execute(self, flow: Workflow, requests: list[SubmitRequest], timeout: float) -> Any:
        """Submit, then wait on the fake clock (see LocalRunHandle.result)."""
        (handle,) = self._submit(flow, requests)
        return self.result_of(handle.run_id, flow, timeout)

    def wait(self, run_ids: Iterable[str], timeout: float = 60.0) -> list[RunView]:
        """Wait for runs to finish; returns their views (unfinished ones as they are). Returns
        early, unfinished, when nothing can happen until the fake clock moves."""
        return self._quiet(list(run_ids), timeout).views

    def _quiet(self, run_ids: list[str], timeout: float) -> Quiet:
        return self._call(self.engine.wait(run_ids, timeout), timeout + 30)

    def result_of(self, run_id: str, flow: Workflow | None, timeout: float = 60.0) -> Any:
        """A run's result as its final step's return type (see LocalRunHandle.result)."""
        quiet = self._quiet([run_id], timeout)
        if not quiet.views:
            raise WfrayError(f"no run with id {run_id!r}")
        view = quiet.views[0]
        if not view.status.finished:
            raise unfinished(view, quiet, timeout, self.clock.now())
        if view.status is not RunStatus.COMPLETED:
            raise RunFailedError(
                f"run {run_id} {view.status.value}: {view.error}",
                run_id=run_id,
                status=view.status.value,
            )
        return self.decode(view, flow)

    def decode(self, view: RunView, flow: Workflow | None) -> Any:
        """A finished run's result as a value of its final step's return type."""
        if view.result_json is None:
            return None  # no blob store here: every result is stored as JSON
        return result_adapter(flow).validate_json(view.result_json)

    def _handle(self, run_id: str, flow: Workflow | None) -> LocalRunHandle:
        return LocalRunHandle(self, run_id, flow)


@contextlib.contextmanager
def local_wfray(
    clock: FakeClock | None = None, settings: Settings | None = None, **options: Any
) -> Iterator[LocalWfray]:
    """A started LocalWfray for the `with` block (see LocalWfray for the arguments)."""
    with LocalWfray(clock, settings, **options) as local:
        yield local


async def _shut_down(engine: LocalEngine) -> None:
    await engine.stop()
    current = asyncio.current_task()
    rest = [task for task in asyncio.all_tasks() if task is not current]
    for task in rest:
        task.cancel()
    await asyncio.gather(*rest, return_exceptions=True)
