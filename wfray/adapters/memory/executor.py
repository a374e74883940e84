"""InlineExecutor: runs attempts in the caller's event loop, for tests without Ray."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable

from wfray.application.messages import Dispatch, Drained, ExecutorSnapshot, Outcome
from wfray.application.outbox import Outbox
from wfray.application.ports import BlobStore, StepServices
from wfray.application.step_runner import RunnerSettings, run_attempt_async
from wfray.application.wire import seal
from wfray.domain.records import WorkerIdentity
from wfray.domain.status import AttemptStatus


class InlineExecutor:
    """Every attempt is a coroutine here (sync steps in threads); same contract as Ray's."""

    def __init__(
        self,
        blobs: BlobStore | None = None,
        settings: RunnerSettings | None = None,
        services: StepServices | None = None,
        reporter: Callable[[str, Outcome], None] | None = None,
    ) -> None:
        self.blobs = blobs
        self.services = services
        self.reporter = reporter  # where a dispatch's report_directly outcome also goes
        self.settings = settings or RunnerSettings()
        self.outbox = Outbox()
        self.running: dict[tuple[str, str, int, int], asyncio.Task[None]] = {}
        self.crashing = False
        self.refused: list[tuple[str, str, int, int]] = []  # dispatches of a stale coordinator
        self.worker = WorkerIdentity(
            node_id="inline", worker_id="inline", host=socket.gethostname(), pid=os.getpid()
        )

    async def dispatch(self, dispatches: list[Dispatch], epoch: int = 0) -> None:
        if not self.outbox.admits(epoch):
            self.refused.extend(d.attempt_key for d in dispatches)
            return
        for dispatch in dispatches:
            key = dispatch.attempt_key
            self.running[key] = asyncio.create_task(self._run(dispatch))

    async def _run(self, dispatch: Dispatch) -> None:
        reported = False
        try:
            outcome = await run_attempt_async(
                dispatch, self.blobs, self.worker_for(dispatch), self.settings, self.services
            )
            if dispatch.report_directly and self.reporter is not None:
                self.reporter(dispatch.pool, outcome)  # as a Ray worker does
                reported = True
        except asyncio.CancelledError:
            if self.crashing:
                raise
            outcome = Outcome.ended(
                dispatch.attempt_key,
                AttemptStatus.CANCELLED,
                "wfray.Cancelled",
                "cancelled: its run was cancelled",
            )
        finally:
            self.running.pop(dispatch.attempt_key, None)
        self.outbox.put(seal(outcome), wake=not reported)

    def worker_for(self, dispatch: Dispatch) -> WorkerIdentity:
        """Who runs this attempt (one identity here; tests may tell a different story)."""
        return self.worker

    async def drain(self, ack: int, wait_s: float, epoch: int = 0) -> Drained:
        return (await self.outbox.drain(ack, wait_s, epoch)).opened()

    async def cancel(self, attempts: list[tuple[str, str, int, int]]) -> None:
        for key in attempts:
            task = self.running.get(key)
            if task is not None:
                task.cancel()

    async def snapshot(self, ack: int, epoch: int = 0) -> ExecutorSnapshot:
        return self.outbox.snapshot(ack, list(self.running), epoch).opened()

    def crash(self) -> None:
        """Forget everything, as a killed executor process would (for failure tests)."""
        self.crashing = True
        for task in self.running.values():
            task.cancel()
        self.running.clear()
        self.outbox = Outbox()
