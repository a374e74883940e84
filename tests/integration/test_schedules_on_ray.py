"""Cron schedules hosted by the coordinator actor on a real Ray instance and SQLite store."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

import wfray
from tests.fixtures import flows
from wfray.domain.errors import ScheduleNotFoundError
from wfray.domain.records import RunRecord
from wfray.domain.status import RunStatus
from wfray.sdk.schedules import forget


def runs_of(client: Any, name: str) -> list[RunRecord]:
    runs: list[RunRecord] = client.list_runs("noop", limit=1000)
    return [r for r in runs if r.trigger == "schedule" and (r.trigger_id or "").startswith(name)]


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout_s}s")
        time.sleep(0.2)


def test_an_every_second_schedule_runs_pauses_and_triggers_now(client: Any) -> None:
    name = f"every-second-{uuid.uuid4().hex[:8]}"
    try:
        wfray.schedule(flows.noop, name=name, cron="* * * * * *", overlap="allow")
        client.register(flows.noop)  # stores the workflow and upserts its schedule
    finally:
        forget("noop")  # other modules register noop too: keep this schedule out of them
    (info,) = [i for i in client.list_schedules() if i.name == name]
    first, second, third = info.next_fire_times
    assert second - first == third - second == timedelta(seconds=1)

    def completed() -> list[RunRecord]:
        return [r for r in runs_of(client, name) if r.status is RunStatus.COMPLETED]

    wait_until(lambda: len(completed()) >= 3, 30, "three ticks completed")
    ticks = [r.trigger_id for r in runs_of(client, name)]
    assert len(ticks) == len(set(ticks))  # one run per tick

    client.pause_schedule(name)
    time.sleep(1.5)  # a tick already in flight when the pause landed may still start
    before = len(runs_of(client, name))
    time.sleep(3)
    assert len(runs_of(client, name)) == before
    (paused,) = [i for i in client.list_schedules() if i.name == name]
    assert paused.spec.paused and paused.next_fire_times == []

    handle = client.trigger_schedule(name)
    assert client.wait([handle.run_id], timeout=30)[0].status is RunStatus.COMPLETED
    assert len(runs_of(client, name)) == before + 1

    client.delete_schedule(name)
    assert name not in [i.name for i in client.list_schedules()]
    with pytest.raises(ScheduleNotFoundError, match=name):
        client.pause_schedule(name)
