"""A retry timer lives in the store: it fires once, on time, across a coordinator kill."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from tests.fixtures import flows
from wfray.application.client_commands import Pid
from wfray.domain.status import AttemptStatus


def test_a_15s_retry_survives_a_coordinator_kill_and_fires_once_on_time(client: Any) -> None:
    run = client.enqueue(flows.fails_then_waits)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = client.detail(run.run_id).attempts
        if len(found) == 2 and found[1].status is AttemptStatus.FAILED:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the second attempt never failed")
    # the failed attempt and the retry's timer commit together: the timer is in the store
    os.kill(client.call(Pid()), signal.SIGKILL)
    assert run.result(timeout=90) == 3
    attempts = client.detail(run.run_id).attempts
    assert [a.status for a in attempts] == [
        AttemptStatus.FAILED,
        AttemptStatus.FAILED,
        AttemptStatus.SUCCEEDED,
    ], "one retry after the kill, not two"
    second, third = attempts[1], attempts[2]
    assert second.finished_at is not None and third.queued_at is not None
    gap = (third.queued_at - second.finished_at).total_seconds()
    # never early; late only by the new coordinator's start (seconds, more on a busy machine)
    assert 14.5 <= gap <= 35, f"the retry came {gap:.1f}s after the failure, not about 15 s"
