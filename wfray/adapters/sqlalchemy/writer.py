"""The write side of SqlRunStore: batches, outcome marks, workflows, counters, claims.

One batch is one transaction with one executemany per kind of change. Inserts are
`ON CONFLICT DO NOTHING` and updates are compare-and-set against `status IN (expected,
new)`, so a batch replayed after an ambiguous failure (the connection died around COMMIT)
changes nothing twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa

from wfray.adapters.sqlalchemy import claims, quarantine, rows
from wfray.adapters.sqlalchemy.engine import refusal_reason, refused_data
from wfray.adapters.sqlalchemy.fastpath import CompiledWrite
from wfray.adapters.sqlalchemy.probe import ProbeGroup, Write, probe
from wfray.adapters.sqlalchemy.store_base import SqlStoreBase, chunks
from wfray.adapters.sqlalchemy.tables import (
    attempts,
    counters,
    logs,
    runs,
    runtime_envs,
    tasks,
    workflows,
)
from wfray.application.batch import Batch, RejectedRow
from wfray.domain.claims import ClaimRecord
from wfray.domain.errors import StaleWriteError, StoreRejectedError
from wfray.domain.records import AttemptKey, AttemptRecord, RunRecord, TaskRecord
from wfray.domain.workflow import WorkflowSchema

# (record, expected status) pairs, as a batch holds them
Update = tuple[RunRecord | TaskRecord | AttemptRecord, str]


class SqlRunWriter(SqlStoreBase):
    """Writes through the write-flagged engine, each call one transaction."""

    def __init__(self, url: str, *, sqlite_synchronous: str = "FULL") -> None:
        super().__init__(url, sqlite_synchronous=sqlite_synchronous)
        self._sane_multi_rowcount = self._engine.dialect.supports_sane_multi_rowcount
        self._statements: dict[tuple[str, str], Any] = {}
        self._fast_writes: dict[tuple[str, str], CompiledWrite] = {}
        if self._engine.dialect.name == "sqlite":
            self._compile_fast_writes()

    def _compile_fast_writes(self) -> None:
        dialect = self._engine.dialect
        for table, pk, fields in (
            (runs, rows.RUN_PK, rows.RUN_FIELDS),
            (tasks, rows.TASK_PK, rows.TASK_FIELDS),
            (attempts, rows.ATTEMPT_PK, rows.ATTEMPT_FIELDS),
        ):
            self._fast_writes[("insert", table.name)] = CompiledWrite(
                self._insert_stmt(table, pk), table, dialect, fields
            )
            self._fast_writes[("update", table.name)] = CompiledWrite(
                self._update_stmt(table, pk), table, dialect, None
            )

    def commit(self, batch: Batch) -> None:
        if len(batch) == 0:
            return
        with self._errors(), self._writer.begin() as conn:
            try:
                self._apply(conn, batch)
            except sa.exc.IntegrityError as exc:
                detail = " ".join(str(exc.orig).split())
                raise StaleWriteError(
                    "batch does not fit the stored rows (a run or task it refers to is "
                    f"missing, or an idempotency key is taken): {detail}"
                ) from exc
            except Exception as exc:
                if not isinstance(exc, sa.exc.OperationalError) and refused_data(exc):
                    raise StoreRejectedError(refusal_reason(exc)) from exc
                raise

    def rejected_rows(self, batch: Batch) -> list[RejectedRow]:
        """The rows of `batch` the database refuses, found by bisection in savepoints of one
        transaction that is rolled back: nothing is written."""
        with self._errors(), self._writer.connect() as conn, conn.begin() as transaction:
            found = probe(conn, self._probe_groups(conn, batch))
            transaction.rollback()
        return found

    def _probe_groups(self, conn: sa.Connection, batch: Batch) -> list[ProbeGroup]:
        """The batch's rows by kind, in the order `_apply` writes them."""

        def updates(table: sa.Table, pk: tuple[str, ...], what: str) -> Write:
            return lambda items: self._update(conn, table, pk, what, items)

        def inserts(table: sa.Table, pk: tuple[str, ...]) -> Write:
            return lambda items: self._insert_new(conn, table, pk, items)

        def save(items: list[Any]) -> None:
            for schema in items:
                self._save_workflow(conn, schema)

        def lines(items: list[Any]) -> None:
            conn.execute(self._insert_stmt(logs, ("line_key",)), rows.log_params(items))

        indexed_logs = list(enumerate(batch.logs))
        return [
            ("run", updates(runs, rows.RUN_PK, "run"), list(batch.run_updates.values())),
            ("task", updates(tasks, rows.TASK_PK, "task"), list(batch.task_updates.values())),
            (
                "attempt",
                updates(attempts, rows.ATTEMPT_PK, "attempt"),
                list(batch.attempt_updates.values()),
            ),
            ("workflow", save, list(batch.workflows)),
            ("run", inserts(runs, rows.RUN_PK), list(batch.new_runs.values())),
            ("task", inserts(tasks, rows.TASK_PK), list(batch.new_tasks.values())),
            ("attempt", inserts(attempts, rows.ATTEMPT_PK), list(batch.new_attempts.values())),
            ("log", lambda items: lines([line for _, line in items]), indexed_logs),
        ]

    def _apply(self, conn: sa.Connection, batch: Batch) -> None:
        # Updates first, like the in-memory store: they are checked against the state
        # before this batch, and a failure leaves nothing of the batch behind (rollback).
        self._update(conn, runs, rows.RUN_PK, "run", batch.run_updates.values())
        self._update(conn, tasks, rows.TASK_PK, "task", batch.task_updates.values())
        self._update(conn, attempts, rows.ATTEMPT_PK, "attempt", batch.attempt_updates.values())
        for schema in batch.workflows:
            self._save_workflow(conn, schema)
        self._insert_new(conn, runs, rows.RUN_PK, batch.new_runs.values())
        self._insert_new(conn, tasks, rows.TASK_PK, batch.new_tasks.values())
        self._insert_new(conn, attempts, rows.ATTEMPT_PK, batch.new_attempts.values())
        if batch.logs:
            conn.execute(self._insert_stmt(logs, ("line_key",)), rows.log_params(batch.logs))

    def _insert_new(
        self,
        conn: sa.Connection,
        table: sa.Table,
        pk: tuple[str, ...],
        records: Iterable[RunRecord | TaskRecord | AttemptRecord],
    ) -> None:
        fast = self._fast_writes.get(("insert", table.name))
        if fast is not None:
            items = [(record, "") for record in records]
            if items:
                fast.run(conn, items)
            return
        values = [rows.params(record) for record in records]
        if values:
            conn.execute(self._insert_stmt(table, pk), values)

    def _update(
        self,
        conn: sa.Connection,
        table: sa.Table,
        pk: tuple[str, ...],
        what: str,
        updates: Iterable[tuple[RunRecord | TaskRecord | AttemptRecord, StrEnum]],
    ) -> None:
        items: list[Update] = [(record, str(expected)) for record, expected in updates]
        if not items:
            return
        fast = self._fast_writes.get(("update", table.name))
        if fast is not None:
            if fast.run(conn, items) == len(items):  # sqlite3 sums executemany's rowcounts
                return
        else:
            stmt = self._update_stmt(table, pk)
            fixed = rows.FIXED[table.name]
            values = [rows.update_params(r, pk, expected, fixed) for r, expected in items]
            result = conn.execute(stmt, values)
            sane = self._sane_multi_rowcount or len(values) == 1
            if sane and result.rowcount == len(values):
                return
        failed = self._first_failed(conn, table, pk, items)
        if failed is not None:
            raise StaleWriteError(f"{what} {failed}")

    def _insert_stmt(self, table: sa.Table, conflict: tuple[str, ...]) -> Any:
        # statements are built once: building and cache-keying them per commit costs
        key = ("insert", table.name)
        if key not in self._statements:
            stmt = self._insert(table).on_conflict_do_nothing(index_elements=list(conflict))
            self._statements[key] = stmt
        return self._statements[key]

    def _update_stmt(self, table: sa.Table, pk: tuple[str, ...]) -> Any:
        key = ("update", table.name)
        if key not in self._statements:
            written = {c.name for c in table.c} - set(pk) - set(rows.FIXED[table.name])
            self._statements[key] = (
                table.update()
                .where(
                    *(table.c[name] == sa.bindparam(f"k_{name}") for name in pk),
                    table.c.status.in_([sa.bindparam("k_expected"), sa.bindparam("k_new")]),
                )
                .values({c.name: sa.bindparam(c.name) for c in table.c if c.name in written})
            )
        return self._statements[key]

    def _first_failed(
        self, conn: sa.Connection, table: sa.Table, pk: tuple[str, ...], items: list[Update]
    ) -> str | None:
        """Name the first update whose row does not now hold its new status."""
        key_of = (lambda r: getattr(r, pk[0])) if len(pk) == 1 else _tuple_key(pk)
        found: dict[Any, str] = {}
        columns = [table.c[name] for name in pk]
        target: Any = columns[0] if len(pk) == 1 else sa.tuple_(*columns)
        for chunk in chunks([key_of(record) for record, _ in items]):
            query = sa.select(*columns, table.c.status).where(target.in_(chunk))
            for row in conn.execute(query):
                key = row[0] if len(pk) == 1 else tuple(row[: len(pk)])
                found[key] = row.status
        for record, expected in items:
            key = key_of(record)
            status = found.get(key)
            if status != record.status.value:
                return f"{key}: expected {expected}, found {status or 'nothing'}"
        return None

    def note_undelivered(
        self, keys: Sequence[AttemptKey], epoch: int, now: datetime
    ) -> dict[AttemptKey, int]:
        with self._errors(), self._writer.begin() as conn:
            return quarantine.note_undelivered(conn, keys, epoch, now)

    def note_applying(self, keys: Sequence[AttemptKey], epoch: int, now: datetime) -> None:
        with self._errors(), self._writer.begin() as conn:
            quarantine.note_applying(conn, keys, epoch, now)

    def quarantine(
        self, items: Sequence[tuple[AttemptKey, str, str]], epoch: int, now: datetime
    ) -> None:
        with self._errors(), self._writer.begin() as conn:
            quarantine.add(conn, items, epoch, now)

    def save_workflow(self, schema: WorkflowSchema) -> None:
        with self._errors(), self._writer.begin() as conn:
            self._save_workflow(conn, schema)

    def _save_workflow(self, conn: sa.Connection, schema: WorkflowSchema) -> None:
        """Insert if absent; `seq` records the save order that makes "latest" well defined.

        One row per statement: the seq subquery must see the row inserted before it.
        """
        next_seq = sa.select(sa.func.coalesce(sa.func.max(workflows.c.seq), 0) + 1)
        stmt = (
            self._insert(workflows)
            .values(
                name=schema.name,
                version=schema.version,
                schema_json=schema.model_dump_json(),
                created_at=datetime.now(UTC),
                seq=next_seq.scalar_subquery(),
            )
            .on_conflict_do_nothing(index_elements=["name", "version"])
        )
        conn.execute(stmt)

    def save_runtime_env(self, env_hash: str, env_json: str) -> None:
        """Store an environment under its content hash, once (a second save is a no-op)."""
        stmt = (
            self._insert(runtime_envs)
            .values(env_hash=env_hash, env_json=env_json, created_at=datetime.now(UTC))
            .on_conflict_do_nothing(index_elements=["env_hash"])
        )
        with self._errors(), self._writer.begin() as conn:
            conn.execute(stmt)

    def next_value(self, counter: str, count: int = 1) -> int:
        """Advance a named counter by `count`; returns the last value handed out.

        One atomic upsert: concurrent callers (several coordinators, two threads) never get
        the same value. A value handed out in a transaction that did not commit is skipped.
        """
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        upsert = (
            self._insert(counters)
            .values(name=counter, value=count)
            .on_conflict_do_update(
                index_elements=["name"], set_={"value": counters.c.value + count}
            )
            .returning(counters.c.value)
        )
        with self._errors(), self._writer.begin() as conn:
            return int(conn.execute(upsert).scalar_one())

    def put_claim(self, claim: ClaimRecord, expected_version: int | None) -> bool:
        # the insert of a key two writers race for: the primary key lets one through
        try:
            with self._errors(), self._writer.begin() as conn:
                return claims.put(conn, claim, expected_version)
        except sa.exc.IntegrityError:
            return False


def _tuple_key(pk: tuple[str, ...]) -> Any:
    def key(record: object) -> tuple[Any, ...]:
        return tuple(getattr(record, name) for name in pk)

    return key
