"""Cancelling runs on a real Ray instance: running attempts stop, finished runs are left be."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.fixtures import flows
from wfray.domain.status import AttemptStatus, RunStatus


def wait_for_attempt(client: Any, run_id: str, status: AttemptStatus, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        found = client.detail(run_id).attempts
        if found and found[-1].status is status:
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"attempt of {run_id} not {status.value} after {timeout}s")


@pytest.mark.parametrize(
    "step", [flows.cpu_hold, flows.async_hold], ids=["cpu-by-force", "io-coroutine"]
)
def test_a_long_running_step_is_cancelled_within_seconds(client: Any, step: Any) -> None:
    run = client.enqueue(step, seconds=60)
    wait_for_attempt(client, run.run_id, AttemptStatus.RUNNING, 30)
    time.sleep(0.5)  # let it really start in the worker
    answer = run.cancel("test cancels it")
    assert answer.applied
    assert run.status() is RunStatus.CANCELLED
    took = wait_for_attempt(client, run.run_id, AttemptStatus.CANCELLED, 20)
    assert took < 5, f"the attempt took {took:.1f}s to stop"
    detail = run.detail()
    assert [t.status.value for t in detail.tasks] == ["cancelled"]
    assert detail.run.error == "test cancels it"


def test_cancelling_a_finished_run_says_so(client: Any) -> None:
    run = client.enqueue(flows.noop)
    run.result(timeout=60)
    answer = run.cancel()
    assert not answer.applied
    assert answer.status == "completed"
    assert run.status() is RunStatus.COMPLETED
