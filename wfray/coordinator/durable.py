"""The store as the coordinator's loop calls it: each call in a thread, outages waited out,
and the commit in flight visible to readers who must not see memory run ahead of it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from wfray.application.batch import Batch
from wfray.application.ports import RunLedger
from wfray.domain.errors import StoreUnavailableError

log = logging.getLogger("wfray.coordinator")
T = TypeVar("T")


class DurableStore:
    def __init__(self, store: RunLedger, retry_max_s: float) -> None:
        self.store = store
        self.retry_max_s = retry_max_s
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
        try:
            await self.call(self.store.commit, batch)
        finally:
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
