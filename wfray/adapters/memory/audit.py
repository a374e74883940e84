"""InMemoryAuditLog: the AuditLog contract in a list, for tests and the memory:// URL."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from datetime import datetime

from wfray.domain.audit import AuditEntry, AuditQuery


class InMemoryAuditLog:
    """Entries numbered as a database would number them, handed out as copies."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[AuditEntry] = []
        self._next_id = 1

    def record(self, entries: Sequence[AuditEntry]) -> None:
        with self._lock:
            for entry in entries:
                params = dict(entry.params)
                self._entries.append(dataclasses.replace(entry, id=self._next_id, params=params))
                self._next_id += 1

    def read(self, query: AuditQuery) -> list[AuditEntry]:
        with self._lock:
            found = [e for e in reversed(self._entries) if query.matches(e)]
        return [dataclasses.replace(e, params=dict(e.params)) for e in found[: query.limit]]

    def purge(self, before: datetime) -> int:
        with self._lock:
            kept = [e for e in self._entries if e.at >= before]
            gone = len(self._entries) - len(kept)
            self._entries = kept
        return gone
