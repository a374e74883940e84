"""Kill the coordinator twenty times in twenty seconds: every run completes, no step runs twice.

The kills alternate between SIGKILL of the actor's process and `ray.kill(no_restart=False)`;
some land while the restarted coordinator is still recovering. Runs keep arriving between
kills, so hundreds of chains (cpu) and holds (io) are always in flight.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter, defaultdict
from typing import Any

import pytest
import ray

from tests.fixtures import flows
from tests.integration.conftest import start_wfray
from wfray.domain.records import AttemptRecord
from wfray.domain.status import AttemptStatus, RunStatus, TaskStatus

KILLS = 20
KILL_EVERY_S = 1.0
HOLD_S = 0.5
FIRST_WAVE = 120  # chains and holds each
WAVE = 8  # chains and holds each, submitted after every kill


@pytest.fixture(scope="module")
def wf(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Any:
    client = start_wfray(tmp_path_factory.mktemp("repeated-kills"))
    yield client
    client.shutdown()


def submit_wave(client: Any, chains: int, holds: int) -> list[str]:
    ids = [r.run_id for r in client.submit_many(flows.chain, [None] * chains)]
    ids += [r.run_id for r in client.submit_many(flows.hold, [{"seconds": HOLD_S}] * holds)]
    return ids


def kill(client: Any, number: int) -> None:
    if number % 2 == 0:
        os.kill(client.call("pid"), signal.SIGKILL)
    else:
        ray.kill(client.handle, no_restart=False)


def check_attempts(run_id: str, task_keys: set[tuple[str, int]], found: list[AttemptRecord]) -> None:
    """One success per task; every other attempt was lost before that success finished."""
    by_task: dict[tuple[str, int], list[AttemptRecord]] = defaultdict(list)
    for attempt in found:
        by_task[attempt.task_key].append(attempt)
    assert set(by_task) == task_keys, (run_id, sorted(by_task), sorted(task_keys))
    for key, attempts in by_task.items():
        numbers = [a.attempt for a in attempts]
        assert len(set(numbers)) == len(numbers), (run_id, key, numbers)
        succeeded = [a for a in attempts if a.status is AttemptStatus.SUCCEEDED]
        assert len(succeeded) == 1, (run_id, key, attempts)
        done = succeeded[0]
        assert done.finished_at is not None, (run_id, key, done)
        for other in attempts:
            if other is done:
                continue
            # a dispatch committed but not delivered before a kill is lost and retried
            assert other.status is AttemptStatus.LOST, (run_id, key, other)
            assert other.error_type == "wfray.AttemptLost", (run_id, key, other)
            assert other.attempt < done.attempt, (run_id, key, other, done)
            # nothing that completed ran again: no attempt began after the success ended
            began = other.started_at or other.queued_at
            assert began < done.finished_at, (run_id, key, other, done)


def test_twenty_coordinator_kills_lose_nothing_and_repeat_nothing(wf: Any) -> None:
    run_ids = submit_wave(wf, FIRST_WAVE, FIRST_WAVE)
    in_flight_at_kill: list[int] = []
    last_kill = time.monotonic() - KILL_EVERY_S
    for number in range(KILLS):
        if number % 4 != 3:
            # wait until the coordinator has recovered; every fourth kill lands mid-recovery
            stats = wf.stats()
            in_flight_at_kill.append(int(stats["running_attempts"]) + int(stats["queued"]))
        time.sleep(max(0.0, last_kill + KILL_EVERY_S - time.monotonic()))
        kill(wf, number)
        last_kill = time.monotonic()
        run_ids += submit_wave(wf, WAVE, WAVE)

    # the load lasted: there was work in flight at every kill that measured it
    assert len(in_flight_at_kill) == KILLS - KILLS // 4
    assert min(in_flight_at_kill) > 0, in_flight_at_kill

    views = wf.wait(run_ids, timeout_s=120)
    assert len(views) == len(run_ids)
    assert Counter(v.status for v in views) == Counter({RunStatus.COMPLETED: len(run_ids)})

    statuses: Counter[str] = Counter()
    for run_id in run_ids:
        detail = wf.detail(run_id)
        assert detail.run.status is RunStatus.COMPLETED, detail.run
        assert {t.status for t in detail.tasks} == {TaskStatus.COMPLETED}, detail.tasks
        check_attempts(run_id, {t.key for t in detail.tasks}, detail.attempts)
        statuses.update(a.status.value for a in detail.attempts)
    assert set(statuses) <= {"succeeded", "lost"}, statuses
    chains = (FIRST_WAVE + KILLS * WAVE) * 5
    holds = FIRST_WAVE + KILLS * WAVE
    assert statuses["succeeded"] == chains + holds, statuses
    print(f"attempts: {dict(statuses)}; work in flight at each kill: {in_flight_at_kill}")
