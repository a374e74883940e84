"""A fan-out over a list in the blob store reads the list O(N) bytes in total, not once per
item (issue 18), and its items get their own values; on a real blob folder, steps inline."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures import flows
from wfray.adapters.blob import OFFSETS, FsBlobStore, blob_store
from wfray.adapters.memory.executor import InlineExecutor
from wfray.adapters.memory.store import InMemoryRunStore
from wfray.application.coordinator import Coordinator
from wfray.application.messages import RunView, SubmitRequest
from wfray.application.step_runner import RunnerSettings
from wfray.bootstrap import SystemClock
from wfray.domain.status import RunStatus

pytestmark = pytest.mark.timeout(120)


def spread_run(blobs: FsBlobStore, count: int, **settings: Any) -> tuple[RunView, InMemoryRunStore]:
    async def scenario() -> tuple[RunView, InMemoryRunStore]:
        store = InMemoryRunStore()
        runner = RunnerSettings(blob_threshold_bytes=1024, **settings)
        executor = InlineExecutor(blobs=blobs, settings=runner)
        c = Coordinator(store, {"cpu": executor, "io": executor}, SystemClock())
        await c.start()
        try:
            await c.register([flows.spread.schema])
            payload = {"count": count, "blob_root": blobs.root_uri}
            await c.submit([SubmitRequest("spread", "spread", "", json.dumps(payload))])
            [view] = await c.wait(["spread"], timeout_s=90)
            return view, store
        finally:
            await c.stop()

    return asyncio.run(asyncio.wait_for(scenario(), 100))


def test_a_fan_out_over_a_blob_list_reads_each_item_once_not_the_whole_list(
    tmp_path: Path,
) -> None:
    count = 3_000  # about 14 KB of JSON, over the 1 KB threshold
    blobs = blob_store(str(tmp_path / "blobs"))
    view, store = spread_run(blobs, count)
    assert view.status is RunStatus.COMPLETED, view.error
    [source] = [t for t in store.get_tasks(["spread"]) if t.step == "spread_items"]
    assert source.result_ref is not None and source.result_json is None  # in the blob store
    listed = tmp_path / "blobs" / "spread" / "spread_items"
    stored = sum(f.stat().st_size for f in listed.iterdir())
    assert [f.name for f in listed.iterdir() if f.name.endswith(OFFSETS)]
    reads = json.loads(view.result_json or "{}")
    assert reads.pop("misplaced") == 0  # every item got its own value
    # the whole list (and its offsets) at most twice over, against count x 14 KB before
    assert blobs.bytes_read <= 2 * stored, (blobs.bytes_read, stored)
    assert blobs.reads <= 2 * count + 2


def test_a_list_written_by_an_older_wfray_without_offsets_is_still_read(tmp_path: Path) -> None:
    blobs = FsBlobStore(str(tmp_path))
    uri = blobs.put("r/s/-1-1.json", b'[1,"two",{"three":3}]')
    assert [json.loads(blobs.get_item(uri, i)) for i in range(3)] == [1, "two", {"three": 3}]
    with pytest.raises(IndexError):
        blobs.get_item(blobs.put_list("r/s/-1-2.json", [b"1"]), 1)
