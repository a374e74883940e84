"""A fan-in over a paged fan-out streams its results (issue 18): the coordinator hands the
collecting step a reference, not the list, and the step reads the items' results from the
store a page at a time, each once (one in the blob store: one read of its blob). A result
that cannot be read fails that attempt, saying which; the next attempt reads it again.
Ray-free: InlineExecutor, in-memory store, the fixtures of test_fanout_paging."""

from __future__ import annotations

import json
import pickle
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_fanout_paging import _fresh, coordinator, finish, request, run  # noqa: F401
from wfray.adapters.blob import FsBlobStore
from wfray.adapters.memory.executor import InlineExecutor
from wfray.adapters.memory.store import InMemoryRunStore
from wfray.application.messages import Dispatch, RunView
from wfray.coordinator.collection import PAGE_ITEMS
from wfray.domain.status import AttemptStatus, RunStatus
from wfray.worker.step_runner import RunnerSettings

pytestmark = pytest.mark.timeout(120)


class CountingStore(InMemoryRunStore):
    """Counts the reads of fan-outs' item results; `hide` (step, index) leaves that item out
    of the first `hide_times` pages that would hold it (a row the store could not give)."""

    def __init__(self, hide: tuple[str, int] = ("", -1), hide_times: int = 0) -> None:
        super().__init__()
        self.pages: Counter[str] = Counter()  # by fanned-out step
        self.rows: Counter[str] = Counter()
        self.whole_reads = 0
        self.hide, self.hide_times = hide, hide_times

    def item_results(
        self, run_id: str, step: str, start: int, limit: int
    ) -> list[tuple[int, str | None, str | None]]:
        page = super().item_results(run_id, step, start, limit)
        hidden_step, hidden = self.hide
        if self.hide_times and step == hidden_step and any(row[0] == hidden for row in page):
            self.hide_times -= 1
            page = [row for row in page if row[0] != hidden]
        self.pages[step] += 1
        self.rows[step] += len(page)
        return page

    def collect_items(
        self, run_id: str, step: str, limit: int | None = None
    ) -> tuple[str | None, str | None]:
        self.whole_reads += 1
        return super().collect_items(run_id, step, limit)


class Recording(InlineExecutor):
    """Keeps the dispatches of the fan-in step (`gather`) as the coordinator sent them."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.gathers: list[Dispatch] = []

    async def dispatch(self, dispatches: list[Dispatch], epoch: int = 0) -> None:
        self.gathers.extend(d for d in dispatches if d.step == "gather")
        await super().dispatch(dispatches, epoch)


def fan_in(
    store: CountingStore, count: int, executor: Recording | None = None, pad: int = 0
) -> RunView:
    async def scenario() -> RunView:
        async with coordinator(store, executor, memory_cap=20) as c:
            await c.submit([request("in", count, pad=pad)])
            return await finish(c, "in")

    return run(scenario)


def gather_attempts(store: InMemoryRunStore) -> list[Any]:
    return [a for a in store.get_attempts("in") if a.step == "gather"]


def test_the_fan_in_gets_a_reference_whose_size_does_not_grow_with_the_fan_out() -> None:
    sizes = []
    for count in (100, 2_000):
        store, executor = CountingStore(), Recording()
        view = fan_in(store, count, executor)
        assert view.status is RunStatus.COMPLETED, view.error
        assert json.loads(view.result_json or "null") == [2 * i + 1 for i in range(count)]
        [dispatch] = executor.gathers
        sizes.append(len(pickle.dumps(dispatch.args)))
        # `again` (paged) and `item` read page by page, never whole: the coordinator holds
        # no list (the run's result is the fan-in's, a normal step's)
        assert store.whole_reads == 0
        # each result of `again` read once by the fan-in, a page at a time
        assert store.rows["again"] == count, store.rows
        assert store.pages["again"] == -(-count // PAGE_ITEMS), store.pages
        # `again`'s items read `item`'s a page at a time too, kept for the items after
        # (a page read twice at most when attempts running side by side both missed it)
        assert store.pages["item"] <= 2 * -(-count // PAGE_ITEMS), store.pages
    assert sizes[0] == sizes[1] - 1, sizes  # "count": 100 against 2000, one digit more


def test_a_fan_in_over_blob_results_reads_each_blob_once_and_a_failed_read_fails_one_attempt(
    tmp_path: Path,
) -> None:
    count, pad = 60, 2_000  # each item's result over the 1 KB threshold

    class FlakyBlobs(FsBlobStore):
        """The blob of item 7 of `again` cannot be read once."""

        failed = False

        def get(self, uri: str) -> bytes:
            if "/again/7-" in uri and not self.failed:
                type(self).failed = True
                raise OSError("the blob store did not answer")
            return super().get(uri)

    blobs = FlakyBlobs(str(tmp_path))
    runner = RunnerSettings(blob_threshold_bytes=1024)
    store = CountingStore()
    view = fan_in(store, count, Recording(blobs=blobs, settings=runner), pad=pad)
    assert view.status is RunStatus.COMPLETED, view.error
    assert json.loads(view.result_json or "null") == [f"{i:08d}" for i in range(count)]
    first, second = gather_attempts(store)
    assert first.status is AttemptStatus.FAILED
    assert first.error_type == "wfray.domain.errors.ResultUnreadableError"
    assert "step 'again'" in (first.error_message or "")
    assert "item 7 could not be read from the blob store" in (first.error_message or "")
    assert "the blob store did not answer" in (first.error_message or "")
    assert second.status is AttemptStatus.SUCCEEDED
    # each `item` blob once (its `again`); each `again` blob once per fan-in attempt, the
    # first attempt stopping at item 7
    assert blobs.reads == count + 7 + count, blobs.reads


def test_an_item_result_missing_from_the_store_fails_the_attempt_naming_it() -> None:
    store = CountingStore(hide=("again", 300), hide_times=1)  # `again`'s item 300 on the first page
    view = fan_in(store, 500)
    assert view.status is RunStatus.COMPLETED, view.error
    first, second = gather_attempts(store)
    assert first.status is AttemptStatus.FAILED, first
    assert first.error_message == (
        "the results of step 'again' of run 'in' could not be read: item 300 is not in the store"
    )
    assert second.status is AttemptStatus.SUCCEEDED
