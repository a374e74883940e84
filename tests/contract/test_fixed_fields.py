"""An update writes what changes and leaves the fields fixed at creation as the insert
wrote them, on every store (memory, SQLite, PostgreSQL): SQLite rewrites the index
entries of every column an update sets, so leaving them out makes each commit cheaper."""

from __future__ import annotations

import copy
from datetime import timedelta

from tests.contract.test_run_store import (  # noqa: F401  (fixtures)
    T0,
    make_run,
    make_task,
    sqlite_file_url,
    store,
)
from wfray.application.batch import Batch
from wfray.application.ports import RunStore
from wfray.domain.records import RUN_FIXED, TASK_FIXED
from wfray.domain.status import RunStatus, TaskStatus

LATER = T0 + timedelta(minutes=5)


def test_an_update_writes_what_changed_and_keeps_what_was_fixed_at_creation(
    store: RunStore,  # noqa: F811  (the fixture)
) -> None:
    run = make_run(
        "fixed-1",
        priority=5,
        queue="bulk",
        idempotency_key="order-7",
        deadline_at=T0 + timedelta(hours=1),
        unique_key="customer-7",
        env_hash="e" * 64,
    )
    task = make_task("fixed-1", queue="bulk", priority=5, concurrency_key="customer-7")
    batch = Batch()
    batch.insert_run(run)
    batch.insert_task(task)
    store.commit(batch)

    changed_run, changed_task = copy.copy(run), copy.copy(task)
    changed_run.status, changed_run.started_at = RunStatus.RUNNING, LATER
    changed_task.status, changed_task.attempts, changed_task.seq = TaskStatus.QUEUED, 1, 42
    # a change to a fixed field is a defect (tests/unit/test_fixed_fields.py): never stored
    changed_run.priority, changed_run.input_json, changed_run.deadline_at = 0, "{}", None
    changed_task.pool, changed_task.queue = "cpu", "default"
    batch = Batch()
    batch.update_run(changed_run, RunStatus.QUEUED)
    batch.update_task(changed_task, TaskStatus.PENDING)
    store.commit(batch)

    stored_run = store.find_runs(["fixed-1"])["fixed-1"]
    assert (stored_run.status, stored_run.started_at) == (RunStatus.RUNNING, LATER)
    assert [getattr(stored_run, f) for f in RUN_FIXED] == [getattr(run, f) for f in RUN_FIXED]
    (stored_task,) = store.page_tasks("fixed-1", None, 10)
    assert (stored_task.status, stored_task.attempts, stored_task.seq) == (
        TaskStatus.QUEUED,
        1,
        42,
    )
    assert [getattr(stored_task, f) for f in TASK_FIXED] == [getattr(task, f) for f in TASK_FIXED]
