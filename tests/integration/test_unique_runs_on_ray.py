"""Runs unique by key on a real Ray instance (SQLite store): many threads racing one key,
batches, a coordinator restart between two submissions, events, schedules, a bad key."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import ray

import wfray
from tests.fixtures import unique_flows
from tests.fixtures.unique_flows import Week
from wfray.domain.errors import UniqueKeyError, UniqueRunError
from wfray.domain.status import RunStatus
from wfray.sdk.schedules import forget

THREADS, EACH = 6, 4


def week() -> str:
    return f"W-{uuid.uuid4().hex[:8]}"  # a key of its own per test: one shared instance


def runs_of(client: Any, flow: wfray.Workflow, key: str) -> list[Any]:
    return [r for r in client.list_runs(flow.name, limit=1000) if r.unique_key == key]


def race(submit: Callable[[int], Any]) -> list[Any]:
    """THREADS threads, released at once, each submitting EACH times; what each got."""
    barrier = threading.Barrier(THREADS)
    got: list[Any] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        barrier.wait(timeout=30)
        for i in range(EACH):
            try:
                answer: Any = submit(n * EACH + i).run_id
            except Exception as exc:  # a refusal is an answer too
                answer = exc
            with lock:
                got.append(answer)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(got) == THREADS * EACH
    return got


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout_s}s")
        time.sleep(0.1)


def test_many_threads_submitting_one_key_get_one_run(client: Any) -> None:
    flow, w = unique_flows.once, week()
    got = race(lambda n: client.submit(flow, Week(week=w, note=str(n))))
    assert len(set(got)) == 1, got
    (run,) = runs_of(client, flow, f"weekly:{w}")
    assert run.run_id == got[0]
    assert client.wait([run.run_id], timeout=60)[0].status is RunStatus.COMPLETED
    # finished: this policy answers with it for good, and `execute` with its result
    assert client.submit(flow, Week(week=w)).run_id == run.run_id
    assert client.execute(flow, Week(week=w, note="late"), timeout=60) == w
    assert len(runs_of(client, flow, f"weekly:{w}")) == 1


def test_a_refusing_policy_accepts_exactly_one_of_many_racing_threads(client: Any) -> None:
    flow, w = unique_flows.refuse, week()
    got = race(lambda n: client.submit(flow, Week(week=w, note=str(n))))
    accepted = [g for g in got if isinstance(g, str)]
    refused = [g for g in got if not isinstance(g, str)]
    assert len(accepted) == 1, got
    assert all(isinstance(e, UniqueRunError) for e in refused), refused
    assert f"holds uniqueness key 'weekly:{w}'" in str(refused[0])
    assert [r.run_id for r in runs_of(client, flow, f"weekly:{w}")] == accepted


def test_one_key_in_one_batch_gets_one_run(client: Any) -> None:
    flow, w = unique_flows.default, week()
    handles = client.submit_many(flow, [Week(week=w, note=str(i)) for i in range(10)])
    assert len({h.run_id for h in handles}) == 1
    assert len(runs_of(client, flow, f"weekly:{w}")) == 1


def test_a_coordinator_restart_between_two_submissions_keeps_one_run(
    client: Any, tmp_path: Path
) -> None:
    flow, w, gate = unique_flows.default, week(), tmp_path / "open"
    first = client.submit(flow, Week(week=w, gate=str(gate)))
    ray.kill(client.handle, no_restart=False)  # Ray restarts it; the client waits for it
    second = client.submit(flow, Week(week=w, note="after the restart"))
    assert second.run_id == first.run_id  # still active: the same run answers
    gate.touch()
    assert client.wait([first.run_id], timeout=60)[0].status is RunStatus.COMPLETED
    third = client.submit(flow, Week(week=w))  # finished: this policy starts a new run
    assert third.run_id != first.run_id
    assert client.wait([third.run_id], timeout=60)[0].status is RunStatus.COMPLETED
    assert len(runs_of(client, flow, f"weekly:{w}")) == 2


def test_events_with_one_key_start_one_run(client: Any) -> None:
    w = week()
    first = client.publish("unique-week", {"week": w}, id=f"e1-{w}")
    second = client.publish("unique-week", {"week": w, "note": "again"}, id=f"e2-{w}")
    assert first == second and len(first) == 1
    (run,) = runs_of(client, unique_flows.evented, f'{{"week":"{w}"}}')
    assert run.trigger == "event"


def test_a_bad_key_is_refused_before_anything_is_stored(client: Any) -> None:
    flow = unique_flows.bad_key
    with pytest.raises(UniqueKeyError, match=r"'unit_unique_bad_key'.*must be a string.*int"):
        client.submit(flow, Week(week="boom"))
    with pytest.raises(UniqueKeyError, match=r"event 'unique-boom'|'unit_unique_bad_key'"):
        client.submit_many(flow, [Week(week="fine"), Week(week="boom")])
    assert client.list_runs(flow.name, limit=10) == []  # not even the fine one


def test_schedule_ticks_of_one_key_make_one_run(client: Any) -> None:
    flow, w = unique_flows.once, week()
    name = f"unique-{w}"
    try:
        wfray.schedule(flow, name=name, cron="* * * * * *", input={"week": w}, overlap="allow")
        client.register(flow)
    finally:
        forget(flow.name)

    def fired() -> int:
        (info,) = [i for i in client.list_schedules() if i.name == name]
        return int(info.last_fired.timestamp())

    start = fired()
    wait_until(lambda: fired() >= start + 3, 30, "three ticks handled")
    client.delete_schedule(name)
    (run,) = runs_of(client, flow, f"weekly:{w}")
    assert run.trigger == "schedule"
