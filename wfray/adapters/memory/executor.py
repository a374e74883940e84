"""InlineExecutor: runs attempts in the caller's event loop, for tests without Ray."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable

from wfray.application.messages import Dispatch, Drained, ExecutorSnapshot, Outcome
from wfray.application.ports import BlobStore, StepServices
from wfray.application.wire import seal
from wfray.domain.records import WorkerIdentity
from wfray.domain.status import AttemptStatus
from wfray.worker.outbox import Outbox
from wfray.worker.step_runner import RunnerSettings, run_attempt_async


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
        outbox = self.outbox  # this incarnation's: a crash replaces it
        key = dispatch.attempt_key
        ran = False
        try:
            attempt = run_attempt_async(
                dispatch, self.blobs, self.worker_for(dispatch), self.settings, self.services
            )
            # stopped past its timeout as the Ray executors stop it (a step's own errors,
            # TimeoutError too, come back as its outcome: only the wait raises here)
            outcome = await asyncio.wait_for(attempt, dispatch.timeout_s)
            ran = True
        except TimeoutError:
            outcome = Outcome.ended(
                key,
                AttemptStatus.TIMED_OUT,
                "wfray.AttemptTimeout",
                f"attempt exceeded its timeout of {dispatch.timeout_s}s and was stopped",
            )
        except asyncio.CancelledError:
            if outbox is not self.outbox:
                raise  # it died with the executor that crashed: no outcome, as on Ray
            outcome = Outcome.ended(
                key, AttemptStatus.CANCELLED, "wfray.Cancelled", "cancelled: its run was cancelled"
            )
        finally:
            if self.running.get(key) is asyncio.current_task():
                del self.running[key]
        reporter = self.reporter if ran and dispatch.report_directly else None
        if reporter is not None:
            reporter(dispatch.pool, outcome)  # as a Ray worker does
        outbox.put(seal(outcome), wake=reporter is None)

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
        for task in self.running.values():
            task.cancel()
        self.running.clear()
        self.outbox = Outbox()
