"""The io executor: runs io attempts as coroutines inside this actor, sync step code in a
bounded thread pool, many at a time; keeps their outcomes until the coordinator
acknowledges them (executor.py has what both executors share)."""

from __future__ import annotations

import asyncio
import inspect
import os
from concurrent.futures import ThreadPoolExecutor

from wfray.adapters.blob import blob_store
from wfray.adapters.ray.executor import (
    AttemptKey,
    Envelope,
    ExecutorConfig,
    admitted,
    step_services,
    stopped,
    worker_identity,
)
from wfray.application.messages import Dispatch
from wfray.application.outbox import Outbox
from wfray.application.step_runner import load_function, run_attempt_async
from wfray.application.wire import SealedBatch, SealedSnapshot, open_dispatch, seal
from wfray.domain.errors import StepImportError
from wfray.domain.records import WorkerIdentity
from wfray.domain.versions import CURRENT


class IoExecutor:
    """Runs io attempts as coroutines in this actor; sync steps in a bounded thread pool."""

    def __init__(self, config: ExecutorConfig) -> None:
        self.config = config
        self.outbox = Outbox()
        self.running: dict[AttemptKey, asyncio.Task[None]] = {}
        self.timed_out: set[AttemptKey] = set()
        self.blobs = blob_store(config.blob_root) if config.blob_root else None
        self.identity: WorkerIdentity | None = None
        self.threads = ThreadPoolExecutor(max_workers=config.io_concurrency)
        self.slots: asyncio.Semaphore | None = None

    async def dispatch(self, envelopes: list[Envelope], epoch: int) -> None:
        if not admitted(self.outbox, envelopes, epoch):
            return
        loop = asyncio.get_running_loop()
        loop.set_default_executor(self.threads)
        if self.slots is None:
            self.slots = asyncio.Semaphore(self.config.io_concurrency)
        if self.identity is None:
            self.identity = worker_identity()
        for e in envelopes:
            d = open_dispatch(e.dispatch)
            self.running[e.key] = loop.create_task(self._run(d))
            timeout_s = self._timeout_s(d)
            if timeout_s is not None:
                loop.call_later(timeout_s, self._time_out, e.key)

    def _timeout_s(self, d: Dispatch) -> float | None:
        """The step's own timeout; else, for sync code, the default: a sync step holds one
        of the io threads while it runs, and one stuck on a slow server would hold it for
        ever (its thread runs on after the timeout, but its slot and attempt are freed)."""
        if d.timeout_s is not None or self.config.io_sync_timeout_s is None:
            return d.timeout_s
        try:
            is_async = inspect.iscoroutinefunction(load_function(d.fn))
        except StepImportError:
            is_async = False  # the attempt fails at once anyway
        return None if is_async else self.config.io_sync_timeout_s

    def _time_out(self, key: AttemptKey) -> None:
        task = self.running.get(key)
        if task is not None:
            self.timed_out.add(key)
            task.cancel()  # sync code in a thread cannot be interrupted: its outcome is dropped

    async def cancel(self, attempts: list[AttemptKey]) -> None:
        """Coroutines stop at their next await; sync steps in threads run on to their end
        (Python cannot interrupt a thread), and their outcome is dropped."""
        for key in attempts:
            task = self.running.get(key)
            if task is not None:
                task.cancel()

    async def _run(self, d: Dispatch) -> None:
        assert self.slots is not None and self.identity is not None
        try:
            async with self.slots:
                outcome = await run_attempt_async(
                    d,
                    self.blobs,
                    self.identity,
                    self.config.runner,
                    step_services(self.config.namespace, self.config.blob_root),
                )
        except asyncio.CancelledError:
            key = d.attempt_key
            timeout_s = self._timeout_s(d)
            default = d.timeout_s is None and timeout_s is not None
            self.outbox.put(stopped(key, key in self.timed_out, timeout_s, default))
            return
        finally:
            self.running.pop(d.attempt_key, None)
            self.timed_out.discard(d.attempt_key)
        self.outbox.put(seal(outcome))

    async def drain(self, ack: int, wait_s: float, epoch: int) -> SealedBatch:
        return await self.outbox.drain(ack, wait_s, epoch)

    async def snapshot(self, ack: int, epoch: int) -> SealedSnapshot:
        return self.outbox.snapshot(ack, list(self.running), epoch)

    async def stats(self) -> dict[str, int]:
        return {"running": len(self.running), "unacked": len(self.outbox)}

    def versions(self) -> dict[str, str]:
        """This executor's wfray and schema versions: the coordinator checks them first."""
        return CURRENT.as_dict()

    async def pid(self) -> int:
        return os.getpid()
