"""The reads of a wide fan-out's items: a page of results, a page of completed items, or
all of them collected into one list value (a fan-in)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from wfray.adapters.sqlalchemy import rows
from wfray.adapters.sqlalchemy.store_base import SqlStoreBase
from wfray.adapters.sqlalchemy.tables import tasks
from wfray.domain.records import TaskRecord
from wfray.domain.results import collect
from wfray.domain.status import TaskStatus

COMPLETED = TaskStatus.COMPLETED.value


def _completed_page(
    run_id: str, step: str, start: int, limit: int, *columns: sa.ColumnElement[Any] | sa.Table
) -> sa.Select[Any]:
    """Completed items of a step from index `start` on: a range of the primary key
    (run_id, step, map_index), so a page reads its rows only."""
    return (
        sa.select(*columns)
        .where(
            tasks.c.run_id == run_id,
            tasks.c.step == step,
            tasks.c.map_index >= max(0, start),
            tasks.c.status == COMPLETED,
        )
        .order_by(tasks.c.map_index)
        .limit(max(0, limit))
    )


class SqlFanOutReader(SqlStoreBase):
    def item_results(
        self, run_id: str, step: str, start: int, limit: int
    ) -> list[tuple[int, str | None, str | None]]:
        columns = (tasks.c.map_index, tasks.c.result_json, tasks.c.result_ref)
        query = _completed_page(run_id, step, start, limit, *columns)
        with self._errors(), self._engine.connect() as conn:
            return [(row[0], row[1], row[2]) for row in conn.execute(query)]

    def completed_items(self, run_id: str, step: str, start: int, limit: int) -> list[TaskRecord]:
        query = _completed_page(run_id, step, start, limit, tasks)
        with self._errors(), self._engine.connect() as conn:
            return rows.to_tasks(conn.execute(query))

    def collect_items(
        self, run_id: str, step: str, limit: int | None = None
    ) -> tuple[str | None, str | None]:
        mine = sa.and_(tasks.c.run_id == run_id, tasks.c.step == step, tasks.c.map_index >= 0)
        any_blob = sa.select(tasks.c.map_index).where(mine, tasks.c.result_ref.is_not(None))
        query = sa.select(tasks.c.result_json, tasks.c.result_ref).where(mine)
        with self._errors(), self._engine.connect() as conn:
            blob = conn.execute(any_blob.limit(1)).first() is not None
            found = conn.execute(query.order_by(tasks.c.map_index))
            return collect(((row[0], row[1]) for row in found), blob, limit)
