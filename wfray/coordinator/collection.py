"""A paged fan-out's collected results: a reference the coordinator records, pages the step
that takes them reads.

The coordinator does not read a paged fan-out's results when its last item completes: the
step that collects them gets a reference (run, step, count) and reads them from the store a
page at a time through its step services (`application/arg_text.py`), each page read here
from the store and handed on. So the coordinator holds one page at a time, whatever the
width of the fan-out, and reads each result once. Only a fan-out that is one of the run's
sinks is read whole, once: its results are the run's result, which the run's row stores.
"""

from __future__ import annotations

from wfray.application.ports import RunLookup
from wfray.coordinator.durable import DurableStore
from wfray.domain.results import Collected, CollectFailed, CollectionTooLarge, collection_ref
from wfray.domain.run_state import RunState

PAGE_ITEMS = 256  # item results per page at most (each under the blob threshold)
PAGE_BYTES = 4 * 1024 * 1024  # and a page's results in bytes, past its first item

Row = tuple[int, str | None, str | None]


async def collection(
    durable: DurableStore, state: RunState, step: str, limit: int | None = None
) -> Collected:
    """A completed paged fan-out's result: a reference, or its results read once if they
    are (part of) the run's result, which fails the step past `limit` characters of JSON
    (WFRAY_MAX_RESULT_BYTES): the coordinator holds that text, and the run's row stores it."""
    run_id = state.run.run_id
    if step not in state.schema.sinks():
        return collection_ref(state.task(step))
    try:
        return await durable.call(durable.store.collect_items, run_id, step, limit)
    except CollectionTooLarge:
        count = state.task(step).map_count or 0
        return CollectFailed(
            "wfray.ResultTooLargeError",
            f"the results of the {count:,} items of step {step!r}, the run's result, add up "
            f"to more than {limit:,} bytes of JSON (WFRAY_MAX_RESULT_BYTES); return less "
            "from each item, add a step that reduces them, or raise the limit",
        )


def read_page(store: RunLookup, run_id: str, step: str, start: int, limit: int) -> list[Row]:
    """Up to `limit` (at most PAGE_ITEMS) item results of a fan-out from index `start`, cut
    at PAGE_BYTES: the asker reads on from the index after the last one. (Sync: in a thread,
    `DurableStore.call`, or the asking step's own.)"""
    wanted = max(1, min(limit, PAGE_ITEMS))
    rows = store.item_results(run_id, step, max(0, start), wanted)
    size = 0
    for kept, (_, text, ref) in enumerate(rows):
        size += len(text or "") + len(ref or "")
        if size > PAGE_BYTES and kept:
            return rows[:kept]
    return rows
