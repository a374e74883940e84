"""SqlAuditLog: the AuditLog port on SQLite or PostgreSQL, in SQLAlchemy Core.

It shares the run store's engine when given one; a URL gets an engine of its own (the CLI's
retention and erasure). Each `record` is one short write transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from wfray.adapters.sqlalchemy.side_store import SideStore
from wfray.adapters.sqlalchemy.tables import audit_log
from wfray.domain.audit import AuditEntry, AuditQuery


class SqlAuditLog(SideStore):
    """The audit trail in a SQL database (on the run store's engine, or a URL: SideStore)."""

    def record(self, entries: Sequence[AuditEntry]) -> None:
        if not entries:
            return
        rows = [_row(entry) for entry in entries]
        with self._errors(), self._writer.begin() as conn:
            conn.execute(audit_log.insert(), rows)

    def read(self, query: AuditQuery) -> list[AuditEntry]:
        c = audit_log.c
        conditions: list[Any] = []
        if query.actor is not None:
            conditions.append(c.actor == query.actor)
        if query.action is not None:
            conditions.append(c.action == query.action)
        if query.target is not None:
            pattern = _escape_like(json.dumps(query.target))
            conditions.append(c.targets_json.like(f"%{pattern}%", escape="\\"))
        if query.since is not None:
            conditions.append(c.at >= query.since)
        if query.until is not None:
            conditions.append(c.at < query.until)
        if query.before_id is not None:
            conditions.append(c.id < query.before_id)
        select = sa.select(audit_log).where(*conditions).order_by(c.id.desc()).limit(query.limit)
        with self._errors(), self._engine.connect() as conn:
            found = [_entry(row._mapping) for row in conn.execute(select)]
        # the LIKE may match a target's text inside another target: keep exact matches only
        return [e for e in found if query.target is None or query.target in e.targets]

    def purge(self, before: datetime) -> int:
        with self._errors(), self._writer.begin() as conn:
            result = conn.execute(sa.delete(audit_log).where(audit_log.c.at < before))
        return int(result.rowcount)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _row(entry: AuditEntry) -> dict[str, Any]:
    return {
        "at": entry.at,
        "actor": entry.actor,
        "via": entry.via,
        "address": entry.address,
        "action": entry.action,
        "targets_json": json.dumps(list(entry.targets)),
        "params_json": json.dumps(dict(entry.params)),
        "outcome": entry.outcome,
    }


def _entry(row: Any) -> AuditEntry:
    return AuditEntry(
        id=int(row["id"]),
        at=row["at"],
        actor=row["actor"],
        via=row["via"],
        address=row["address"],
        action=row["action"],
        targets=tuple(json.loads(row["targets_json"])),
        params=json.loads(row["params_json"]),
        outcome=row["outcome"],
    )
