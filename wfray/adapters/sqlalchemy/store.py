"""SqlRunStore: the RunStore port on SQLite or PostgreSQL, in SQLAlchemy Core.

One batch is one transaction with one executemany per kind of change. Inserts are
`ON CONFLICT DO NOTHING` and updates are compare-and-set against `status IN (expected,
new)`, so a batch replayed after an ambiguous failure (the connection died around COMMIT)
changes nothing twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from wfray.adapters.sqlalchemy import claims, migrate, quarantine, rows, unique
from wfray.adapters.sqlalchemy.engine import (
    WRITE,
    create_engine,
    refusal_reason,
    refused_data,
    unavailable_as_store_error,
)
from wfray.adapters.sqlalchemy.fastpath import CompiledWrite
from wfray.adapters.sqlalchemy.probe import ProbeGroup, Write, probe
from wfray.adapters.sqlalchemy.tables import attempts, counters, logs, runs, tasks, workflows
from wfray.application.batch import Batch, RejectedRow
from wfray.application.quarantine import AttemptKey, QuarantinedOutcome
from wfray.domain.claims import ClaimRecord
from wfray.domain.errors import StaleWriteError, StoreRejectedError
from wfray.domain.records import AttemptRecord, LogRecord, RunRecord, TaskRecord
from wfray.domain.status import ACTIVE_RUNS, AttemptStatus, RunStatus, TaskStatus
from wfray.domain.workflow import WorkflowSchema

CHUNK = 500  # keys per IN (...) list: far below SQLite's host-parameter limit
QUEUED = TaskStatus.QUEUED.value

# (record, expected status) pairs, as a batch holds them
Update = tuple[RunRecord | TaskRecord | AttemptRecord, str]


class SqlRunStore:
    """The truth about runs, in a SQL database.

    Args:
        url: `sqlite:////abs/path/wfray.db` or `postgresql+psycopg://user:pw@host/db`.
        create: migrate the schema to the current revision (under a lock) on start;
            otherwise only check that it is current (SchemaOutdatedError if not).
        sqlite_synchronous: SQLite's `synchronous` pragma; FULL fsyncs every commit.
    """

    def __init__(self, url: str, *, create: bool = True, sqlite_synchronous: str = "FULL") -> None:
        self._engine = create_engine(url, sqlite_synchronous=sqlite_synchronous)
        self._writer = self._engine.execution_options(**{WRITE: True})
        self._url = self._engine.url
        dialect = self._engine.dialect.name
        self._insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        self._sane_multi_rowcount = self._engine.dialect.supports_sane_multi_rowcount
        self._statements: dict[tuple[str, str], Any] = {}
        self._run_id_order: Any = runs.c.run_id
        if dialect == "postgresql":
            # Byte order, like Python's sort and SQLite's BINARY, whatever the locale.
            self._run_id_order = runs.c.run_id.collate("C")
        self._fast_writes: dict[tuple[str, str], CompiledWrite] = {}
        if dialect == "sqlite":
            self._compile_fast_writes()
        migrate.prepare(self._engine, create)

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

    def __repr__(self) -> str:
        return f"SqlRunStore({self._url.render_as_string(hide_password=True)!r})"

    @property
    def engine(self) -> sa.Engine:
        return self._engine

    # -- writes ---------------------------------------------------------------------

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
            values = [rows.update_params(record, pk, expected) for record, expected in items]
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
            self._statements[key] = (
                table.update()
                .where(
                    *(table.c[name] == sa.bindparam(f"k_{name}") for name in pk),
                    table.c.status.in_([sa.bindparam("k_expected"), sa.bindparam("k_new")]),
                )
                .values({c.name: sa.bindparam(c.name) for c in table.c if c.name not in pk})
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
        for chunk in _chunks([key_of(record) for record, _ in items]):
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

    def set_aside(
        self, items: Sequence[tuple[AttemptKey, str, str]], epoch: int, now: datetime
    ) -> None:
        with self._errors(), self._writer.begin() as conn:
            quarantine.set_aside(conn, items, epoch, now)

    def set_aside_outcomes(self) -> list[QuarantinedOutcome]:
        with self._errors(), self._engine.connect() as conn:
            return quarantine.listed(conn)

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

    # -- reads ----------------------------------------------------------------------

    def get_workflow(self, name: str, version: str | None = None) -> WorkflowSchema | None:
        query = sa.select(workflows.c.schema_json).where(workflows.c.name == name)
        if version is not None:
            query = query.where(workflows.c.version == version)
        query = query.order_by(workflows.c.seq.desc()).limit(1)
        with self._errors(), self._engine.connect() as conn:
            text = conn.execute(query).scalar_one_or_none()
        return None if text is None else WorkflowSchema.model_validate_json(text)

    def list_workflows(self) -> list[WorkflowSchema]:
        latest = (
            sa.select(workflows.c.name, sa.func.max(workflows.c.seq).label("seq"))
            .group_by(workflows.c.name)
            .subquery()
        )
        query = sa.select(workflows.c.name, workflows.c.schema_json).join(
            latest, sa.and_(workflows.c.name == latest.c.name, workflows.c.seq == latest.c.seq)
        )
        with self._errors(), self._engine.connect() as conn:
            found = conn.execute(query).all()
        return [WorkflowSchema.model_validate_json(row.schema_json) for row in sorted(found)]

    def find_runs(self, run_ids: Sequence[str]) -> dict[str, RunRecord]:
        found: dict[str, RunRecord] = {}
        with self._errors(), self._engine.connect() as conn:
            for chunk in _chunks(list(dict.fromkeys(run_ids))):
                for row in conn.execute(sa.select(runs).where(runs.c.run_id.in_(chunk))):
                    run = rows.to_run(row._mapping)
                    found[run.run_id] = run
        return {rid: found[rid] for rid in run_ids if rid in found}

    def find_idempotency_keys(self, keys: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        query = sa.select(runs.c.idempotency_key, runs.c.run_id)
        with self._errors(), self._engine.connect() as conn:
            for chunk in _chunks(list(dict.fromkeys(keys))):
                for key, run_id in conn.execute(query.where(runs.c.idempotency_key.in_(chunk))):
                    found[key] = run_id
        return {key: found[key] for key in keys if key in found}

    def find_unique_runs(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], RunRecord]:
        with self._errors(), self._engine.connect() as conn:
            return unique.find_unique_runs(conn, keys)

    def list_runs(
        self,
        workflow: str | None = None,
        status: RunStatus | None = None,
        limit: int = 100,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        position: tuple[datetime, str] | None = None,
    ) -> list[RunRecord]:
        query = sa.select(runs)
        if position is not None:
            at, run_id = position
            query = query.where(
                sa.or_(
                    runs.c.created_at < at,
                    sa.and_(runs.c.created_at == at, self._run_id_order < run_id),
                )
            )
        if created_after is not None:
            query = query.where(runs.c.created_at >= created_after)
        if created_before is not None:
            query = query.where(runs.c.created_at < created_before)
        if workflow is not None:
            query = query.where(runs.c.workflow == workflow)
        if status is not None:
            query = query.where(runs.c.status == RunStatus(status).value)
        query = query.order_by(runs.c.created_at.desc(), self._run_id_order.desc()).limit(limit)
        with self._errors(), self._engine.connect() as conn:
            return [rows.to_run(row._mapping) for row in conn.execute(query)]

    def child_runs(self, parent_run_ids: Sequence[str]) -> list[RunRecord]:
        """The runs started by steps of these runs, oldest first."""
        found: list[RunRecord] = []
        with self._errors(), self._engine.connect() as conn:
            for chunk in _chunks(list(dict.fromkeys(parent_run_ids))):
                query = sa.select(runs).where(runs.c.parent_run_id.in_(chunk))
                found.extend(rows.to_run(row._mapping) for row in conn.execute(query))
        found.sort(key=lambda r: (r.created_at, r.run_id))
        return found

    def get_tasks(self, run_ids: Sequence[str]) -> list[TaskRecord]:
        found: list[TaskRecord] = []
        with self._errors(), self._engine.connect() as conn:
            for chunk in _chunks(list(dict.fromkeys(run_ids))):
                query = sa.select(tasks).where(tasks.c.run_id.in_(chunk))
                found.extend(rows.to_task(row._mapping) for row in conn.execute(query))
        found.sort(key=rows.task_order)
        return found

    def get_attempts(self, run_id: str) -> list[AttemptRecord]:
        query = sa.select(attempts).where(attempts.c.run_id == run_id)
        with self._errors(), self._engine.connect() as conn:
            found = [rows.to_attempt(row._mapping) for row in conn.execute(query)]
        found.sort(key=rows.attempt_order)
        return found

    def page_tasks(
        self, run_id: str, after: tuple[str, int] | None, limit: int
    ) -> list[TaskRecord]:
        step = self._bytewise(tasks.c.step)
        query = sa.select(tasks).where(tasks.c.run_id == run_id)
        if after is not None:
            query = query.where(sa.tuple_(step, tasks.c.map_index) > sa.tuple_(*after))
        query = query.order_by(step, tasks.c.map_index).limit(limit)
        with self._errors(), self._engine.connect() as conn:
            return [rows.to_task(row._mapping) for row in conn.execute(query)]

    def page_attempts(
        self, run_id: str, after: tuple[str, int, int] | None, limit: int
    ) -> list[AttemptRecord]:
        step = self._bytewise(attempts.c.step)
        key = sa.tuple_(step, attempts.c.map_index, attempts.c.attempt)
        query = sa.select(attempts).where(attempts.c.run_id == run_id)
        if after is not None:
            query = query.where(key > sa.tuple_(*after))
        query = query.order_by(step, attempts.c.map_index, attempts.c.attempt).limit(limit)
        with self._errors(), self._engine.connect() as conn:
            return [rows.to_attempt(row._mapping) for row in conn.execute(query)]

    def _bytewise(self, column: Any) -> Any:
        """Byte order on PostgreSQL too, like Python's sort and SQLite's BINARY."""
        return column.collate("C") if self._engine.dialect.name == "postgresql" else column

    def get_logs(
        self,
        run_id: str,
        step: str | None = None,
        after_id: int | None = None,
        limit: int | None = None,
    ) -> list[LogRecord]:
        query = sa.select(logs).where(logs.c.run_id == run_id)
        if step is not None:
            query = query.where(logs.c.step == step)
        if after_id is not None:
            query = query.where(logs.c.id > after_id)
        query = query.order_by(logs.c.id)
        if limit is not None:
            query = query.limit(limit)
        with self._errors(), self._engine.connect() as conn:
            return [rows.to_log(row._mapping) for row in conn.execute(query)]

    def load_active(self) -> tuple[list[RunRecord], list[TaskRecord], list[AttemptRecord]]:
        active = [status.value for status in ACTIVE_RUNS]
        active_ids = sa.select(runs.c.run_id).where(runs.c.status.in_(active))
        with self._errors(), self._engine.connect() as conn:
            found_runs = [
                rows.to_run(row._mapping)
                for row in conn.execute(sa.select(runs).where(runs.c.status.in_(active)))
            ]
            found_tasks = [
                rows.to_task(row._mapping)
                for row in conn.execute(sa.select(tasks).where(tasks.c.run_id.in_(active_ids)))
            ]
            query = sa.select(attempts).where(attempts.c.status == AttemptStatus.RUNNING.value)
            found_attempts = [rows.to_attempt(row._mapping) for row in conn.execute(query)]
        found_runs.sort(key=lambda run: (run.created_at, run.run_id))
        found_tasks.sort(key=rows.task_order)
        found_attempts.sort(key=lambda a: (a.run_id, *rows.attempt_order(a)))
        return found_runs, found_tasks, found_attempts

    def page_queued(
        self, queue: str, after: tuple[int, int] | None, limit: int
    ) -> list[TaskRecord]:
        query = sa.select(tasks).where(tasks.c.status == QUEUED, tasks.c.queue == queue)
        if after is not None:
            priority, seq = after
            query = query.where(
                sa.or_(
                    tasks.c.priority < priority,
                    sa.and_(tasks.c.priority == priority, tasks.c.seq > seq),
                )
            )
        query = query.order_by(tasks.c.priority.desc(), tasks.c.seq.asc()).limit(limit)
        with self._errors(), self._engine.connect() as conn:
            return [rows.to_task(row._mapping) for row in conn.execute(query)]

    def pending_deadlines(self) -> list[tuple[str, datetime]]:
        unfinished = [s.value for s in RunStatus if not s.finished]
        query = sa.select(runs.c.run_id, runs.c.deadline_at).where(
            runs.c.deadline_at.is_not(None), runs.c.status.in_(unfinished)
        )
        with self._errors(), self._engine.connect() as conn:
            return [(row.run_id, row.deadline_at) for row in conn.execute(query)]

    def count_queued(self) -> int:
        query = sa.select(sa.func.count()).select_from(tasks).where(tasks.c.status == QUEUED)
        with self._errors(), self._engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def queued_queues(self) -> list[str]:
        query = sa.select(tasks.c.queue).where(tasks.c.status == QUEUED).distinct()
        with self._errors(), self._engine.connect() as conn:
            return sorted(conn.execute(query).scalars())

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

    def get_claim(self, key: str) -> ClaimRecord | None:
        with self._errors(), self._engine.connect() as conn:
            return claims.get(conn, key)

    def put_claim(self, claim: ClaimRecord, expected_version: int | None) -> bool:
        # the insert of a key two writers race for: the primary key lets one through
        try:
            with self._errors(), self._writer.begin() as conn:
                return claims.put(conn, claim, expected_version)
        except sa.exc.IntegrityError:
            return False

    def claims_of(self, run_ids: Sequence[str], limit: int | None = None) -> list[ClaimRecord]:
        with self._errors(), self._engine.connect() as conn:
            return claims.of_runs(conn, run_ids, limit)

    def max_task_seq(self) -> int:
        query = sa.select(sa.func.coalesce(sa.func.max(tasks.c.seq), 0))
        with self._errors(), self._engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def close(self) -> None:
        self._engine.dispose()

    def _errors(self) -> AbstractContextManager[None]:
        return unavailable_as_store_error(self._url)


def _tuple_key(pk: tuple[str, ...]) -> Any:
    def key(record: object) -> tuple[Any, ...]:
        return tuple(getattr(record, name) for name in pk)

    return key


def _chunks(items: list[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
