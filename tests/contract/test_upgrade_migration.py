"""An upgrade's migration keeps a populated store whole: a store at the previous release's
schema (0011, before runtime envs and the audit log) holding thousands of runs in every
status, with their tasks, attempts and log lines, and workflows, schedules, claims, set-aside
outcomes, counters and meta rows, is migrated to head; every table keeps its row count and
its sampled rows column for column, and the store at head opens and reads them.

The rows are written with the previous schema's columns only (those the database has at
0011, through the current tables' types), as that release wrote them.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from wfray.adapters.sqlalchemy import tables
from wfray.domain.reads import LogQuery, RunFilter
from wfray.domain.status import AttemptStatus, RunStatus, TaskStatus

PREVIOUS = "0011"
RUNS_PER_STATUS = 400  # 3,200 runs; two tasks each, an attempt and a log line per task
BASE = datetime(2026, 6, 1, tzinfo=UTC)
SAMPLE_EVERY = 97

Row = dict[str, Any]


def at(i: int) -> datetime:
    return BASE + timedelta(seconds=i)


def run_rows() -> Iterator[Row]:
    statuses = itertools.cycle(RunStatus)
    for i in range(RUNS_PER_STATUS * len(RunStatus)):
        status = next(statuses)
        yield {
            "run_id": f"run-{i:05d}",
            "workflow": f"wf-{i % 7}",
            "version": "v1",
            "status": status.value,
            "input_json": json.dumps({"order": i}),
            "created_at": at(i),
            "queue": "default" if i % 3 else "bulk",
            "priority": i % 5,
            "idempotency_key": f"key-{i}" if i % 2 else None,
            "concurrency_key": f"customer-{i % 11}" if i % 4 == 0 else None,
            "trigger": "client",
            "started_at": None if status == RunStatus.QUEUED else at(i + 1),
            "finished_at": at(i + 2)
            if status not in (RunStatus.QUEUED, RunStatus.RUNNING)
            else None,
            "result_json": json.dumps(i) if status == RunStatus.COMPLETED else None,
            "error": f"step failed: {i}" if status == RunStatus.FAILED else None,
        }


def task_rows() -> Iterator[Row]:
    statuses = itertools.cycle(TaskStatus)
    for i in range(RUNS_PER_STATUS * len(RunStatus) * 2):
        yield {
            "run_id": f"run-{i // 2:05d}",
            "step": f"step{i % 2}",
            "map_index": -1,
            "status": next(statuses).value,
            "pool": "cpu" if i % 2 else "io",
            "created_at": at(i),
            "queue": "default",
            "priority": 0,
            "seq": i + 1,
            "attempts": 1,
            "failures": i % 2,
            "lost": 0,
            "started_at": at(i + 1),
            "error_type": "ValueError" if i % 5 == 0 else None,
            "error_message": "bad value" if i % 5 == 0 else None,
        }


def attempt_rows() -> Iterator[Row]:
    statuses = itertools.cycle(AttemptStatus)
    for i, task in enumerate(task_rows()):
        yield {
            "run_id": task["run_id"],
            "step": task["step"],
            "map_index": -1,
            "attempt": 1,
            "status": next(statuses).value,
            "executor": task["pool"],
            "incarnation": f"inc-{i % 3}",
            "queued_at": at(i),
            "started_at": at(i + 1),
            "node_id": f"node-{i % 2}",
            "host": "worker-1",
            "pid": 1000 + i,
            "kind": "step",
        }


def log_rows() -> Iterator[Row]:
    for i, attempt in enumerate(attempt_rows()):
        yield {
            "line_key": f"line-{i:08d}",
            "run_id": attempt["run_id"],
            "step": attempt["step"],
            "map_index": -1,
            "attempt": 1,
            "ts": at(i),
            "level": "INFO",
            "logger": "wfray.step",
            "message": f"working on {i} <b>\u202e</b>",
        }


def few(make: Callable[[int], Row], count: int) -> Callable[[], Iterator[Row]]:
    return lambda: (make(i) for i in range(count))


def schedule(i: int) -> Row:
    return {
        "name": f"nightly-{i}",
        "workflow": f"wf-{i % 7}",
        "cron": "0 3 * * *",
        "tz": "Europe/Berlin",
        "input_json": "{}",
        "queue": "default",
        "priority": 0,
        "misfire": "skip",
        "grace_s": 60.0,
        "overlap": "allow",
        "paused": i % 2 == 0,
        "last_fired": at(i),
        "created_at": at(i),
        "updated_at": at(i),
    }


def claim(i: int) -> Row:
    return {
        "key": f"invoice-{i}",
        "run_id": f"run-{i:05d}",
        "step": "step0",
        "map_index": -1,
        "attempt": 1,
        "claimed_at": at(i),
        "expires_at": at(i + 600),
        "version": 1,
        "done_at": at(i + 5) if i % 2 else None,
        "result_json": json.dumps({"invoice": i}) if i % 2 else None,
    }


def quarantined(i: int) -> Row:
    return {
        "run_id": f"run-{i:05d}",
        "step": "step1",
        "map_index": -1,
        "attempt": 1,
        "status": "set_aside" if i % 2 else "suspect",
        "epoch": 3,
        "reason": "unserialisable result",
        "updated_at": at(i),
        "deaths": i % 3,
    }


FILLERS: dict[sa.Table, Callable[[], Iterator[Row]]] = {
    tables.workflows: few(
        lambda i: {
            "name": f"wf-{i}",
            "version": "v1",
            "seq": i,
            "schema_json": json.dumps({"name": f"wf-{i}"}),
            "created_at": at(i),
        },
        7,
    ),
    tables.runs: run_rows,
    tables.tasks: task_rows,
    tables.attempts: attempt_rows,
    tables.logs: log_rows,
    tables.schedules: few(schedule, 60),
    tables.claims: few(claim, 600),
    tables.outcome_quarantine: few(quarantined, 120),
    tables.counters: few(lambda i: {"name": f"counter-{i}", "value": i * 1000}, 5),
    tables.meta: few(lambda i: {"key": f"meta-{i}", "value": f"value {i}"}, 5),
}


def previous_columns(engine: sa.Engine, table: sa.Table) -> list[sa.Column[Any]]:
    """The table's columns that the database has (at the previous schema)."""
    present = {c["name"] for c in sa.inspect(engine).get_columns(table.name)}
    return [column for column in table.columns if column.name in present]


