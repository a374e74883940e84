"""SqlScheduleStore: the ScheduleStore port on SQLite or PostgreSQL, in SQLAlchemy Core.

It shares the run store's engine when given one (one pool, one migration check); a URL gets
an engine of its own. Every write is one short transaction; `advance` is a compare-and-set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from wfray.adapters.sqlalchemy.rows import UtcDateTime
from wfray.adapters.sqlalchemy.side_store import SideStore
from wfray.adapters.sqlalchemy.tables import schedules
from wfray.domain.schedule import ScheduleRecord, ScheduleSpec, TicksHandled

SPEC_FIELDS = tuple(f.name for f in fields(ScheduleSpec))
STATE_FIELDS = ("last_fired", "last_run_id", "buffered_at", "created_at", "updated_at")


class SqlScheduleStore(SideStore):
    """Schedules in a SQL database (on the run store's engine, or a URL: SideStore)."""

    def __init__(self, engine_or_url: sa.Engine | str, *, create: bool = True) -> None:
        super().__init__(engine_or_url, create=create)
        self._insert: Callable[[sa.Table], Any] = (
            postgresql.insert if self._engine.dialect.name == "postgresql" else sqlite.insert
        )

    def upsert(self, spec: ScheduleSpec, now: datetime, *, keep_paused: bool = False) -> bool:
        values = spec.as_dict()
        insert = self._insert(schedules).values(
            **values, last_fired=now, created_at=now, updated_at=now
        )
        changes = {k: v for k, v in values.items() if k != "name"}
        if keep_paused:
            changes.pop("paused")
        update = (
            schedules.update()
            .where(schedules.c.name == spec.name)
            .values(**changes, updated_at=now)
        )
        with self._errors(), self._writer.begin() as conn:
            # RETURNING, not rowcount: on PostgreSQL rowcount comes back -1 for this insert
            insert = insert.on_conflict_do_nothing(index_elements=["name"])
            if conn.execute(insert.returning(schedules.c.name)).first() is not None:
                return True
            conn.execute(update)
            return False

    def get(self, name: str) -> ScheduleRecord | None:
        query = sa.select(schedules).where(schedules.c.name == name)
        with self._errors(), self._engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return None if row is None else _record(row)

    def load_all(self) -> list[ScheduleRecord]:
        query = sa.select(schedules).order_by(schedules.c.name)
        with self._errors(), self._engine.connect() as conn:
            return [_record(row) for row in conn.execute(query).mappings()]

    def delete(self, name: str) -> bool:
        with self._errors(), self._writer.begin() as conn:
            result = conn.execute(schedules.delete().where(schedules.c.name == name))
            return result.rowcount == 1

    def set_paused(self, name: str, paused: bool, now: datetime) -> bool:
        changes: dict[str, Any] = {"paused": paused, "updated_at": now}
        if not paused:
            at = sa.bindparam("resumed_at", now, type_=UtcDateTime())
            column = schedules.c.last_fired
            changes["last_fired"] = sa.case((column < at, at), else_=column)
            changes["buffered_at"] = None
        stmt = schedules.update().where(schedules.c.name == name).values(**changes)
        with self._errors(), self._writer.begin() as conn:
            return conn.execute(stmt).rowcount == 1

    def advance(self, handled: TicksHandled, now: datetime) -> bool:
        moved = schedules.c.last_fired == handled.expected_last_fired
        stmt = (
            schedules.update()
            .where(schedules.c.name == handled.name, moved)
            .values(
                last_fired=handled.last_fired,
                last_run_id=handled.last_run_id,
                buffered_at=handled.buffered_at,
                updated_at=now,
            )
        )
        with self._errors(), self._writer.begin() as conn:
            return conn.execute(stmt).rowcount == 1


def _record(row: sa.RowMapping) -> ScheduleRecord:
    spec = ScheduleSpec(**{name: row[name] for name in SPEC_FIELDS})
    return ScheduleRecord(spec=spec, **{name: row[name] for name in STATE_FIELDS})
