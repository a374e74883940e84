"""The desk the command handlers serve (the Ray host is one) and what they act on there.

They name the coordinator's own classes, so they live beside the coordinator rather than in
the shared ports (application/ports.py).
"""

from __future__ import annotations

from typing import Protocol

from wfray.application.ports import AuditLog
from wfray.application.queries import Queries
from wfray.coordinator.coordinator import Coordinator
from wfray.coordinator.scheduler import Scheduler


class Started(Protocol):
    """What the handlers act on, once wfray has started (bootstrap.System is one)."""

    @property
    def coordinator(self) -> Coordinator: ...

    @property
    def queries(self) -> Queries: ...

    @property
    def scheduler(self) -> Scheduler: ...

    @property
    def audit(self) -> AuditLog: ...


class Desk(Protocol):
    """Where the commands arrive (the coordinator host): it starts wfray and waits for it."""

    async def ready(self, wait_s: float = ...) -> Started: ...
