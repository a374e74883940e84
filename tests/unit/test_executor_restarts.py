"""Acknowledgements across an executor's restart: the coordinator still holds the numbers of
the outbox that died, and they must not acknowledge (drop) what the new one holds."""

from __future__ import annotations

import asyncio

import pytest

from tests.fixtures import unit_flows
from tests.unit.test_coordinator_inline import (
    _fresh_counters,  # noqa: F401
    attempts,
    coordinator,
    finish,
    request,
    run,
    started,
    summary,
    until,
)
from wfray.adapters.memory.executor import InlineExecutor
from wfray.adapters.memory.store import InMemoryRunStore
from wfray.application.messages import Drained, Outcome
from wfray.application.wire import seal
from wfray.domain.status import AttemptStatus
from wfray.worker.outbox import Outbox


def sealed(attempt: int) -> bytes:
    return seal(Outcome.ended(("r", "s", -1, attempt), AttemptStatus.SUCCEEDED, "", ""))


def held_attempts(outbox: Outbox, ack: int) -> list[int]:
    return [o.attempt for o in outbox.snapshot(ack, []).opened().outcomes]


def test_a_new_outbox_numbers_above_the_one_that_died() -> None:
    async def scenario() -> tuple[list[int], list[int]]:
        dead = Outbox()
        dead.put(sealed(1))
        last_of_dead = (await dead.drain(0, 0)).opened().outcomes[-1].seq
        reborn = Outbox()
        reborn.put(sealed(2))
        return held_attempts(reborn, last_of_dead), held_attempts(reborn, last_of_dead + 1)

    assert run(scenario) == ([2], [2])


def test_an_ack_of_a_number_never_handed_out_acknowledges_nothing() -> None:
    # a new outbox whose clock runs behind the dead one's: its own numbers are the lower
    reborn = Outbox(first_seq=0)
    reborn.put(sealed(1))
    reborn.put(sealed(2))
    foreign = 7
    first = reborn.snapshot(foreign, []).opened().outcomes
    assert [o.attempt for o in first] == [1, 2]
    assert all(o.seq > foreign for o in first)
    assert held_attempts(reborn, foreign + 1) == [1, 2]  # late, from the dead numbering
    assert held_attempts(reborn, first[0].seq) == [2]  # its own numbers still acknowledge
    assert held_attempts(reborn, first[1].seq) == []


def test_outcomes_handed_out_before_a_foreign_ack_are_handed_out_again() -> None:
    async def scenario() -> tuple[list[int], list[int]]:
        reborn = Outbox(first_seq=0)
        reborn.put(sealed(1))
        handed = [o.attempt for o in (await reborn.drain(0, 0)).opened().outcomes]
        again = (await reborn.drain(99, 0)).opened().outcomes
        return handed, [o.attempt for o in again if o.seq > 99]

    assert run(scenario) == ([1], [1])


class HeldIo(InlineExecutor):
    """An io executor whose drain can be held after it took its outcomes out: the answer is
    on its way to the coordinator when a snapshot overtakes it."""

    def __init__(self, clock_behind: bool) -> None:
        super().__init__()
        self.clock_behind = clock_behind
        self.passing = asyncio.Event()
        self.passing.set()
        self.holding = asyncio.Event()

    async def drain(self, ack: int, wait_s: float, epoch: int = 0) -> Drained:
        drained = await super().drain(ack, wait_s, epoch)
        if drained.outcomes and not self.passing.is_set():
            self.holding.set()
            await self.passing.wait()
        return drained

    def crash(self) -> None:
        super().crash()
        if self.clock_behind:
            self.outbox = Outbox(first_seq=0)


@pytest.mark.parametrize("clock_behind", [False, True])
def test_an_attempt_that_ran_on_a_restarted_executor_is_not_judged_lost(
    clock_behind: bool,
) -> None:
    """The sequence a killed io executor showed on Ray: the coordinator noticed the restart,
    sent the next attempt there, that attempt finished and a drain took its outcome out;
    before the drain's answer arrived, a snapshot (after a failed dispatch) asked with the
    acknowledgement of the dead incarnation's numbers."""

    async def scenario() -> InMemoryRunStore:
        store = InMemoryRunStore()
        io = HeldIo(clock_behind)
        async with coordinator(store, {"cpu": InlineExecutor(), "io": io}, drain_wait_s=0.05) as c:
            await c.submit([request("before", unit_flows.slow, {"seconds": 0})])
            await finish(c, "before")
            await until(lambda: c.reconciler.acks["io"] > 0)
            io.crash()
            await until(lambda: c.reconciler.incarnation("io") == io.outbox.incarnation)
            io.passing.clear()
            await c.submit([request("after", unit_flows.slow, {"seconds": 0})])
            await io.holding.wait()
            await c.reconciler.reconcile("io")
            io.passing.set()
            await finish(c, "after")
        return store

    store = run(scenario)
    assert summary(attempts(store, "after", "nap")) == [(1, AttemptStatus.SUCCEEDED, None)]
    assert started("nap", "after") == 1
