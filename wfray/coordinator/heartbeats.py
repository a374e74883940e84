"""Heartbeats: a long step reports progress; a step that falls silent is declared lost.

A step with `heartbeat_timeout_s` must call `ctx.heartbeat()` at least that often. The
watch starts when the attempt is dispatched, with `START_GRACE_S` more for its worker to
begin (a cold worker on a busy node takes seconds; that is not the step falling silent);
the worker beats once as the step begins, and from that beat on the step has its own
timeout (after a coordinator restart: a full window). A silent attempt is recorded as
lost, its Ray task cancelled, and the task retried under its policy. The last progress is
stored on the task.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from datetime import datetime, timedelta

from wfray.application.batch import Batch
from wfray.application.messages import Outcome
from wfray.coordinator.state import CoordinatorState
from wfray.domain.records import AttemptKey, TaskRecord
from wfray.domain.status import AttemptStatus, TaskStatus

HEARTBEAT_LOST = "wfray.HeartbeatTimeout"
START_GRACE_S = 30.0


class HeartbeatWatch:
    def __init__(self, state: CoordinatorState) -> None:
        self.state = state
        self._due: list[tuple[datetime, AttemptKey, float]] = []
        self._beats: dict[AttemptKey, tuple[datetime, str | None]] = {}
        self._starting: dict[AttemptKey, float] = {}  # watched with the grace: not begun yet

    def watch(self, key: AttemptKey, timeout_s: float, now: datetime, grace_s: float = 0) -> None:
        """Expect a beat within `timeout_s` (plus `grace_s` until the first one arrives)."""
        if grace_s:
            self._starting[key] = timeout_s
        due = now + timedelta(seconds=timeout_s + grace_s)
        heapq.heappush(self._due, (due, key, timeout_s))

    def next_due(self) -> datetime | None:
        return self._due[0][0] if self._due else None

    def beat(self, key: AttemptKey, progress_json: str | None, now: datetime) -> None:
        """A heartbeat arrived; it is applied (and stored) in the next loop turn."""
        self._beats[key] = (now, progress_json)

    def apply(self, batch: Batch) -> None:
        """Store the heartbeats that arrived (before the outcomes of the same turn)."""
        beats, self._beats = self._beats, {}
        for key, (at, progress) in beats.items():
            task = self._running_task(key)
            if task is None:
                continue  # it ended meanwhile: a late beat changes nothing
            task.heartbeat_at = at
            if progress is not None:
                task.progress_json = progress
            batch.update_task(task, TaskStatus.RUNNING)
            timeout_s = self._starting.pop(key, None)
            if timeout_s is not None:  # it began: from now on its own timeout, no grace
                self.watch(key, timeout_s, at)

    def expire(self, now: datetime) -> tuple[list[Outcome], dict[str, list[AttemptKey]]]:
        """Outcomes for the attempts gone silent, and the attempts to stop, by executor."""
        lost: list[Outcome] = []
        stop: dict[str, list[AttemptKey]] = defaultdict(list)
        judged: set[AttemptKey] = set()  # an attempt may be watched twice (grace, then begun)
        while self._due and self._due[0][0] <= now:
            _, key, timeout_s = heapq.heappop(self._due)
            task = self._running_task(key)
            if task is None or key in judged:
                self._starting.pop(key, None)
                continue
            judged.add(key)
            last = task.heartbeat_at
            if last is not None and last + timedelta(seconds=timeout_s) > now:
                self.watch(key, timeout_s, last)  # it beat in time: look again later
                continue
            attempt = self.state.attempts[key]
            stop[attempt.executor].append(key)
            lost.append(
                Outcome.ended(
                    key,
                    AttemptStatus.LOST,
                    HEARTBEAT_LOST,
                    f"no heartbeat for {timeout_s:g}s (last: "
                    f"{'never' if last is None else last.isoformat()}); retried as lost",
                    attempt.started_at,
                )
            )
        return lost, stop

    def _running_task(self, key: AttemptKey) -> TaskRecord | None:
        if key not in self.state.attempts:
            return None
        task = self.state.task_of(key)
        if task is None or task.status is not TaskStatus.RUNNING or task.attempts != key[3]:
            return None
        return task
