"""Heartbeats, child runs and events on a real Ray instance."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.fixtures import flows
from wfray.domain.status import AttemptStatus, RunStatus


def test_a_long_step_heartbeats_and_its_progress_is_on_the_task(client: Any) -> None:
    run = client.submit(flows.long_beating, {"beats": 20})
    assert run.result(timeout=60) == 20
    (task,) = run.detail().tasks
    assert json.loads(task.progress_json) == {"done": 20}
    assert task.heartbeat_at is not None


def test_a_hung_step_without_heartbeats_is_lost_stopped_and_retried(client: Any) -> None:
    run = client.submit(flows.long_beating, {"beats": 3, "silent_first": True})
    assert run.result(timeout=60) == 3
    attempts = run.detail().attempts
    assert [a.status for a in attempts] == [AttemptStatus.LOST, AttemptStatus.SUCCEEDED]
    assert attempts[0].error_type == "wfray.HeartbeatTimeout"
    held = (attempts[1].finished_at - attempts[0].queued_at).total_seconds()
    assert held < 20, "the hung attempt (60 s) must not have been waited for"


def test_one_of_five_children_fails_and_is_compensated_while_four_complete(
    client: Any, tmp_path: Path
) -> None:
    journal = tmp_path / "journal"
    customers = ["ann", "ben", "cat", "dan", "eli"]
    run = client.submit(
        flows.parent_batch, {"customers": customers, "broken": ["cat"], "journal": str(journal)}
    )
    result = run.result(timeout=120)
    assert result["mailed"] == [f"mailed inv-{c}" for c in customers if c != "cat"]
    assert len(result["failed"]) == 1
    detail = run.detail()
    assert len(detail.children) == 5
    by_status = sorted(child.status.value for child in detail.children)
    assert by_status == ["compensated"] + ["completed"] * 4
    assert all(child.parent_run_id == run.run_id for child in detail.children)
    lines = journal.read_text().splitlines()
    assert sorted(line for line in lines if line.startswith("open")) == [
        f"open {c}" for c in customers
    ]
    assert [line for line in lines if line.startswith("void")] == ["void inv-cat"]
    failed_child = client.detail(result["failed"][0])
    assert failed_child.run.status is RunStatus.COMPENSATED
    assert failed_child.run.trigger == "parent"


def test_an_event_published_by_a_step_starts_its_subscribers_once(client: Any) -> None:
    client.register(flows.on_shipped)
    run = client.submit(flows.shipper, {"parcel": "p-42"})
    started = run.result(timeout=60)
    assert len(started) == 1
    (view,) = client.wait(started, timeout=60)
    assert view.status is RunStatus.COMPLETED
    again = client.publish(
        "parcel.shipped", {"parcel": "p-42"}, id=f"{run.run_id}:ship_parcel:-1:1"
    )
    assert again == started  # the same event id: no second run
    record = client.detail(started[0]).run
    assert record.trigger == "event" and record.trigger_id.startswith("parcel.shipped:")


def test_an_async_step_waits_for_its_children_while_other_io_steps_run(client: Any) -> None:
    parent = client.enqueue(flows.async_parent, seconds=3)
    deadline = time.monotonic() + 60
    while not parent.detail().children:  # the parent is waiting for its child now
        assert time.monotonic() < deadline, "the parent started no child"
        time.sleep(0.05)
    other = client.enqueue(flows.async_hold, seconds=0.1)
    assert other.result(timeout=60) == "held"
    assert parent.status() is RunStatus.RUNNING  # the io executor served `other` meanwhile
    result = parent.result(timeout=60)
    assert len(set(result["numbers"])) == 3
    assert len(result["children"]) == 1
