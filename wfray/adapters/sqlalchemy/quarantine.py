"""The outcome quarantine in SQL (see coordinator/poison.py for what it is for)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa

from wfray.adapters.sqlalchemy.tables import outcome_quarantine as q
from wfray.application.quarantine import APPLYING, PENDING, QuarantinedOutcome
from wfray.domain.records import AttemptKey

_KEY = (q.c.run_id, q.c.step, q.c.map_index, q.c.attempt)


def note_undelivered(
    conn: sa.Connection, keys: Sequence[AttemptKey], epoch: int, now: datetime
) -> dict[AttemptKey, int]:
    """Mark `keys` undelivered at the start of `epoch`; return, for those marked before, how
    many earlier starts went down while applying them. Marks of outcomes delivered since are
    dropped."""
    marked = {
        tuple(row[:4]): (row.status, row.epoch, row.deaths)
        for row in conn.execute(
            sa.select(*_KEY, q.c.status, q.c.epoch, q.c.deaths).where(
                q.c.status.in_((PENDING, APPLYING))
            )
        )
    }
    wanted = set(keys)
    for key in [key for key in marked if key not in wanted]:
        conn.execute(sa.delete(q).where(*_match(key)))
    deaths: dict[AttemptKey, int] = {}
    for key in dict.fromkeys(keys):
        if key not in marked:
            continue
        status, at, count = marked[key]
        if status == APPLYING and at < epoch:
            count += 1
            conn.execute(
                sa.update(q)
                .where(*_match(key))
                .values(status=PENDING, epoch=epoch, deaths=count, updated_at=now)
            )
        deaths[key] = count
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
                    "deaths": 0,
                    "updated_at": now,
                }
                for k in fresh
            ],
        )
    return deaths


def note_applying(
    conn: sa.Connection, keys: Sequence[AttemptKey], epoch: int, now: datetime
) -> None:
    """The coordinator of `epoch` begins applying these outcomes noted at its start."""
    for key in keys:
        conn.execute(
            sa.update(q)
            .where(*_match(key), q.c.status == PENDING)
            .values(status=APPLYING, epoch=epoch, updated_at=now)
        )


def _match(key: AttemptKey) -> list[sa.ColumnElement[bool]]:
    return [c == v for c, v in zip(_KEY, key, strict=True)]


def add(
    conn: sa.Connection, items: Sequence[tuple[AttemptKey, str, str]], epoch: int, now: datetime
) -> None:
    """Record outcomes as (key, status, reason): quarantined or refused."""
    for key, status, reason in items:
        where = _match(key)
        values = {"status": status, "reason": reason, "epoch": epoch, "updated_at": now}
        if conn.execute(sa.update(q).where(*where).values(values)).rowcount == 0:
            names = ("run_id", "step", "map_index", "attempt")
            conn.execute(sa.insert(q).values({**dict(zip(names, key, strict=True)), **values}))


def listed(conn: sa.Connection) -> list[QuarantinedOutcome]:
    query = (
        sa.select(q).where(q.c.status.not_in((PENDING, APPLYING))).order_by(q.c.updated_at, *_KEY)
    )
    return [
        QuarantinedOutcome(
            (row.run_id, row.step, row.map_index, row.attempt),
            row.status,
            row.reason or "",
            row.updated_at,
        )
        for row in conn.execute(query)
    ]
