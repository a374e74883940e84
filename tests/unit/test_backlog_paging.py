"""A backlog past the memory cap is paged in at a cost linear in the page: the tasks the
store returns for a page of runs are read once, not once per run of the page (that made a
page of the 10,000 runs the default cap lets in cost 10,000 x 10,000 comparisons)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from tests.fixtures import unit_flows
from tests.unit.test_coordinator_inline import coordinator, finish, request, run
from wfray.adapters.memory.store import InMemoryRunStore
from wfray.domain.records import QueuedTask, TaskRecord
from wfray.domain.status import RunStatus

CAP = 8
RUNS = 60


class ReadCounted(list[TaskRecord]):
    """A list of tasks that counts how often it is read through."""

    def __init__(self, tasks: list[TaskRecord]) -> None:
        super().__init__(tasks)
        self.reads = 0

    def __iter__(self) -> Iterator[TaskRecord]:
        self.reads += 1
        return super().__iter__()


class CountingStore(InMemoryRunStore):
    def __init__(self) -> None:
        super().__init__()
        self.answers: list[ReadCounted] = []

    def live_tasks(
        self, run_ids: Sequence[str], window: int
    ) -> tuple[list[TaskRecord], dict[tuple[str, str], tuple[int, int]]]:
        tasks, counts = super().live_tasks(run_ids, window)
        answer = ReadCounted(tasks)
        self.answers.append(answer)
        return answer, counts


def test_a_page_of_the_backlog_reads_its_runs_tasks_once() -> None:
    store = CountingStore()

    async def scenario() -> dict[str, Any]:
        limits: dict[str, Any] = {"pool_windows": {"cpu": 1, "io": 1}, "memory_cap": CAP}
        async with coordinator(store, **limits) as c:
            ids = [f"r{i}" for i in range(RUNS)]
            await c.submit([request(run_id, unit_flows.single) for run_id in ids])
            return await finish(c, *ids)

    views = run(scenario, timeout_s=30)
    assert {view.status for view in views.values()} == {RunStatus.COMPLETED}
    pages = [answer for answer in store.answers if len(answer) > 1]
    assert pages, "the backlog past the memory cap was paged in, several runs at a time"
    assert max(answer.reads for answer in pages) == 1, [a.reads for a in pages]


class RowCounting(InMemoryRunStore):
    """Counts the task rows the coordinator reads: by page of the backlog, by run loaded."""

    def __init__(self) -> None:
        super().__init__()
        self.placed: list[Any] = []
        self.rows: Counter[tuple[str, str, int]] = Counter()

    def page_queued(self, queue: str, after: tuple[int, int] | None, limit: int) -> list[Any]:
        page = super().page_queued(queue, after, limit)
        self.placed.extend(page)
        return page

    def live_tasks(
        self, run_ids: Sequence[str], window: int
    ) -> tuple[list[TaskRecord], dict[tuple[str, str], tuple[int, int]]]:
        tasks, counts = super().live_tasks(run_ids, window)
        self.rows.update((t.run_id, t.step, t.map_index) for t in tasks)
        return tasks, counts


def test_a_paged_run_s_task_row_is_read_once_its_place_in_the_queue_alone_before() -> None:
    store = RowCounting()

    async def scenario() -> dict[str, Any]:
        limits: dict[str, Any] = {"pool_windows": {"cpu": 1, "io": 1}, "memory_cap": CAP}
        async with coordinator(store, **limits) as c:
            ids = [f"r{i}" for i in range(RUNS)]
            await c.submit([request(run_id, unit_flows.single) for run_id in ids])
            return await finish(c, *ids)

    views = run(scenario, timeout_s=30)
    assert {view.status for view in views.values()} == {RunStatus.COMPLETED}
    assert len(store.placed) >= RUNS - 2 * CAP  # most of the backlog was paged in
    assert all(isinstance(place, QueuedTask) for place in store.placed)  # not their rows
    paged = {(place.run_id, place.step, place.map_index) for place in store.placed}
    assert {key: store.rows[key] for key in paged} == dict.fromkeys(paged, 1)
