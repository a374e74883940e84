"""The coordinator's timers: when a retry (or a compensation's retry) is due, and when a
run's deadline passes. One typed queue, earliest first."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from wfray.domain.records import WHOLE_STEP, TaskRecord


class TimerKind(Enum):
    RETRY = "retry"  # a task waiting (retrying or compensating) becomes due
    DEADLINE = "deadline"  # a run's deadline passes


@dataclass(frozen=True, slots=True)
class Timer:
    at: datetime
    kind: TimerKind
    run_id: str
    step: str = ""
    map_index: int = WHOLE_STEP


@dataclass(order=True, slots=True)
class _Entry:
    at: datetime
    order: int  # ties keep the order they were set in, and timers need no ordering
    timer: Timer = field(compare=False)


class TimerQueue:
    def __init__(self) -> None:
        self._heap: list[_Entry] = []
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def retry_at(self, at: datetime, task: TaskRecord) -> None:
        self._push(Timer(at, TimerKind.RETRY, task.run_id, task.step, task.map_index))

    def deadline_at(self, at: datetime, run_id: str) -> None:
        self._push(Timer(at, TimerKind.DEADLINE, run_id))

    def __iter__(self) -> Iterator[Timer]:
        """The timers set, in no particular order."""
        return (entry.timer for entry in self._heap)

    def next_at(self) -> datetime | None:
        return self._heap[0].at if self._heap else None

    def due(self, now: datetime) -> Iterator[Timer]:
        """Take the timers due by `now`, earliest first."""
        while self._heap and self._heap[0].at <= now:
            yield heapq.heappop(self._heap).timer

    def drop(self, run_ids: set[str]) -> None:
        """Forget every timer of these runs (they are loaded again from the store)."""
        self._heap = [entry for entry in self._heap if entry.timer.run_id not in run_ids]
        heapq.heapify(self._heap)

    def _push(self, timer: Timer) -> None:
        heapq.heappush(self._heap, _Entry(timer.at, next(self._order), timer))
