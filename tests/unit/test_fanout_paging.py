"""A fan-out wider than the coordinator's memory cap is paged (issue 18): its items are
created a slice at a time, a completed item leaves memory, the fan-in's results are read
from the store once. Every item still runs once, retries, cancellation, a failure, a resume
and a coordinator crash behave as for a narrow fan-out. Ray-free: InlineExecutor, in-memory
store, a cap of a few dozen tasks so the tests stay fast."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.fixtures import wide_flows
from tests.fixtures.wide_flows import calls
from wfray.adapters.blob import FsBlobStore
from wfray.adapters.memory.executor import InlineExecutor
from wfray.adapters.memory.services import InlineStepServices
from wfray.adapters.memory.store import InMemoryRunStore
from wfray.application.messages import RunView, SubmitRequest
from wfray.bootstrap import SystemClock
from wfray.coordinator.coordinator import Coordinator, CoordinatorSettings
from wfray.domain.records import TaskRecord
from wfray.domain.status import AttemptStatus, RunStatus, TaskStatus
from wfray.worker.step_runner import RunnerSettings

T = TypeVar("T")
pytestmark = pytest.mark.timeout(120)

CAP = 40
WINDOWS = {"cpu": 8, "io": 8}
# what memory may hold at a turn's end: the queues' cap, the attempts running, the run's
# steps (whole-step rows), and the items whose outcomes arrived but are not yet applied
BOUND = CAP + sum(WINDOWS.values()) + 8


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    calls.clear()
    wide_flows.FATAL["on"] = True
    yield
    calls.clear()
    wide_flows.FATAL["on"] = True


def run(scenario: Callable[[], Coroutine[Any, Any, T]], timeout_s: float = 100) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(scenario(), timeout_s)

    return asyncio.run(bounded())


class Peak:
    """The most tasks the coordinator held in memory at the end of a loop turn."""

    def __init__(self) -> None:
        self.tasks = 0


@asynccontextmanager
async def coordinator(
    store: InMemoryRunStore,
    executor: InlineExecutor | None = None,
    peak: Peak | None = None,
    **settings: Any,
) -> AsyncIterator[Coordinator]:
    shared = executor or InlineExecutor()
    shared.services = services = InlineStepServices()  # a paged fan-in reads through them
    options: dict[str, Any] = {"memory_cap": CAP, "pool_windows": WINDOWS, **settings}
    c = Coordinator(
        store, {"cpu": shared, "io": shared}, SystemClock(), CoordinatorSettings(**options)
    )
    services.bind(c)
    if peak is not None:
        turn = c._turn

        async def watched() -> None:
            await turn()
            held = sum(len(state.tasks) for state in c.state.runs.values())
            peak.tasks = max(peak.tasks, held)

        c._turn = watched  # type: ignore[method-assign]
    await c.start()
    try:
        await c.register([flow.schema for flow in wide_flows.ALL])
        yield c
    finally:
        await c.stop()


def request(run_id: str, count: int, flow: Any = wide_flows.wide, **options: Any) -> SubmitRequest:
    return SubmitRequest(run_id, flow.name, "", json.dumps({"count": count, **options}))


async def finish(c: Coordinator, run_id: str) -> RunView:
    [view] = await c.wait([run_id], timeout_s=90)
    assert view.status.finished, view
    return view


def items(store: InMemoryRunStore, run_id: str, step: str = "item") -> list[TaskRecord]:
    found = [t for t in store.get_tasks([run_id]) if t.step == step and t.map_index >= 0]
    return sorted(found, key=lambda t: t.map_index)


def test_a_fan_out_wider_than_the_cap_runs_every_item_once_holding_a_window() -> None:
    count = 2_000

    async def scenario() -> tuple[RunView, InMemoryRunStore, Peak, dict[str, Any]]:
        store, peak = InMemoryRunStore(), Peak()
        async with coordinator(store, peak=peak) as c:
            await c.submit([request("r1", count, flaky=[3, 1_500])])
            view = await finish(c, "r1")
            return view, store, peak, c.stats()

    view, store, peak, stats = run(scenario)
    assert view.status is RunStatus.COMPLETED, view.error
    assert json.loads(view.result_json or "null") == [2 * i + 1 for i in range(count)]
    created = items(store, "r1")
    assert [t.map_index for t in created] == list(range(count))  # each created once
    assert all(t.status is TaskStatus.COMPLETED for t in created)
    assert {t.map_index: t.attempts for t in created if t.attempts != 1} == {3: 2, 1_500: 2}
    assert {calls[f"r1:{i}"] for i in range(count) if i not in (3, 1_500)} == {1}
    assert len(items(store, "r1", "again")) == count  # a map over the paged map
    assert peak.tasks <= BOUND, peak.tasks  # against 4,000 items held before
    assert (stats["runs_in_memory"], stats["fanning_out"], stats["queued"]) == (0, 0, 0)


def test_a_mapped_sink_wider_than_the_cap_gives_the_run_its_whole_list() -> None:
    async def scenario() -> RunView:
        async with coordinator(InMemoryRunStore()) as c:
            await c.submit([request("sq", 500, wide_flows.wide_sink)])
            return await finish(c, "sq")

    view = run(scenario)
    assert view.status is RunStatus.COMPLETED, view.error
    assert json.loads(view.result_json or "null") == [i * i for i in range(500)]


def test_a_mapped_sink_whose_results_pass_the_result_limit_fails_naming_it() -> None:
    """The run's result is its sink's whole list, which the coordinator collects into one
    text: past WFRAY_MAX_RESULT_BYTES it stops reading and the step fails, not retried."""

    async def scenario() -> tuple[RunView, RunView, InMemoryRunStore]:
        async with coordinator(InMemoryRunStore(), max_result_bytes=10_000) as c:
            await c.submit([request("fits", 500, wide_flows.wide_sink)])
            fits = await finish(c, "fits")
        store = InMemoryRunStore()
        async with coordinator(store, max_result_bytes=1_000) as c:
            await c.submit([request("over", 500, wide_flows.wide_sink)])
            return fits, await finish(c, "over"), store

    fits, over, store = run(scenario)
    assert fits.status is RunStatus.COMPLETED, fits.error
    assert json.loads(fits.result_json or "null") == [i * i for i in range(500)]
    assert over.status is RunStatus.FAILED and over.result_json is None
    error = over.error or ""
    assert "wfray.ResultTooLargeError" in error and "WFRAY_MAX_RESULT_BYTES" in error, error
    assert "the 500 items of step 'square'" in error and "1,000 bytes" in error, error
    assert [t.attempts for t in items(store, "over", "square")] == [1] * 500  # none retried


def test_a_failed_item_stops_the_paged_fan_out_and_a_resume_finishes_it() -> None:
    count = 1_000

    async def scenario() -> tuple[RunView, RunView, InMemoryRunStore, list[TaskRecord]]:
        store = InMemoryRunStore()
        async with coordinator(store) as c:
            await c.submit([request("bad", count, fatal=300)])
            failed = await finish(c, "bad")
            await asyncio.sleep(0.05)  # a turn more: nothing else is created or dispatched
            at_failure = items(store, "bad")
            wide_flows.FATAL["on"] = False
            [answer] = await c.resume(["bad"])
            assert answer.applied, answer
            return failed, await finish(c, "bad"), store, at_failure

    failed, resumed, store, at_failure = run(scenario)
    assert failed.status is RunStatus.FAILED
    assert "item 300 is malformed" in (failed.error or "")
    assert len(at_failure) < count  # the items past the window were never created
    unfinished = {TaskStatus.QUEUED, TaskStatus.RUNNING, TaskStatus.RETRYING}
    assert not [t for t in at_failure if t.status in unfinished]
    assert resumed.status is RunStatus.COMPLETED, resumed.error
    assert json.loads(resumed.result_json or "null") == [2 * i + 1 for i in range(count)]
    assert all(t.status is TaskStatus.COMPLETED for t in items(store, "bad"))
    assert len(items(store, "bad")) == count


def test_cancelling_a_paged_fan_out_leaves_nothing_queued_or_running() -> None:
    async def scenario() -> tuple[RunView, InMemoryRunStore, dict[str, Any]]:
        store = InMemoryRunStore()
        async with coordinator(store) as c:
            await c.submit([request("stop", 5_000, nap_s=0.002)])
            while sum(calls.values()) < 100:
                await asyncio.sleep(0.005)
            await c.cancel(["stop"], "enough")
            view = await finish(c, "stop")
            while c.state.attempts:  # the running items' ends are recorded
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.05)
            return view, store, c.stats()

    view, store, stats = run(scenario)
    assert view.status is RunStatus.CANCELLED
    created = items(store, "stop")
    assert len(created) < 5_000
    assert {t.status for t in created} <= {TaskStatus.COMPLETED, TaskStatus.CANCELLED}
    assert sum(calls.values()) < 5_000
    assert (stats["queued"], stats["fanning_out"], stats["runs_in_memory"]) == (0, 0, 0)


def test_after_a_crash_a_new_coordinator_finishes_the_paged_fan_out_once_per_item() -> None:
    count = 1_500

    async def scenario() -> tuple[RunView, InMemoryRunStore, Peak]:
        store, peak = InMemoryRunStore(), Peak()
        first = InlineExecutor()
        async with coordinator(store, first) as c:
            await c.submit([request("crash", count, nap_s=0.001)])
            while sum(calls.values()) < 400:
                await asyncio.sleep(0.005)
        first.crash()  # the executor dies with the attempts it ran
        async with coordinator(store, peak=peak) as c:
            return await finish(c, "crash"), store, peak

    view, store, peak = run(scenario)
    assert view.status is RunStatus.COMPLETED, view.error
    assert json.loads(view.result_json or "null") == [2 * i + 1 for i in range(count)]
    created = items(store, "crash")
    assert [t.map_index for t in created] == list(range(count))
    assert all(t.status is TaskStatus.COMPLETED for t in created)
    tries = [a for a in store.get_attempts("crash") if a.step == "item"]
    succeeded = [a.map_index for a in tries if a.status is AttemptStatus.SUCCEEDED]
    assert sorted(succeeded) == list(range(count))  # one success each
    assert any(a.status is AttemptStatus.LOST for a in tries)  # the crash did lose some
    assert peak.tasks <= BOUND, peak.tasks  # recovery loaded a window, not every item


def test_a_fan_in_over_results_in_the_blob_store_reads_each_once(tmp_path: Path) -> None:
    count, pad = 80, 2_000  # each item's result over the 1 KB threshold (the fan-in's not)
    blobs = FsBlobStore(str(tmp_path))
    executor = InlineExecutor(blobs=blobs, settings=RunnerSettings(blob_threshold_bytes=1024))

    async def scenario() -> tuple[RunView, InMemoryRunStore]:
        store = InMemoryRunStore()
        async with coordinator(store, executor, memory_cap=20) as c:
            await c.submit([request("blobs", count, pad=pad)])
            return await finish(c, "blobs"), store

    view, store = run(scenario)
    assert view.status is RunStatus.COMPLETED, view.error
    assert json.loads(view.result_json or "null") == [f"{i:08d}" for i in range(count)]
    assert all(t.result_ref is not None for t in items(store, "blobs", "again"))
    # each `item` result read once by its `again`, each `again` result once by the fan-in
    assert blobs.reads == 2 * count, blobs.reads
    assert blobs.bytes_read == 2 * count * (pad + 8 + 2), blobs.bytes_read
