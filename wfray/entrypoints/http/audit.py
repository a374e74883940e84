"""The API's side of the audit trail: who the caller of an operator action is, the tokens'
use counted by scope, and `GET /v1/audit` (admin).

Operator actions are recorded by the coordinator that carries them out (application/
audit_trail.py); the API only says who asks: the token's name and the client's address.
Token use (every request that presented a token or needed a scope, granted or denied) is
counted here per token, scope, route, method, outcome and address, and recorded as one
`token.use` entry per such group every `api_audit_flush_s`: an entry per request would
double the writes of the API's busiest routes. The number of groups held between two
flushes is bounded; past it, groups are merged under address "(more)".
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from wfray.application.client_commands import RecordAudit
from wfray.client.client import Client
from wfray.domain.audit import ACTIONS, AuditEntry, AuditQuery, Origin, audit_entry
from wfray.entrypoints.http.checks import as_utc

MAX_GROUPS = 10_000
ACTION_PATTERN = "^(?:" + "|".join(a.replace(".", r"\.") for a in ACTIONS) + ")$"
OVERFLOW_ADDRESS = "(more)"
log = logging.getLogger(__name__)


def http_origin(request: Request) -> Origin:
    """The caller of a route (set by its scope's dependency) and the client's address."""
    caller = getattr(request.state, "caller", None)
    address = request.client.host if request.client is not None else None
    return Origin(caller.name if caller is not None else "anonymous", "http", address)


@dataclass(frozen=True, slots=True)
class _Group:
    actor: str
    scope: str
    route: str
    method: str
    outcome: str
    address: str | None


class TokenUse:
    """Counts of token use between flushes, recorded through the client as audit entries."""

    def __init__(self, client: Client, every_s: float) -> None:
        self._client = client
        self._every_s = every_s
        self._lock = threading.Lock()
        self._counts: dict[_Group, list[Any]] = {}  # group -> [count, first, last]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def note(self, actor: str, scope: str, request: Request, outcome: str) -> None:
        route = getattr(request.scope.get("route"), "path", None) or "(unrouted)"
        address = request.client.host if request.client is not None else None
        group = _Group(actor, scope, route, request.method, outcome, address)
        now = datetime.now(UTC)
        with self._lock:
            if group not in self._counts and len(self._counts) >= MAX_GROUPS:
                group = _Group(actor, scope, route, request.method, outcome, OVERFLOW_ADDRESS)
            seen = self._counts.setdefault(group, [0, now, now])
            seen[0] += 1
            seen[2] = now
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="wfray-api-audit", daemon=True
                )
                self._thread.start()

    def flush(self, timeout_s: float = 30.0) -> int:
        """Record what was counted since the last flush; how many entries."""
        with self._lock:
            counts, self._counts = self._counts, {}
        entries = [_entry(group, *seen) for group, seen in counts.items()]
        if entries:
            self._client.call(RecordAudit(entries), timeout_s=timeout_s)
        return len(entries)

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):  # the coordinator may be gone by now
            self.flush(timeout_s=5.0)  # a replica shutting down waits no longer

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            try:
                self.flush()
            except Exception:  # counts of that interval are lost; the API keeps serving
                log.warning("could not record the API's token use", exc_info=True)


def _entry(group: _Group, count: int, first: datetime, last: datetime) -> AuditEntry:
    return audit_entry(
        last,
        Origin(group.actor, "http", group.address),
        "token.use",
        [group.route],
        {
            "scope": group.scope,
            "method": group.method,
            "count": count,
            "first": first.isoformat(),
            "last": last.isoformat(),
        },
        group.outcome,
    )


# -- GET /v1/audit -------------------------------------------------------------------------------


class AuditEntryOut(BaseModel):
    id: int
    at: datetime
    actor: str
    via: str
    address: str | None
    action: str
    targets: list[str]
    params: dict[str, Any]
    outcome: str

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditEntryOut:
        return cls(
            id=entry.id or 0,
            at=entry.at,
            actor=entry.actor,
            via=entry.via,
            address=entry.address,
            action=entry.action,
            targets=list(entry.targets),
            params=dict(entry.params),
            outcome=entry.outcome,
        )


class AuditPage(BaseModel):
    entries: list[AuditEntryOut]
    next_before_id: int | None  # pass as `before_id` for the next (older) page


def audit_routes(router: APIRouter, client: Client, needs: Any) -> None:
    @router.get("/audit", response_model=AuditPage, tags=["audit"], dependencies=[needs("admin")])
    def read_audit(
        actor: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
        action: Annotated[str | None, Query(pattern=ACTION_PATTERN)] = None,
        target: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
        since: datetime | None = None,
        until: datetime | None = None,
        before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> AuditPage:
        """Operator actions and token use, newest first, one page at a time."""
        query = AuditQuery(
            actor=actor,
            action=action,
            target=target,
            since=as_utc(since, "since"),
            until=as_utc(until, "until"),
            before_id=before_id,
            limit=limit,
        )
        entries = client.audit(query)
        last = entries[-1].id if len(entries) == limit else None
        return AuditPage(entries=[AuditEntryOut.of(e) for e in entries], next_before_id=last)
