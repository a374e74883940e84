"""The store's history as Arrow record batches, streamed with bounded memory.

This is the store's side of wfray.analytics: the one place that reads the tables for it,
so analytics never touches them (the layer test checks).

Rows come through SQLAlchemy Core with `stream_results` (a server-side cursor on
PostgreSQL, lazy `fetchmany` on SQLite) and `partitions(batch)`, so at most one batch of
rows is in Python at a time. Every batch carries the explicit schema of its table:
datetimes as `timestamp[us, tz=UTC]`, integers as int64, text as string. Attempts get one
derived column, `resources` (map<string, double>), parsed from `resources_json` (NULL as {}).

A `HistorySnapshot` reads every table in one transaction (REPEATABLE READ on PostgreSQL,
one read transaction on SQLite), so attempts never point at runs the same read missed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self

import pyarrow as pa
import sqlalchemy as sa

from wfray.adapters.sqlalchemy import migrate
from wfray.adapters.sqlalchemy.engine import WRITE, create_engine, unavailable_as_store_error
from wfray.adapters.sqlalchemy.rows import UtcDateTime, to_utc
from wfray.adapters.sqlalchemy.tables import attempts, logs, runs, tasks
from wfray.domain.masking import mask_data

TABLES: dict[str, sa.Table] = {"runs": runs, "tasks": tasks, "attempts": attempts, "logs": logs}
DEFAULT_BATCH = 10_000
TIMESTAMP = pa.timestamp("us", tz="UTC")
RESOURCES = pa.map_(pa.string(), pa.float64())


def _arrow_type(column: sa.Column[Any]) -> pa.DataType:
    kind = column.type
    if isinstance(kind, UtcDateTime):
        return TIMESTAMP
    if isinstance(kind, sa.Integer):  # BigInteger and the SQLite variant of BigId too
        return pa.int64()
    if isinstance(kind, sa.String | sa.Text):
        return pa.string()
    raise TypeError(f"no Arrow type for column {column.table.name}.{column.name} of {kind!r}")


def _schema(table: sa.Table) -> pa.Schema:
    fields = [pa.field(c.name, _arrow_type(c), nullable=c.nullable) for c in table.columns]
    if table is attempts:
        fields.append(pa.field("resources", RESOURCES, nullable=False))
    return pa.schema(fields)


SCHEMAS: dict[str, pa.Schema] = {name: _schema(table) for name, table in TABLES.items()}


@dataclass(frozen=True, slots=True)
class HistoryFilter:
    """Which runs to read; tasks, attempts and logs follow their run.

    Attributes:
        created_after: runs created at or after this instant (aware, any time zone).
        created_before: runs created strictly before this instant.
        workflow: runs of this workflow only.
    """

    created_after: datetime | None = None
    created_before: datetime | None = None
    workflow: str | None = None

    def run_conditions(self) -> list[sa.ColumnElement[bool]]:
        conditions: list[sa.ColumnElement[bool]] = []
        if self.created_after is not None:
            conditions.append(runs.c.created_at >= _aware(self.created_after, "created_after"))
        if self.created_before is not None:
            conditions.append(runs.c.created_at < _aware(self.created_before, "created_before"))
        if self.workflow is not None:
            conditions.append(runs.c.workflow == self.workflow)
        return conditions


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{name} must be an aware datetime (with a time zone), got {value!r}")
    return to_utc(value)


def table_named(name: str) -> sa.Table:
    try:
        return TABLES[name]
    except KeyError:
        raise ValueError(f"unknown table {name!r}: expected one of {', '.join(TABLES)}") from None


def conditions_for(
    table: sa.Table, history: HistoryFilter | None, run_ids: Sequence[str] | None = None
) -> list[sa.ColumnElement[bool]]:
    """WHERE clauses selecting `table`'s rows of the runs that `history` and `run_ids` pick."""
    run_conditions = history.run_conditions() if history is not None else []
    conditions: list[sa.ColumnElement[bool]] = []
    if run_ids is not None:
        conditions.append(table.c.run_id.in_(list(run_ids)))
    if run_conditions:
        if table is runs:
            conditions.extend(run_conditions)
        else:
            chosen = sa.select(runs.c.run_id).where(*run_conditions)
            conditions.append(table.c.run_id.in_(chosen))
    return conditions


def _order(table: sa.Table) -> list[sa.ColumnElement[Any]]:
    # Primary-key order: stable output, and an index serves it on both databases.
    return list(table.primary_key.columns)


