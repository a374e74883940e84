"""Kill the coordinator, an executor, a worker: nothing is lost, nothing completed runs twice."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import ray

from tests.fixtures import flows
from tests.integration.conftest import start_wfray
from wfray.adapters.ray.host import executor_name
from wfray.application.client_commands import Pid
from wfray.domain.status import AttemptStatus, RunStatus


@pytest.fixture(scope="module")
def wide(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Any:
    wf = start_wfray(tmp_path_factory.mktemp("kills"), io_concurrency=256, io_window=512)
    yield wf
    wf.shutdown()


def coordinator_pid(client: Any) -> int:
    pid: int = client.call(Pid())
    return pid


def wait_until_running(client: Any, count: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if client.stats()["running_attempts"] >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"fewer than {count} attempts running after {timeout_s}s")


def assert_each_step_succeeded_once(client: Any, run_ids: list[str]) -> Counter[str]:
    statuses: Counter[str] = Counter()
    for run_id in run_ids:
        detail = client.detail(run_id)
        assert detail.run.status is RunStatus.COMPLETED, detail.run
        per_task: Counter[tuple[str, int]] = Counter()
        for attempt in detail.attempts:
            statuses[attempt.status.value] += 1
            if attempt.status is AttemptStatus.SUCCEEDED:
                per_task[(attempt.step, attempt.map_index)] += 1
        assert set(per_task.values()) == {1}, (run_id, per_task)
    return statuses


@pytest.mark.parametrize("how", ["sigkill", "ray_kill"])
def test_coordinator_killed_with_hundreds_of_steps_in_flight(wide: Any, how: str) -> None:
    runs = wide.submit_many(flows.hold, [{"seconds": 2.0}] * 200)
    wait_until_running(wide, 150)
    if how == "sigkill":
        os.kill(coordinator_pid(wide), signal.SIGKILL)
    else:
        ray.kill(wide.handle, no_restart=False)
    views = wide.wait([r.run_id for r in runs], timeout=120)
    assert {v.status for v in views} == {RunStatus.COMPLETED}
    statuses = assert_each_step_succeeded_once(wide, [r.run_id for r in runs])
    # the running steps kept running in the executor: none was lost or run twice
    assert statuses == Counter({"succeeded": 200})


def test_coordinator_killed_while_workers_report_outcomes_themselves(client: Any) -> None:
    """Under light load workers report to the coordinator directly; reports sent to a dead
    or restarting coordinator are lost, and the executor's copies complete the runs."""
    runs = client.submit_many(flows.cpu_hold, [{"seconds": 2.0}] * 4)
    wait_until_running(client, 4)  # all dispatched (two run, two wait for a CPU)
    time.sleep(0.5)
    os.kill(coordinator_pid(client), signal.SIGKILL)
    views = client.wait([r.run_id for r in runs], timeout=120)
    assert {v.status for v in views} == {RunStatus.COMPLETED}
    statuses = assert_each_step_succeeded_once(client, [r.run_id for r in runs])
    assert statuses == Counter({"succeeded": 4})  # none lost, none run twice


def test_executor_killed_mid_step_loses_the_attempt_and_retries_it(client: Any) -> None:
    run = client.enqueue(flows.cpu_hold, seconds=3.0)
    wait_until_running(client, 1)
    time.sleep(1.0)
    executor = ray.get_actor(executor_name("cpu"), namespace=client.settings.namespace)
    os.kill(ray.get(executor.pid.remote(), timeout=30), signal.SIGKILL)
    run.result(timeout=120)
    attempts = run.detail().attempts
    assert [a.status for a in attempts] == [AttemptStatus.LOST, AttemptStatus.SUCCEEDED]
    assert attempts[0].error_type == "wfray.AttemptLost"


def test_worker_process_killed_mid_step_is_retried(client: Any, tmp_path: Path) -> None:
    run = client.enqueue(flows.crash_once, marker=str(tmp_path / "marker"))
    assert run.result(timeout=120) == "survived"
    attempts = run.detail().attempts
    assert [a.status for a in attempts] == [AttemptStatus.LOST, AttemptStatus.SUCCEEDED]
    assert attempts[0].error_type == "ray.WorkerCrashedError"
