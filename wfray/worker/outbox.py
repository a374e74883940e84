"""An executor's outbox: outcomes kept until the coordinator acknowledges their commit.

Outcomes are kept sealed (pickled), as the worker that made them sent them.

It also fences dispatches: every coordinator start takes a higher epoch from the store, and
its drains and snapshots raise the outbox's epoch to it. A dispatch sent by an earlier
coordinator that arrives after that (Ray does not order calls from different callers) is
refused: the new coordinator judged that attempt lost at its snapshot and runs it again, so
running it here too would run it twice.

Numbers are acknowledged by the coordinator, which knows nothing of this process's restarts:
after one, it still holds the numbers of the outbox that died with it. So a new outbox
numbers on from the clock (microseconds), above anything an earlier one handed out, and an
acknowledgement of a number it never handed out is not its own: it acknowledges nothing,
and the outbox numbers everything it holds above it (a clock that runs behind a dead
incarnation's). Numbering from 1 again would let the old numbers acknowledge, and drop,
outcomes not yet committed: an attempt that ran here would be judged lost, and run again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

from wfray.application.wire import Sealed, SealedBatch, SealedSnapshot
from wfray.domain.records import AttemptKey

# Renumbering above a foreign acknowledgement leaves this much room: the coordinator may
# still acknowledge outcomes of the dead incarnation it had drained but not yet committed.
FOREIGN_ACK_GAP = 1 << 32


def clock_numbering() -> int:
    """Where a new outbox starts numbering: above the numbers of any earlier one."""
    return time.time_ns() // 1000


class Outbox:
    """Numbered outcomes; `drain` hands each out once, `snapshot` hands out all unacknowledged."""

    def __init__(self, first_seq: int | None = None) -> None:
        self.incarnation = uuid.uuid4().hex
        self._items: list[tuple[int, Sealed]] = []
        self._seq = clock_numbering() if first_seq is None else first_seq
        self._sent = self._seq  # the highest number handed out (none yet)
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
        if ack > self._sent:  # an earlier incarnation's number: see the module's docstring
            self._renumber_above(ack + FOREIGN_ACK_GAP)
        elif self._items and self._items[0][0] <= ack:
            self._items = [item for item in self._items if item[0] > ack]

    def _renumber_above(self, floor: int) -> None:
        """Number everything held above `floor`, to be handed out again: what was handed
        out under the old numbers could never be acknowledged (a duplicate is ignored)."""
        self._items = [(floor + i, sealed) for i, (_, sealed) in enumerate(self._items, 1)]
        self._sent = floor
        self._seq = floor + len(self._items)

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
        return SealedBatch(self.incarnation, fresh, len(self._items))

    def adopt(self, outcomes: list[Sealed]) -> None:
        """Outcomes the executor this one replaced held unacknowledged (`wfray upgrade`):
        kept as this executor's own until the coordinator acknowledges their commit."""
        for sealed in outcomes:
            self.put(sealed)

    def snapshot(self, ack: int, in_flight: list[AttemptKey], epoch: int = 0) -> SealedSnapshot:
        self._raise_epoch(epoch)
        self._ack(ack)
        self._sent = self._seq
        return SealedSnapshot(self.incarnation, in_flight, list(self._items))

    def __len__(self) -> int:
        return len(self._items)
