"""Fencing: a dispatch sent by a coordinator that has since been replaced is refused by the
executor, so an attempt the new coordinator judged lost and runs again cannot also run from
the old coordinator's message arriving late (Ray does not order calls of different callers)."""

from __future__ import annotations

import asyncio

from tests.unit.test_coordinator_inline import (
    _fresh_counters,  # noqa: F401
    attempts,
    coordinator,
    finish,
    nap_requests,
    run,
    started,
    summary,
)
from wfray.adapters.memory.executor import InlineExecutor
from wfray.adapters.memory.store import InMemoryRunStore
from wfray.application.messages import Dispatch
from wfray.domain.status import AttemptStatus, RunStatus
from wfray.worker.outbox import Outbox


def test_drains_and_snapshots_raise_the_epoch_and_older_dispatches_are_refused() -> None:
    async def scenario() -> list[bool]:
        outbox = Outbox()
        seen = [outbox.admits(0)]
        await outbox.drain(0, 0, epoch=3)
        seen += [outbox.admits(2), outbox.admits(3), outbox.admits(4)]
        outbox.snapshot(0, [], epoch=5)
        seen += [outbox.admits(4), outbox.admits(5)]
        outbox.snapshot(0, [], epoch=1)  # an older coordinator's call lowers nothing
        seen += [outbox.admits(4), outbox.admits(5)]
        return seen

    assert run(scenario) == [True, False, True, True, False, True, False, True]


def test_every_coordinator_start_takes_a_higher_epoch() -> None:
    async def scenario() -> list[int]:
        store = InMemoryRunStore()
        epochs = []
        for _ in range(3):
            async with coordinator(store) as c:
                epochs.append(c.reconciler.epoch)
        return epochs

    first, second, third = run(scenario)
    assert first < second < third


class Intercepting(InlineExecutor):
    """Holds back the dispatches it is sent while `holding`: messages still in transit."""

    def __init__(self) -> None:
        super().__init__()
        self.holding = True
        self.held: list[tuple[list[Dispatch], int]] = []

    async def dispatch(self, dispatches: list[Dispatch], epoch: int = 0) -> None:
        if self.holding:
            self.held.append((dispatches, epoch))
            return
        await super().dispatch(dispatches, epoch)


def test_a_replaced_coordinators_late_dispatch_does_not_run_the_step_a_second_time() -> None:
    async def scenario() -> tuple[InMemoryRunStore, Intercepting, str]:
        store = InMemoryRunStore()
        executor = Intercepting()
        pools = {"cpu": executor, "io": executor}
        (request,) = nap_requests(0.0)
        async with coordinator(store, pools) as first:
            await first.submit([request])
            while not executor.held:  # committed and sent, not yet arrived
                await asyncio.sleep(0.005)
        executor.holding = False
        async with coordinator(store, pools) as second:
            # the new coordinator judged the attempt lost at its snapshot and runs it again
            views = await finish(second, request.run_id)
            for dispatches, epoch in executor.held:  # the old message arrives at last
                await executor.dispatch(dispatches, epoch)
            await asyncio.sleep(0.1)
        assert views[request.run_id].status is RunStatus.COMPLETED
        return store, executor, request.run_id

    store, executor, run_id = run(scenario)
    assert summary(attempts(store, run_id, "nap")) == [
        (1, AttemptStatus.LOST, "wfray.AttemptLost"),
        (2, AttemptStatus.SUCCEEDED, None),
    ]
    assert executor.refused == [(run_id, "nap", -1, 1)]
    assert started("nap", run_id) == 1  # the stale dispatch did not run it again