def fill(engine: sa.Engine) -> dict[str, list[sa.Column[Any]]]:
    """Every previous-schema table filled; the columns it had, per table."""
    columns = {table.name: previous_columns(engine, table) for table in FILLERS}
    with engine.begin() as conn:
        for table, rows in FILLERS.items():
            names = {c.name for c in columns[table.name]}
            batch = [{k: v for k, v in row.items() if k in names} for row in rows()]
            for start in range(0, len(batch), 2000):
                conn.execute(table.insert(), batch[start : start + 2000])
    return columns


def snapshot(
    engine: sa.Engine, columns: dict[str, list[sa.Column[Any]]]
) -> dict[str, tuple[int, list[tuple[Any, ...]]]]:
    """Per table: its row count, and every SAMPLE_EVERY-th row (by primary key)."""
    taken = {}
    with engine.connect() as conn:
        for table in FILLERS:
            count = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            key = list(table.primary_key.columns)
            if table is tables.logs:
                key = [tables.logs.c.line_key]  # its id is the database's own numbering
            query = sa.select(*columns[table.name]).order_by(*key)
            rows = [tuple(row) for row in conn.execute(query)][::SAMPLE_EVERY]
            taken[table.name] = (count, rows)
    return taken


def test_a_populated_store_at_the_previous_schema_migrates_whole(fresh_url: str) -> None:
    from wfray.adapters.sqlalchemy import migrate
    from wfray.adapters.sqlalchemy.store import SqlRunStore
    from wfray.domain.versions import SCHEMA_REVISION

    engine = sa.create_engine(fresh_url)
    try:
        migrate.upgrade(engine, PREVIOUS)
        columns = fill(engine)
        before = snapshot(engine, columns)
        assert before["runs"][0] == RUNS_PER_STATUS * len(RunStatus)

        migrate.upgrade(engine)
        assert migrate.current_revisions(engine) == (SCHEMA_REVISION,)
        assert snapshot(engine, columns) == before
    finally:
        engine.dispose()
    store = SqlRunStore(fresh_url, create=False)  # opens only at head
    try:
        for status in RunStatus:
            found = store.list_runs(RunFilter(status=status, limit=10_000))
            assert len(found) == RUNS_PER_STATUS, status
        sample = [f"run-{i:05d}" for i in range(0, RUNS_PER_STATUS * len(RunStatus), 113)]
        runs = store.find_runs(sample)
        assert sorted(runs) == sample
        assert {
            run.status for run in store.find_runs([f"run-{i:05d}" for i in range(8)]).values()
        } == set(RunStatus)
        task_list = store.get_tasks(sample)
        assert len(task_list) == 2 * len(sample)
        for run_id in sample[:10]:
            assert len(store.get_attempts(run_id)) == 2
            assert next(line.message for line in store.get_logs(LogQuery(run_id))).startswith(
                "working on"
            )
        assert len(store.claims_of([f"run-{i:05d}" for i in range(600)])) == 600
    finally:
        store.close()
