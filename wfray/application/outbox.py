"""An executor's outbox: outcomes kept until the coordinator acknowledges their commit.

Outcomes are kept sealed (pickled), as the worker that made them sent them.

It also fences dispatches: every coordinator start takes a higher epoch from the store, and
its drains and snapshots raise the outbox's epoch to it. A dispatch sent by an earlier
coordinator that arrives after that (Ray does not order calls from different callers) is
refused: the new coordinator judged that attempt lost at its snapshot and runs it again, so
running it here too would run it twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from wfray.application.wire import AttemptKey, Sealed, SealedBatch, SealedSnapshot


class Outbox:
    """Numbered outcomes; `drain` hands each out once, `snapshot` hands out all unacknowledged."""

    def __init__(self) -> None:
        self.incarnation = uuid.uuid4().hex
        self._items: list[tuple[int, Sealed]] = []
        self._seq = 0
        self._sent = 0
        self._ready = asyncio.Event()
        self.epoch = 0

    def admits(self, epoch: int) -> bool:
        """Whether a dispatch of a coordinator with this epoch may still run here."""
        return epoch >= self.epoch

    def _raise_epoch(self, epoch: int) -> None:
        self.epoch = max(self.epoch, epoch)

    def put(self, outcome: Sealed, *, wake: bool = True) -> None:
        """Keep an outcome until acknowledged. With `wake` False (the worker reported it to
        the coordinator itself) it does not end a waiting drain: it rides along with the
        next one, so a report that got lost is still delivered, one drain period late."""
        self._seq += 1
        self._items.append((self._seq, outcome))
        if wake:
            self._ready.set()

    def _ack(self, ack: int) -> None:
        if self._items and self._items[0][0] <= ack:
            self._items = [item for item in self._items if item[0] > ack]

    async def drain(self, ack: int, wait_s: float, epoch: int = 0) -> SealedBatch:
        self._raise_epoch(epoch)
        self._ack(ack)
        if not self._ready.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), wait_s)
        self._ready.clear()
        fresh = [item for item in self._items if item[0] > self._sent]
        if fresh:
            self._sent = fresh[-1][0]
        return SealedBatch(self.incarnation, fresh)

    def snapshot(self, ack: int, in_flight: list[AttemptKey], epoch: int = 0) -> SealedSnapshot:
        self._raise_epoch(epoch)
        self._ack(ack)
        self._sent = self._seq
        return SealedSnapshot(self.incarnation, in_flight, list(self._items))

    def __len__(self) -> int:
        return len(self._items)
