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
from wfray.application.messages import RunView, SubmitRequest
from wfray.bootstrap import SystemClock
from wfray.coordinator.coordinator import Coordinator, CoordinatorSettings
from wfray.domain.status import RunStatus
from wfray.sdk.definition import Workflow
from wfray.worker.step_runner import RunnerSettings

pytestmark = pytest.mark.timeout(120)


def one_run(
    blobs: FsBlobStore,
    flow: Workflow,
    payload: Any,
    runner: RunnerSettings | None = None,
    **settings: Any,
) -> tuple[RunView, InMemoryRunStore]:
    async def scenario() -> tuple[RunView, InMemoryRunStore]:
        store = InMemoryRunStore()
        runner_settings = runner or RunnerSettings(blob_threshold_bytes=1024)
        executor = InlineExecutor(blobs=blobs, settings=runner_settings)
        pools = {"cpu": executor, "io": executor}
        c = Coordinator(store, pools, SystemClock(), CoordinatorSettings(**settings))
        await c.start()
        try:
            await c.register([flow.schema])
            await c.submit([SubmitRequest("r1", flow.name, "", json.dumps(payload))])
            [view] = await c.wait(["r1"], timeout_s=90)
            return view, store
        finally:
            await c.stop()

    return asyncio.run(asyncio.wait_for(scenario(), 100))


def spread_run(blobs: FsBlobStore, count: int) -> tuple[RunView, InMemoryRunStore]:
    return one_run(blobs, flows.spread, {"count": count, "blob_root": blobs.root_uri})


def test_a_fan_out_over_a_blob_list_reads_each_item_once_not_the_whole_list(
    tmp_path: Path,
) -> None:
    count = 3_000  # about 14 KB of JSON, over the 1 KB threshold
    blobs = blob_store(str(tmp_path / "blobs"))
    view, store = spread_run(blobs, count)
    assert view.status is RunStatus.COMPLETED, view.error
    [source] = [t for t in store.get_tasks(["r1"]) if t.step == "spread_items"]
    assert source.result_ref is not None and source.result_json is None  # in the blob store
    listed = tmp_path / "blobs" / "r1" / "spread_items"
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


def test_a_fan_out_wider_than_the_limit_fails_at_once_naming_the_setting(tmp_path: Path) -> None:
    view, store = one_run(
        FsBlobStore(str(tmp_path)), flows.spread, {"count": 50, "blob_root": ""}, max_map_items=49
    )
    assert view.status is RunStatus.FAILED
    assert "returned 50 items for step 'read_item' to map over, over the limit of 49" in (
        view.error or ""
    )
    assert "WFRAY_MAX_MAP_ITEMS" in (view.error or "")
    assert {t.step for t in store.get_tasks(["r1"]) if t.map_index >= 0} == set()
    [attempt] = [a for a in store.get_attempts("r1") if a.step == "spread_items"]
    assert attempt.error_type == "wfray.FanOutTooLargeError"  # once: not retried


def test_a_result_over_the_maximum_fails_its_attempt_naming_the_setting(tmp_path: Path) -> None:
    runner = RunnerSettings(blob_threshold_bytes=1024, max_result_bytes=100)
    view, store = one_run(
        FsBlobStore(str(tmp_path)), flows.spread, {"count": 50, "blob_root": ""}, runner
    )
    assert view.status is RunStatus.FAILED
    [attempt] = [a for a in store.get_attempts("r1") if a.step == "spread_items"]
    assert attempt.error_type is not None and attempt.error_type.endswith("ResultTooLargeError")
    assert "over the limit of 100 bytes (WFRAY_MAX_RESULT_BYTES)" in (attempt.error_message or "")


@pytest.mark.parametrize(
    ("kind", "named"), [("dict", "a JSON object"), ("str", "a JSON string"), ("int", "a number")]
)
def test_a_fan_out_over_a_result_that_is_not_a_list_names_what_it_got(
    tmp_path: Path, kind: str, named: str
) -> None:
    view, _ = one_run(FsBlobStore(str(tmp_path)), flows.not_a_list, {"kind": kind})
    assert view.status is RunStatus.FAILED
    assert view.error == f"step 'take' maps over 'give', whose result is {named}, not a list"


def test_a_list_blob_reads_back_whole_and_by_index(tmp_path: Path) -> None:
    blobs = FsBlobStore(str(tmp_path))
    items: list[Any] = [0, -1.5, "żółw ✓", {"a": [1, {"b": None}]}, [], "", True, None, "x" * 5000]
    parts = [json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode() for item in items]
    uri = blobs.put_list("r/s/-1-1.json", parts)
    assert json.loads(blobs.get(uri)) == items
    assert [json.loads(blobs.get_item(uri, i)) for i in range(len(items))] == items
    empty = blobs.put_list("r/s/-1-3.json", [])
    assert json.loads(blobs.get(empty)) == []
    with pytest.raises(IndexError):
        blobs.get_item(empty, 0)
