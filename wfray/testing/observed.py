"""The real coordinator, executor and step services, instrumented so a test knows when the
engine has nothing left to do and records everything on the fake clock.

Nothing here changes a decision: the subclasses only report (a loop turn ended, a step
began or stopped waiting for child runs) and restamp what workers would stamp with the
wall clock (attempt start and end, log lines) with the fake clock's time.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from wfray.adapters.memory.executor import InlineExecutor
from wfray.adapters.memory.services import CALL_TIMEOUT_S, InlineStepServices
from wfray.application.messages import Dispatch, Drained, ExecutorSnapshot, Outcome
from wfray.application.ports import Clock
from wfray.application.views import ChildStatus
from wfray.coordinator.coordinator import Coordinator
from wfray.domain.records import AttemptKey, LogRecord

T = TypeVar("T")


class Activity:
    """A signal that something in the engine changed; lives on the engine's event loop."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()  # waiters from now on wait for the next change

    async def changed(self, timeout_s: float) -> None:
        """Until the next change; TimeoutError after `timeout_s`."""
        await asyncio.wait_for(self._changed.wait(), max(0.0, timeout_s))


class ObservedCoordinator(Coordinator):
    """The Coordinator, telling `activity` when each loop turn ends."""

    def __init__(self, *args: Any, activity: Activity, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.activity = activity
        self.in_turn = False

    async def _turn(self) -> None:
        # between the awaits of a turn nothing else shows that work is under way
        self.in_turn = True
        try:
            await super()._turn()
        finally:
            self.in_turn = False
            self.activity.notify()


class FakeTimeExecutor(InlineExecutor):
    """An InlineExecutor whose outcomes carry the fake clock's times, not the wall clock's."""

    def __init__(self, clock: Clock, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.clock = clock
        self.started: dict[AttemptKey, datetime] = {}

    async def dispatch(self, dispatches: list[Dispatch], epoch: int = 0) -> None:
        now = self.clock.now()
        for dispatch in dispatches:
            self.started[dispatch.attempt_key] = now
        await super().dispatch(dispatches, epoch)

    async def drain(self, ack: int, wait_s: float, epoch: int = 0) -> Drained:
        drained = await super().drain(ack, wait_s, epoch)
        self._restamp(drained.outcomes)
        return drained

    async def snapshot(self, ack: int, epoch: int = 0) -> ExecutorSnapshot:
        snapshot = await super().snapshot(ack, epoch)
        self._restamp(snapshot.outcomes)
        return snapshot

    def _restamp(self, outcomes: Sequence[Outcome]) -> None:
        # The clock cannot move while an attempt runs unseen (advance waits for the engine
        # to be idle first), so "now" at the drain is the fake time the attempt ended.
        now = self.clock.now()
        for outcome in outcomes:
            outcome.started_at = self.started.get(outcome.attempt_key, now)
            outcome.finished_at = now
            for line in outcome.logs:
                line.ts = now


class LocalStepServices(InlineStepServices):
    """Step services that count the steps waiting for child runs ("parked"): such a step
    runs, yet only the engine can make it go on, so it does not keep the engine busy."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock
        self.parked = 0
        self.activity: Activity | None = None
        self._waiting = threading.local()

    def wait_runs(self, run_ids: Sequence[str], timeout_s: float) -> list[ChildStatus]:
        self._waiting.active = True
        try:
            return super().wait_runs(run_ids, timeout_s)
        finally:
            self._waiting.active = False

    def _call(self, coroutine: Any, timeout_s: float = CALL_TIMEOUT_S) -> Any:
        if getattr(self._waiting, "active", False):
            coroutine = self._parked(coroutine)
        return super()._call(coroutine, timeout_s)

    async def _parked(self, waiting: Awaitable[T]) -> T:
        # counted on the loop, so no check of the engine sees a step between the two states
        self.parked += 1
        self._notify()
        try:
            return await waiting
        finally:
            self.parked -= 1
            self._notify()

    def _notify(self) -> None:
        if self.activity is not None:
            self.activity.notify()

    def logs(self, lines: list[LogRecord]) -> bool:
        now = self.clock.now()
        for line in lines:
            line.ts = now
        return super().logs(lines)
