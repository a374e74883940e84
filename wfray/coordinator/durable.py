"""The store as the coordinator's loop calls it: each call in a thread, outages waited out,
and the commit in flight visible to readers who must not see memory run ahead of it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from wfray.application.batch import Batch
from wfray.application.metrics import Metrics
from wfray.application.ports import RunLedger
from wfray.domain.errors import StaleWriteError, StoreRejectedError, StoreUnavailableError

log = logging.getLogger("wfray.coordinator")
T = TypeVar("T")


class DurableStore:
    """`metrics` hears how long each commit took and why one failed; `stopwatch` (seconds,
    monotonic) times them."""

    def __init__(
        self,
        store: RunLedger,
        retry_max_s: float,
        metrics: Metrics | None = None,
        stopwatch: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.store = store
        self.retry_max_s = retry_max_s
        self.metrics = metrics
        self.stopwatch = stopwatch
        self.stopping = False  # a stopping coordinator gives up instead of waiting
        self._committing: asyncio.Future[None] | None = None

    async def call(self, call: Callable[..., T], *args: Any) -> T:
        """Run a store call in a thread, waiting out database outages (a restart, a failover).

        A commit interrupted around COMMIT is replayed: the store makes that idempotent.
        """
        delay = 0.05
        while True:
            try:
                return await asyncio.to_thread(call, *args)
            except StoreUnavailableError as exc:
                if self.metrics is not None and call == self.store.commit:
                    self.metrics.commit_failed("unavailable")
                if self.stopping:
                    raise
                name = getattr(call, "__name__", "call")
                log.warning("store unavailable, retrying %s in %.2fs: %s", name, delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_s)

    async def commit(self, batch: Batch) -> None:
        if not len(batch):
            return
        self._committing = asyncio.get_running_loop().create_future()
        started = self.stopwatch()
        try:
            await self.call(self.store.commit, batch)
        except (StoreRejectedError, StaleWriteError) as exc:
            if self.metrics is not None:
                kind = "stale_write" if isinstance(exc, StaleWriteError) else "refused"
                self.metrics.commit_failed(kind)
            raise
        finally:
            if self.metrics is not None:
                self.metrics.commit_took(self.stopwatch() - started)
            if not self._committing.done():
                self._committing.set_result(None)
            self._committing = None

    @property
    def committing(self) -> bool:
        return self._committing is not None

    async def committed(self) -> None:
        """Wait for the commit in flight, if any (memory runs ahead of the store meanwhile)."""
        if self._committing is not None:
            await asyncio.shield(self._committing)
