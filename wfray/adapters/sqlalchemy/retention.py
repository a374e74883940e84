"""The SQL store's side of retention: choosing, reading and deleting finished runs.

Each `transaction` is one short write transaction (`BEGIN IMMEDIATE` on SQLite; on
PostgreSQL the chosen runs are locked `FOR UPDATE`), so the coordinator is never blocked
for long and a resumed run cannot be deleted under it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

import pyarrow as pa
import sqlalchemy as sa

from wfray.adapters.sqlalchemy.arrow import SCHEMAS, OpenedStore, stream_batches, table_named
from wfray.adapters.sqlalchemy.engine import unavailable_as_store_error
from wfray.adapters.sqlalchemy.tables import (
    attempts,
    claims,
    logs,
    outcome_quarantine,
    runs,
    runtime_envs,
    schedules,
    subscriptions,
    tasks,
)
from wfray.domain.status import RUN_FINISHED

FINISHED = sorted(status.value for status in RUN_FINISHED)
# Children before parents: attempts reference tasks, tasks reference runs. A deleted run's
# claims (done or died: the run finished) go with it; a claim protects its key only as long
# as its holder's run is kept, and the claims of other runs are never touched. Its
# quarantined outcomes (diagnostics, not archived; no foreign key) go with it too.
DELETE_ORDER = (logs, attempts, tasks, claims, runs, outcome_quarantine)


class SqlRetentionBatch:
    """Retention's reads and deletes on one open write transaction."""

    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn

    def eligible_runs(self, cutoff: datetime, limit: int) -> list[str]:
        related = runs.alias("related")
        active_relative = sa.exists().where(
            sa.or_(
                related.c.parent_run_id == runs.c.run_id,
                related.c.run_id == runs.c.parent_run_id,
            ),
            related.c.status.not_in(FINISHED),
        )
        query = (
            sa.select(runs.c.run_id)
            .where(
                runs.c.status.in_(FINISHED),
                runs.c.finished_at < cutoff,
                ~active_relative,
            )
            .order_by(runs.c.finished_at, runs.c.run_id)
            .limit(limit)
        )
        if self._conn.dialect.name == "postgresql":
            # Lock the chosen runs so the coordinator cannot resume one before it is deleted.
            query = query.with_for_update(of=runs, skip_locked=True)
        return list(self._conn.execute(query).scalars())

    def rows(self, table: str, run_ids: Sequence[str]) -> pa.RecordBatchReader:
        chosen = table_named(table)
        batches = stream_batches(self._conn, chosen, [chosen.c.run_id.in_(list(run_ids))])
        return pa.RecordBatchReader.from_batches(SCHEMAS[table], batches)

    def delete_runs(self, run_ids: Sequence[str]) -> dict[str, int]:
        deleted: dict[str, int] = {}
        for table in DELETE_ORDER:
            result = self._conn.execute(sa.delete(table).where(table.c.run_id.in_(list(run_ids))))
            deleted[table.name] = result.rowcount
        return deleted


class SqlRetentionStore(OpenedStore):
    """Retention over a SQLite or PostgreSQL store whose schema is current."""

    @contextmanager
    def transaction(self) -> Iterator[SqlRetentionBatch]:
        with unavailable_as_store_error(self._engine.url), self._writer.begin() as conn:
            yield SqlRetentionBatch(conn)

    def envs_in_use(self, recorded_since: datetime) -> list[str]:
        referred = sa.union(
            sa.select(runs.c.env_hash).where(runs.c.env_hash.is_not(None)),
            sa.select(schedules.c.env_hash).where(schedules.c.env_hash.is_not(None)),
            sa.select(subscriptions.c.env_hash).where(subscriptions.c.env_hash.is_not(None)),
        ).subquery()
        query = sa.select(runtime_envs.c.env_json).where(
            sa.or_(
                runtime_envs.c.env_hash.in_(sa.select(referred.c.env_hash)),
                runtime_envs.c.created_at >= recorded_since,
            )
        )
        with unavailable_as_store_error(self._engine.url), self._engine.connect() as conn:
            return list(conn.execute(query).scalars())
