"""FakeClock: time that moves only when a test says so.

The coordinator, the scheduler and the steps' records read it through the `Clock` port. On
its own it is a frozen `datetime`; attached to a local wfray (`wfray.testing.local_wfray`),
`advance()` also lets the engine act on everything that fell due, in order, and returns
when the engine is idle again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

# Moves the clock to a target and lets the engine catch up (LocalWfray._drive).
Driver = Callable[[datetime], None]


class FakeClock:
    """A clock for tests: `now()` stays put until `advance()` or `advance_to()`.

    Args:
        start: the first `now()`, timezone-aware; default the current UTC time, to the
            second.
    """

    def __init__(self, start: datetime | None = None) -> None:
        if start is None:
            start = datetime.now(UTC).replace(microsecond=0)
        if start.tzinfo is None:
            raise ValueError(
                "FakeClock needs a timezone-aware start, e.g. datetime(..., tzinfo=UTC)"
            )
        self._now = start
        self._lock = threading.Lock()
        self._driver: Driver | None = None

    def now(self) -> datetime:
        return self._now

    def advance(self, by: float | timedelta) -> datetime:
        """Move time forward by `by` (seconds or a timedelta); returns the new `now()`.

        Attached to a local wfray, everything due on the way (retry delays, compensation
        retries, run deadlines, rate-limit refills, schedule ticks) happens at its own time,
        in order, and this returns once the engine has nothing left to do.
        """
        step = by if isinstance(by, timedelta) else timedelta(seconds=_seconds(by))
        if step < timedelta(0):
            raise ValueError(f"time only moves forward: advance({by!r}) is negative")
        return self.advance_to(self._now + step)

    def advance_to(self, when: datetime) -> datetime:
        """Move time forward to `when` (timezone-aware, not before `now()`)."""
        if when.tzinfo is None:
            raise ValueError(f"advance_to needs a timezone-aware datetime, got {when!r}")
        if when < self._now:
            raise ValueError(f"time only moves forward: {when} is before now ({self._now})")
        driver = self._driver
        if driver is None:
            self.set(when)
        else:
            driver(when)
        return self._now

    def set(self, when: datetime) -> None:
        """Move time to `when` without waking anything (the local wfray's own use)."""
        with self._lock:
            if when > self._now:
                self._now = when

    def attach(self, driver: Driver) -> None:
        """Let `driver` carry out advances (one local wfray per clock)."""
        with self._lock:
            if self._driver is not None:
                raise RuntimeError("this FakeClock already drives a local wfray; use one each")
            self._driver = driver

    def detach(self) -> None:
        with self._lock:
            self._driver = None

    def __repr__(self) -> str:
        return f"FakeClock({self._now.isoformat()})"


def _seconds(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"advance() takes seconds (a number) or a timedelta, not {value!r}")
    return float(value)
