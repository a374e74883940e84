"""Claims in SQL (domain/claims.py): one row per key, compare-and-set on its version."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from wfray.adapters.sqlalchemy.tables import claims as c
from wfray.domain.claims import ClaimRecord, Holder

CHUNK = 500  # run ids per IN (...) list


def get(conn: sa.Connection, key: str) -> ClaimRecord | None:
    row = conn.execute(sa.select(c).where(c.c.key == key)).first()
    return None if row is None else _record(row)


def put(conn: sa.Connection, claim: ClaimRecord, expected_version: int | None) -> bool:
    """Insert the first claim of a key, or update the one at `expected_version`."""
    values = _row(claim)
    if expected_version is None:
        # a key claimed by a racing writer in between makes this a conflict, not a retry
        exists = conn.execute(sa.select(c.c.version).where(c.c.key == claim.key)).first()
        if exists is not None:
            return False
        conn.execute(sa.insert(c).values(values))
        return True
    done = conn.execute(
        sa.update(c).where(c.c.key == claim.key, c.c.version == expected_version).values(values)
    )
    return done.rowcount == 1


def of_runs(
    conn: sa.Connection, run_ids: Sequence[str], limit: int | None = None
) -> list[ClaimRecord]:
    found: list[ClaimRecord] = []
    # byte order, like Python's sort, whatever the database's locale
    order = c.c.key.collate("C") if conn.dialect.name == "postgresql" else c.c.key
    for i in range(0, len(run_ids), CHUNK):
        chunk = list(run_ids[i : i + CHUNK])
        query = sa.select(c).where(c.c.run_id.in_(chunk)).order_by(order).limit(limit)
        found += [_record(r) for r in conn.execute(query)]
    return sorted(found, key=lambda claim: claim.key)[:limit]


def _row(claim: ClaimRecord) -> dict[str, Any]:
    h, prev = claim.holder, claim.taken_over_from
    return {
        "key": claim.key,
        "run_id": h.run_id,
        "step": h.step,
        "map_index": h.map_index,
        "attempt": h.attempt,
        "claimed_at": claim.claimed_at,
        "expires_at": claim.expires_at,
        "version": claim.version,
        "done_at": claim.done_at,
        "result_json": claim.result_json,
        "prev_run_id": None if prev is None else prev.run_id,
        "prev_step": None if prev is None else prev.step,
        "prev_map_index": None if prev is None else prev.map_index,
        "prev_attempt": None if prev is None else prev.attempt,
    }


def _record(row: sa.Row[Any]) -> ClaimRecord:
    prev = None
    if row.prev_run_id is not None:
        prev = Holder(row.prev_run_id, row.prev_step, row.prev_map_index, row.prev_attempt)
    return ClaimRecord(
        key=row.key,
        holder=Holder(row.run_id, row.step, row.map_index, row.attempt),
        claimed_at=row.claimed_at,
        expires_at=row.expires_at,
        version=row.version,
        done_at=row.done_at,
        result_json=row.result_json,
        taken_over_from=prev,
    )
