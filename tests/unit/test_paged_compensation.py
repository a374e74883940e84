"""A fan-out wider than the memory cap whose mapped step has a compensation is paged too
(issue 18): its completed items leave memory, and when the run is undone they are paged
back in from the store a page at a time, each compensated once, the coordinator holding a
window of them throughout, across a crash too. Ray-free: the fixtures of test_fanout_paging."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fixtures import wide_flows
from tests.fixtures.wide_flows import undone
from tests.unit.test_fanout_paging import (  # noqa: F401
    BOUND,
    CAP,
    Peak,
    _fresh,
    coordinator,
    finish,
    items,
    request,
    run,
)
from wfray.adapters.memory.executor import InlineExecutor
from wfray.adapters.memory.store import InMemoryRunStore
from wfray.application.messages import RunView
from wfray.domain.status import AttemptStatus, RunStatus, TaskStatus

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def _no_undone() -> Iterator[None]:
    undone.clear()
    yield
    undone.clear()


def compensations(store: InMemoryRunStore, run_id: str) -> list[Any]:
    return [
        a
        for a in store.get_attempts(run_id)
        if a.kind == "compensation" and a.status is AttemptStatus.SUCCEEDED
    ]


def test_a_paged_fan_out_with_a_compensation_undoes_every_item_once_holding_a_window() -> None:
    count = 2_000

    async def scenario() -> tuple[RunView, InMemoryRunStore, Peak, dict[str, Any]]:
        store, peak = InMemoryRunStore(), Peak()
        async with coordinator(store, peak=peak) as c:
            await c.submit([request("undo", count, wide_flows.wide_undo)])
            view = await finish(c, "undo")
            return view, store, peak, c.stats()

    view, store, peak, stats = run(scenario)
    assert view.status is RunStatus.COMPENSATED, view.error
    assert "the settlement of 2000 parts was refused" in (view.error or "")
    assert undone == {f"part-{i}": 1 for i in range(count)}
    assert sorted(a.map_index for a in compensations(store, "undo")) == list(range(count))
    assert {t.status for t in items(store, "undo", "part")} == {TaskStatus.COMPENSATED}
    assert peak.tasks <= BOUND, peak.tasks  # against 2,000 items held before
    assert (stats["runs_in_memory"], stats["queued"]) == (0, 0)


def test_after_a_crash_mid_compensation_a_new_coordinator_undoes_the_rest_once_each() -> None:
    count = 1_500

    async def scenario() -> tuple[RunView, InMemoryRunStore, Peak, int]:
        store, peak = InMemoryRunStore(), Peak()
        first = InlineExecutor()
        async with coordinator(store, first) as c:
            await c.submit([request("undo", count, wide_flows.wide_undo, nap_s=0.002)])
            # crashed while it runs compensations (not in a gap between two turns: then
            # the crash would lose none), before its coordinator stops
            while sum(undone.values()) < 400 or not first.running:
                await asyncio.sleep(0.001)
            first.crash()  # the executor dies with the compensations it runs
            at_crash = sum(undone.values())
        async with coordinator(store, peak=peak) as c:
            return await finish(c, "undo"), store, peak, at_crash

    view, store, peak, at_crash = run(scenario)
    assert at_crash < count
    assert view.status is RunStatus.COMPENSATED, view.error
    assert set(undone) == {f"part-{i}" for i in range(count)}  # each at least once
    # once each as recorded: an attempt lost in the crash ran again, none ran twice after
    assert sorted(a.map_index for a in compensations(store, "undo")) == list(range(count))
    tried = [a for a in store.get_attempts("undo") if a.kind == "compensation"]
    assert any(a.status is AttemptStatus.LOST for a in tried)  # the crash did lose some
    # run again: at most the page in memory at the crash (the cap), not all done before it
    assert sum(undone.values()) - count <= CAP
    assert {t.status for t in items(store, "undo", "part")} == {TaskStatus.COMPENSATED}
    assert peak.tasks <= BOUND, peak.tasks  # recovery paged the rest in, not all of it


def test_a_paged_sink_that_cannot_be_collected_fails_and_undoes_every_item_once() -> None:
    count = 300

    async def scenario() -> tuple[RunView, InMemoryRunStore]:
        store = InMemoryRunStore()
        async with coordinator(store, max_result_bytes=1_000) as c:
            await c.submit([request("whole", count, wide_flows.wide_undo_sink)])
            return await finish(c, "whole"), store

    view, store = run(scenario)
    assert view.status is RunStatus.COMPENSATED, view.error
    assert "WFRAY_MAX_RESULT_BYTES" in (view.error or ""), view.error
    assert undone == {f"piece-{i}": 1 for i in range(count)}
    assert {t.status for t in items(store, "whole", "piece")} == {TaskStatus.COMPENSATED}
