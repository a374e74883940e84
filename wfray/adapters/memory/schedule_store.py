"""InMemoryScheduleStore: the ScheduleStore contract in a dict, for tests and the memory:// URL."""

from __future__ import annotations

import copy
import threading
from datetime import datetime

from wfray.domain.schedule import ScheduleRecord, ScheduleSpec, TicksHandled


class InMemoryScheduleStore:
    """Keeps copies, never the caller's objects, so it behaves like a database."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._schedules: dict[str, ScheduleRecord] = {}

    def upsert(self, spec: ScheduleSpec, now: datetime, *, keep_paused: bool = False) -> bool:
        with self._lock:
            stored = self._schedules.get(spec.name)
            if stored is None:
                self._schedules[spec.name] = ScheduleRecord(
                    spec=spec, last_fired=now, created_at=now, updated_at=now
                )
                return True
            if keep_paused:
                spec = spec.with_(paused=stored.spec.paused)
            stored.spec = spec
            stored.updated_at = now
            return False

    def get(self, name: str) -> ScheduleRecord | None:
        with self._lock:
            stored = self._schedules.get(name)
            return copy.copy(stored) if stored is not None else None

    def load_all(self) -> list[ScheduleRecord]:
        with self._lock:
            return [copy.copy(self._schedules[name]) for name in sorted(self._schedules)]

    def delete(self, name: str) -> bool:
        with self._lock:
            return self._schedules.pop(name, None) is not None

    def set_paused(self, name: str, paused: bool, now: datetime) -> bool:
        with self._lock:
            stored = self._schedules.get(name)
            if stored is None:
                return False
            stored.spec = stored.spec.with_(paused=paused)
            stored.updated_at = now
            if not paused:
                stored.last_fired = max(stored.last_fired, now)
                stored.buffered_at = None
            return True

    def advance(self, handled: TicksHandled, now: datetime) -> bool:
        with self._lock:
            stored = self._schedules.get(handled.name)
            if stored is None or stored.last_fired != handled.expected_last_fired:
                return False
            stored.last_fired = handled.last_fired
            stored.last_run_id = handled.last_run_id
            stored.buffered_at = handled.buffered_at
            stored.updated_at = now
            return True

    def close(self) -> None:
        pass