def _resources(row: sa.Row[Any]) -> list[tuple[str, float]]:
    text = row.resources_json
    if text is None:
        return []
    try:
        held = json.loads(text)
        if not isinstance(held, dict):
            raise TypeError("not an object")
        return [(str(name), float(amount)) for name, amount in held.items()]
    except (ValueError, TypeError) as exc:
        key = f"{row.run_id}/{row.step}[{row.map_index}]#{row.attempt}"
        raise ValueError(
            f"attempt {key} has resources_json {text!r}: expected a JSON object of "
            f'resource amounts such as {{"CPU": 1.0}} ({exc})'
        ) from exc


# Text people read in exports and archives: credentials masked (domain/masking.py).
MASKED_COLUMNS = frozenset(
    {"input_json", "result_json", "error", "error_message", "traceback", "message"}
)


def to_record_batch(table: sa.Table, rows: Sequence[sa.Row[Any]]) -> pa.RecordBatch:
    """Rows of `table` as one record batch with the table's explicit schema, credentials in
    its text masked."""
    schema = SCHEMAS[table.name]
    columns = [
        pa.array(
            [mask_data(row[i]) if column.name in MASKED_COLUMNS else row[i] for row in rows],
            type=schema.field(i).type,
        )
        for i, column in enumerate(table.columns)
    ]
    if table is attempts:
        columns.append(pa.array([_resources(row) for row in rows], type=RESOURCES))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def stream_batches(
    conn: sa.Connection,
    table: sa.Table,
    conditions: Sequence[sa.ColumnElement[bool]] = (),
    *,
    batch: int = DEFAULT_BATCH,
) -> Iterator[pa.RecordBatch]:
    """Record batches of at most `batch` rows of `table`, read on `conn`."""
    if batch < 1:
        raise ValueError(f"batch must be a positive number of rows, got {batch}")
    query = sa.select(*table.columns).where(*conditions).order_by(*_order(table))
    # On the statement, not the connection: Connection.execution_options changes it in place.
    result = conn.execute(query.execution_options(stream_results=True, yield_per=batch))
    try:
        for rows in result.partitions(batch):
            yield to_record_batch(table, rows)
    finally:
        result.close()


class HistorySnapshot:
    """One consistent read of a store: readers over any of its tables."""

    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn

    def batches(
        self, name: str, history: HistoryFilter | None = None, *, batch: int = DEFAULT_BATCH
    ) -> Iterator[pa.RecordBatch]:
        table = table_named(name)
        return stream_batches(self._conn, table, conditions_for(table, history), batch=batch)

    def reader(
        self, name: str, history: HistoryFilter | None = None, *, batch: int = DEFAULT_BATCH
    ) -> pa.RecordBatchReader:
        """A reader of table `name`; consume it before the snapshot closes."""
        batches = self.batches(name, history, batch=batch)
        return pa.RecordBatchReader.from_batches(SCHEMAS[name], batches)


def open_engine(store_url: str) -> sa.Engine:
    """An engine on a store whose schema is current (SchemaOutdatedError otherwise)."""
    engine = create_engine(store_url)
    try:
        migrate.check_current(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


class OpenedStore:
    """The base of the operator's entry points into a store whose schema is current
    (retention, erasure): on an engine of their own, which `close` disposes."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._writer = engine.execution_options(**{WRITE: True})

    @classmethod
    def open(cls, store_url: str) -> Self:
        """Open the store at `store_url` (SchemaOutdatedError if it is not migrated)."""
        return cls(open_engine(store_url))

    def close(self) -> None:
        self._engine.dispose()


@contextmanager
def snapshot(store_url: str) -> Iterator[HistorySnapshot]:
    """A consistent, read-only view of the store at `store_url` while the block runs."""
    engine = open_engine(store_url)
    try:
        reading = engine
        if engine.dialect.name == "postgresql":
            reading = engine.execution_options(isolation_level="REPEATABLE READ")
        with unavailable_as_store_error(engine.url), reading.connect() as conn, conn.begin():
            yield HistorySnapshot(conn)
    finally:
        engine.dispose()


def record_batches(
    store_url: str,
    name: str,
    history: HistoryFilter | None = None,
    *,
    batch: int = DEFAULT_BATCH,
) -> pa.RecordBatchReader:
    """A reader of table `name` that opens the store on first read and closes it at the end."""
    table_named(name)

    def generate() -> Iterator[pa.RecordBatch]:
        with snapshot(store_url) as history_snapshot:
            yield from history_snapshot.batches(name, history, batch=batch)

    return pa.RecordBatchReader.from_batches(SCHEMAS[name], generate())


def read_table(
    store_url: str,
    name: str,
    history: HistoryFilter | None = None,
    *,
    batch: int = DEFAULT_BATCH,
) -> pa.Table:
    """All of table `name` (of the runs `history` picks) as one Arrow table."""
    return record_batches(store_url, name, history, batch=batch).read_all()
