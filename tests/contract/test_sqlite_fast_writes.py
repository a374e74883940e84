"""SQLite's hot writes bypass SQLAlchemy Core's per-row handling: they must store, byte for
byte, what Core stores (SQLite compares the datetime text it holds, so a timestamp written
as '05' where Core writes '05.000000' would sort and filter differently)."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.contract.test_run_store import make_attempt, make_run, make_task
from wfray.adapters.sqlalchemy.store import SqlRunStore
from wfray.application.batch import Batch
from wfray.domain.status import AttemptStatus, RunStatus, TaskStatus

WHOLE = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)  # no microseconds: the case that differed
FINE = datetime(2026, 1, 2, 3, 4, 5, 123, tzinfo=UTC)


def written(path: Path, fast: bool) -> dict[str, list[tuple[Any, ...]]]:
    store = SqlRunStore(f"sqlite:///{path}")
    if not fast:
        store._fast_writes.clear()  # Core for everything
    try:
        run = make_run("r1", created_at=WHOLE, deadline_at=FINE, idempotency_key="k")
        task = make_task("r1", created_at=WHOLE, queued_at=FINE, seq=3)
        attempt = make_attempt("r1", queued_at=WHOLE)
        batch = Batch()
        batch.insert_run(run)
        batch.insert_task(task)
        batch.insert_attempt(attempt)
        store.commit(batch)
        later = Batch()
        later.update_run(replace(run, status=RunStatus.RUNNING, started_at=FINE), RunStatus.QUEUED)
        later.update_task(
            replace(task, status=TaskStatus.COMPLETED, finished_at=WHOLE, result_json="[1]"),
            TaskStatus.PENDING,
        )
        later.update_attempt(
            replace(attempt, status=AttemptStatus.SUCCEEDED, finished_at=FINE, pid=7),
            AttemptStatus.RUNNING,
        )
        store.commit(later)
    finally:
        store.close()
    with sqlite3.connect(path) as raw:
        return {
            table: raw.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
            for table in ("runs", "tasks", "attempts")
        }


def test_fast_writes_store_what_core_stores(tmp_path: Path) -> None:
    fast = written(tmp_path / "fast.db", fast=True)
    core = written(tmp_path / "core.db", fast=False)
    assert fast == core
    assert "2026-01-02 03:04:05.000000" in fast["runs"][0]  # Core's own format
