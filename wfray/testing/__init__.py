"""Test your workflows in milliseconds, without Ray: `wfray.testing`.

    from datetime import timedelta
    from wfray.testing import local_wfray

    def test_charge_is_retried_an_hour_later() -> None:
        with local_wfray() as wf:
            run = wf.submit(orders, Order(id=7))
            wf.clock.advance(timedelta(hours=1))   # the retry fires now, no sleeping
            assert run.result() == "charged"
            wf.assert_attempts(run, "charge", ["failed", "succeeded"])

`local_wfray()` runs the real coordinator and engine over the in-memory store with inline
executors, in this process, with the client's calls (`submit`, `result`, `wait`, `cancel`,
`detail`, `logs`, schedules...). Its `FakeClock` moves only when told: `advance()` lets
every retry delay, compensation retry, run deadline and schedule tick that falls due happen
at its own time, and returns once the engine is idle. Importing this package imports no Ray.
"""

from __future__ import annotations

from wfray.testing.asserts import (
    assert_attempts,
    assert_logged,
    assert_status,
    attempts_of,
    step_logs,
)
from wfray.testing.clock import FakeClock
from wfray.testing.handle import LocalRunHandle
from wfray.testing.local import LocalWfray, local_wfray

__all__ = [
    "FakeClock",
    "LocalRunHandle",
    "LocalWfray",
    "assert_attempts",
    "assert_logged",
    "assert_status",
    "attempts_of",
    "local_wfray",
    "step_logs",
]
