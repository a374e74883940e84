"""An executor's outbox: outcomes kept until the coordinator acknowledges their commit."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from wfray.application.messages import Drained, ExecutorSnapshot, Outcome


class Outbox:
    """Numbered outcomes; `drain` hands each out once, `snapshot` hands out all unacknowledged."""

    def __init__(self) -> None:
        self.incarnation = uuid.uuid4().hex
        self._outcomes: list[Outcome] = []
        self._seq = 0
        self._sent = 0
        self._ready = asyncio.Event()

    def put(self, outcome: Outcome, *, wake: bool = True) -> None:
        """Keep an outcome until acknowledged. With `wake` False (the worker reported it to
        the coordinator itself) it does not end a waiting drain: it rides along with the
        next one, so a report that got lost is still delivered, one drain period late."""
        self._seq += 1
        outcome.seq = self._seq
        self._outcomes.append(outcome)
        if wake:
            self._ready.set()

    def _ack(self, ack: int) -> None:
        if self._outcomes and self._outcomes[0].seq <= ack:
            self._outcomes = [o for o in self._outcomes if o.seq > ack]

    async def drain(self, ack: int, wait_s: float) -> Drained:
        self._ack(ack)
        if not self._ready.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), wait_s)
        self._ready.clear()
        fresh = [o for o in self._outcomes if o.seq > self._sent]
        if fresh:
            self._sent = fresh[-1].seq
        return Drained(self.incarnation, fresh)

    def snapshot(self, ack: int, in_flight: list[tuple[str, str, int, int]]) -> ExecutorSnapshot:
        self._ack(ack)
        self._sent = self._seq
        return ExecutorSnapshot(self.incarnation, in_flight, list(self._outcomes))

    def __len__(self) -> int:
        return len(self._outcomes)
