"""Finding the rows of a batch that the database refuses, by bisection in savepoints.

A batch whose commit failed for its data (not an outage) is written again, group by group,
inside one transaction: each part in a savepoint; a part that fails is rolled back to its
savepoint and halved until the refused rows stand alone. The caller rolls the transaction
back: the probe only names the rows, it writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from wfray.adapters.sqlalchemy.engine import refusal_reason, refused_data
from wfray.application.batch import RejectedRow
from wfray.domain.errors import StaleWriteError
from wfray.domain.workflow import WorkflowSchema

Write = Callable[[list[Any]], None]
ProbeGroup = tuple[str, Write, list[Any]]  # what, how to write a part, the rows


def probe(conn: sa.Connection, groups: list[ProbeGroup]) -> list[RejectedRow]:
    found: list[RejectedRow] = []
    for what, write, items in groups:
        _bisect(conn, what, write, items, found)
    return found


def _bisect(
    conn: sa.Connection, what: str, write: Write, items: list[Any], found: list[RejectedRow]
) -> None:
    if not items:
        return
    savepoint = conn.begin_nested()
    try:
        write(items)
    except Exception as exc:
        if not (isinstance(exc, StaleWriteError) or refused_data(exc)):
            raise  # an outage: the caller waits it out and tries again
        savepoint.rollback()
        if len(items) > 1:
            middle = len(items) // 2
            _bisect(conn, what, write, items[:middle], found)
            _bisect(conn, what, write, items[middle:], found)
        else:
            found.append(_rejected(what, items[0], exc))
        return
    savepoint.commit()


def _rejected(what: str, item: Any, exc: Exception) -> RejectedRow:
    reason = exc.message if isinstance(exc, StaleWriteError) else refusal_reason(exc)
    key: tuple[Any, ...]
    if what == "log":
        index, line = item
        key = (line.run_id, line.step, line.map_index, line.attempt, index)
        return RejectedRow(line.run_id, what, key, reason)
    if what == "workflow":
        assert isinstance(item, WorkflowSchema)
        return RejectedRow("", what, (item.name, item.version), reason)
    record = item[0] if isinstance(item, tuple) else item  # an update is (record, expected)
    key = (record.run_id,)
    if what in ("task", "attempt"):
        key = (record.run_id, record.step, record.map_index)
    if what == "attempt":
        key = (*key, record.attempt)
    return RejectedRow(record.run_id, what, key, reason)
