"""A retry timer lives in the store: it fires once, on time, across a coordinator kill."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from tests.fixtures import flows
from wfray.domain.status import AttemptStatus


def test_a_retry_due_after_a_coordinator_kill_fires_once_on_time(client: Any) -> None:
    run = client.enqueue(flows.fails_then_waits)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = client.detail(run.run_id).attempts
        if found and found[0].status is AttemptStatus.FAILED:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the first attempt never failed")
    time.sleep(3)
    os.kill(client.call("pid"), signal.SIGKILL)  # the timer is due in about 7 s
    assert run.result(timeout=60) == 2
    first, second = client.detail(run.run_id).attempts
    assert first.finished_at is not None and second.queued_at is not None
    gap = (second.queued_at - first.finished_at).total_seconds()
    assert 9.5 <= gap <= 16, f"the retry came {gap:.1f}s after the failure, not about 10 s"
    assert second.status is AttemptStatus.SUCCEEDED
