"""A fan-out over a list in the blob store, on Ray: every item gets its own value, and the
workers read the list O(N) bytes in total, not once per item (issue 18); a fan-out wider
than the coordinator's memory cap is paged and still runs every item once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures import flows, wide_flows
from tests.integration.conftest import start_wfray
from wfray.adapters.blob import OFFSETS
from wfray.domain.status import RunStatus, TaskStatus


@pytest.fixture(scope="module")
def small_blobs(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    wf = start_wfray(tmp_path_factory.mktemp("wfray"), blob_threshold_bytes=1024)
    yield wf
    wf.shutdown()


def test_a_fan_out_over_a_blob_list_reads_the_list_a_bounded_number_of_times(
    small_blobs: Any,
) -> None:
    count = 2_000  # about 9 KB of JSON, over the 1 KB threshold
    root = small_blobs.settings.blob_root
    run = small_blobs.submit(flows.spread, {"count": count, "blob_root": root})
    reads = run.result(timeout=120)
    detail = run.detail()
    assert detail.run.status is RunStatus.COMPLETED
    [source] = [t for t in detail.tasks if t.step == "spread_items"]
    assert source.result_json is None and source.result_ref  # in the blob store
    assert reads.pop("misplaced") == 0  # every item got its own value
    listed = Path(root) / run.run_id / "spread_items"
    stored = sum(f.stat().st_size for f in listed.iterdir())
    assert any(f.name.endswith(OFFSETS) for f in listed.iterdir())
    # each worker process reports what its blob store had read by its last item: together
    # at most the list twice over (before: every item read all of it, count x 9 KB)
    assert 0 < sum(reads.values()) <= 2 * stored, (reads, stored)


def test_a_fan_out_over_a_result_that_is_not_a_list_names_the_step_and_the_type(
    small_blobs: Any,
) -> None:
    run = small_blobs.submit(flows.not_a_list, {"kind": "dict"})
    with pytest.raises(Exception, match="not a list"):
        run.result(timeout=60)
    assert run.detail().run.error == (
        "step 'take' maps over 'give', whose result is a JSON object, not a list"
    )


@pytest.fixture(scope="module")
def small_cap(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    wf = start_wfray(tmp_path_factory.mktemp("wfray"), memory_cap=50)
    yield wf
    wf.shutdown()


def test_a_fan_out_wider_than_the_memory_cap_is_paged_and_runs_every_item_once(
    small_cap: Any,
) -> None:
    count = 1_500  # 30 times the cap: items are created as room frees, then collected
    run = small_cap.submit(wide_flows.wide, {"count": count, "flaky": [7]})
    assert run.result(timeout=240) == [2 * i + 1 for i in range(count)]
    detail = run.detail()
    items = sorted(
        (t for t in detail.tasks if t.step == "item" and t.map_index >= 0),
        key=lambda t: t.map_index,
    )
    assert [t.map_index for t in items] == list(range(count))
    assert {t.status for t in items} == {TaskStatus.COMPLETED}
    assert {t.map_index: t.attempts for t in items if t.attempts != 1} == {7: 2}
    stats = small_cap.stats()
    assert (stats["fanning_out"], stats["queued"]) == (0, 0)
