"""The outcome quarantine in SQL (see application/poison.py for what it is for)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa

from wfray.adapters.sqlalchemy.tables import outcome_quarantine as q
from wfray.application.quarantine import PENDING, AttemptKey, QuarantinedOutcome

_KEY = (q.c.run_id, q.c.step, q.c.map_index, q.c.attempt)


def note_undelivered(
    conn: sa.Connection, keys: Sequence[AttemptKey], epoch: int, now: datetime
) -> list[AttemptKey]:
    """Mark `keys` undelivered at the start of `epoch`; return those already marked at an
    earlier start. Marks of outcomes delivered since are dropped."""
    marked = {
        tuple(row[:4]): row.epoch
        for row in conn.execute(sa.select(*_KEY, q.c.epoch).where(q.c.status == PENDING))
    }
    wanted = set(keys)
    gone = [key for key in marked if key not in wanted]
    for key in gone:
        conn.execute(sa.delete(q).where(*(c == v for c, v in zip(_KEY, key, strict=True))))
    repeats = [key for key in keys if key in marked and marked[key] < epoch]
    fresh = [key for key in dict.fromkeys(keys) if key not in marked]
    if fresh:
        conn.execute(
            sa.insert(q),
            [
                {
                    "run_id": k[0],
                    "step": k[1],
                    "map_index": k[2],
                    "attempt": k[3],
                    "status": PENDING,
                    "epoch": epoch,
                    "updated_at": now,
                }
                for k in fresh
            ],
        )
    return repeats


def set_aside(
    conn: sa.Connection, items: Sequence[tuple[AttemptKey, str, str]], epoch: int, now: datetime
) -> None:
    """Record outcomes as (key, status, reason): quarantined or refused."""
    for key, status, reason in items:
        where = [c == v for c, v in zip(_KEY, key, strict=True)]
        values = {"status": status, "reason": reason, "epoch": epoch, "updated_at": now}
        if conn.execute(sa.update(q).where(*where).values(values)).rowcount == 0:
            names = ("run_id", "step", "map_index", "attempt")
            conn.execute(sa.insert(q).values({**dict(zip(names, key, strict=True)), **values}))


def listed(conn: sa.Connection) -> list[QuarantinedOutcome]:
    query = sa.select(q).where(q.c.status != PENDING).order_by(q.c.updated_at, *_KEY)
    return [
        QuarantinedOutcome(
            (row.run_id, row.step, row.map_index, row.attempt),
            row.status,
            row.reason or "",
            row.updated_at,
        )
        for row in conn.execute(query)
    ]
