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

    def put(self, outcome: Outcome) -> None:
        self._seq += 1
        outcome.seq = self._seq
        self._outcomes.append(outcome)
        self._ready.set()

    def _ack(self, ack: int) -> None:
        if self._outcomes and self._outcomes[0].seq <= ack:
            self._outcomes = [o for o in self._outcomes if o.seq > ack]

    async def drain(self, ack: int, wait_s: float) -> Drained:
        self._ack(ack)
        if self._seq <= self._sent:
            self._ready.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), wait_s)
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
