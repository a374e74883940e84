"""The RunStore contract, run on every adapter: memory, SQLite and PostgreSQL.

The in-memory store is the reference; the SQL stores must be indistinguishable from it
through the port. SQL-only behaviour (migrations, connection errors, bulk) is at the end.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from wfray.adapters.memory.store import InMemoryRunStore
from wfray.application.batch import Batch
from wfray.application.ports import RunStore
from wfray.domain.errors import SchemaOutdatedError, StaleWriteError, StoreUnavailableError
from wfray.domain.reads import LogQuery, RunFilter
from wfray.domain.records import AttemptRecord, LogRecord, RunRecord, TaskRecord
from wfray.domain.results import CollectionTooLarge
from wfray.domain.status import AttemptStatus, RunStatus, TaskStatus
from wfray.domain.workflow import StepSchema, WorkflowSchema

T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
CEST = timezone(timedelta(hours=2))


# -- factories ------------------------------------------------------------------------


def sql_store(url: str, **kwargs: Any) -> RunStore:
    from wfray.adapters.sqlalchemy.store import SqlRunStore

    return SqlRunStore(url, **kwargs)


@pytest.fixture
def sqlite_file_url(tmp_path: Path) -> str:
    # A folder that does not exist yet: the store creates it.
    return f"sqlite:///{tmp_path / 'data' / 'wfray.db'}"


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest) -> Iterator[RunStore]:
    made: RunStore
    if request.param == "memory":
        made = InMemoryRunStore()
    elif request.param == "sqlite":
        made = sql_store(request.getfixturevalue("sqlite_file_url"))
    else:
        made = sql_store(request.getfixturevalue("postgres_url"))
    yield made
    made.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sql_url(request: pytest.FixtureRequest) -> str:
    name = "sqlite_file_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(name)
    return url


# -- builders -------------------------------------------------------------------------


def make_run(run_id: str = "r1", **kw: Any) -> RunRecord:
    values: dict[str, Any] = {
        "run_id": run_id,
        "workflow": "invoice",
        "version": "v1",
        "status": RunStatus.QUEUED,
        "input_json": '{"customer": 7}',
        "created_at": T0,
    }
    values.update(kw)
    return RunRecord(**values)


def make_task(
    run_id: str = "r1", step: str = "fetch", map_index: int = -1, **kw: Any
) -> TaskRecord:
    values: dict[str, Any] = {
        "run_id": run_id,
        "step": step,
        "map_index": map_index,
        "status": TaskStatus.PENDING,
        "pool": "io",
        "created_at": T0,
    }
    values.update(kw)
    return TaskRecord(**values)


def make_attempt(
    run_id: str = "r1", step: str = "fetch", attempt: int = 1, **kw: Any
) -> AttemptRecord:
    values: dict[str, Any] = {
        "run_id": run_id,
        "step": step,
        "map_index": -1,
        "attempt": attempt,
        "status": AttemptStatus.RUNNING,
        "executor": "io-0",
        "incarnation": "inc-1",
        "queued_at": T0,
    }
    values.update(kw)
    return AttemptRecord(**values)


def make_log(
    run_id: str = "r1", step: str = "fetch", message: str = "hello", **kw: Any
) -> LogRecord:
    values: dict[str, Any] = {
        "run_id": run_id,
        "step": step,
        "map_index": -1,
        "attempt": 1,
        "ts": T0,
        "level": "INFO",
        "logger": "wfray.step",
        "message": message,
    }
    values.update(kw)
    return LogRecord(**values)


def workflow(name: str = "invoice", fn: str = "jobs.invoice:fetch") -> WorkflowSchema:
    return WorkflowSchema.build(name, [StepSchema(name="fetch", fn=fn, pool="io")])


def commit(store: RunStore, *items: Any, logs: list[LogRecord] | None = None) -> Batch:
    batch = Batch()
    for item in items:
        if isinstance(item, RunRecord):
            batch.insert_run(item)
        elif isinstance(item, TaskRecord):
            batch.insert_task(item)
        elif isinstance(item, AttemptRecord):
            batch.insert_attempt(item)
        else:
            batch.workflows.append(item)
    batch.logs.extend(logs or [])
    store.commit(batch)
    return batch


def snapshot(store: RunStore, run_ids: list[str]) -> tuple[Any, ...]:
    return (
        store.find_runs(run_ids),
        store.get_tasks(run_ids),
        [store.get_attempts(rid) for rid in run_ids],
        [store.get_logs(LogQuery(rid)) for rid in run_ids],
    )


# -- the contract ---------------------------------------------------------------------


def test_one_commit_round_trips_every_field(store: RunStore) -> None:
    run = make_run(
        status=RunStatus.RUNNING,
        created_at=datetime(2025, 3, 1, 14, 0, 0, 654321, tzinfo=CEST),
        queue="billing",
        priority=5,
        idempotency_key="key-1",
        concurrency_key="customer-7",
        parent_run_id="parent",
        unique_key="weekly:2026-W49",
        trigger="schedule",
        started_at=T0 + timedelta(seconds=1),
        finished_at=None,
        result_json='{"ok": true}',
        result_ref="file:///blobs/r1",
        error="boom",
    )
    task = make_task(
        status=TaskStatus.RUNNING,
        queue="billing",
        priority=5,
        seq=42,
        concurrency_key="customer-7",
        attempts=2,
        failures=1,
        lost=1,
        map_count=3,
        ready_at=T0,
        queued_at=T0 + timedelta(microseconds=1),
        started_at=T0 + timedelta(seconds=2),
        finished_at=T0 + timedelta(seconds=3),
        result_json="[1, 2, 3]",
        result_ref="s3://bucket/key",
        result_items=3,
        error_type="ValueError",
        error_message="bad",
    )
    attempt = make_attempt(
        started_at=T0 + timedelta(seconds=2),
        finished_at=T0 + timedelta(seconds=3),
        node_id="node",
        worker_id="worker",
        host="host-1",
        pid=1234,
        error_type="KeyError",
        error_message="missing",
        traceback="Traceback (most recent call last): ...",
    )
    line = make_log(ts=datetime(2025, 3, 1, 14, 0, 1, tzinfo=CEST), message="x" * 10_000)
    commit(store, run, task, attempt, logs=[line])

    got_run = store.find_runs(["r1"])["r1"]
    assert got_run == run
    assert isinstance(got_run.status, RunStatus)
    assert got_run.created_at.tzinfo is not None
    assert got_run.created_at.utcoffset() is not None
    assert store.get_tasks(["r1"]) == [task]
    assert isinstance(store.get_tasks(["r1"])[0].status, TaskStatus)
    got_attempt = store.get_attempts("r1")
    assert got_attempt == [attempt]
    assert isinstance(got_attempt[0].status, AttemptStatus)
    got_logs = store.get_logs(LogQuery("r1"))
    assert got_logs == [replace(line, id=got_logs[0].id)]
    assert isinstance(got_logs[0].id, int)  # the store numbers its lines
    assert got_logs[0].ts.tzinfo is not None


def test_stored_records_are_copies(store: RunStore) -> None:
    run = make_run()
    commit(store, run)
    run.status = RunStatus.FAILED
    assert store.find_runs(["r1"])["r1"].status is RunStatus.QUEUED


def test_replaying_a_batch_changes_nothing(store: RunStore) -> None:
    run, task = make_run(), make_task()
    lines = [make_log(message="same"), make_log(message="same"), make_log(message="other")]
    batch = commit(store, workflow(), run, task, make_attempt(), logs=lines)
    before = snapshot(store, ["r1"])
    store.commit(batch)
    assert snapshot(store, ["r1"]) == before
    assert [line.message for line in store.get_logs(LogQuery("r1"))] == ["same", "same", "other"]

    update = Batch()
    update.update_run(replace(run, status=RunStatus.RUNNING), RunStatus.QUEUED)
    update.update_task(replace(task, status=TaskStatus.QUEUED, seq=3), TaskStatus.PENDING)
    update.logs.append(make_log(message="later"))
    store.commit(update)
    after = snapshot(store, ["r1"])
    store.commit(update)  # a replay finds the new status and rewrites the same values
    assert snapshot(store, ["r1"]) == after
    assert len(store.get_logs(LogQuery("r1"))) == 4
    assert len(store.list_workflows()) == 1


def test_empty_batch_is_fine(store: RunStore) -> None:
    store.commit(Batch())
    assert store.list_runs(RunFilter()) == []


@pytest.mark.parametrize("kind", ["run", "task", "attempt"])
def test_compare_and_set_update(store: RunStore, kind: str) -> None:
    run, task, attempt = make_run(), make_task(), make_attempt()
    commit(store, run, task, attempt)

    batch = Batch()
    if kind == "run":
        batch.update_run(replace(run, status=RunStatus.RUNNING, started_at=T0), RunStatus.QUEUED)
    elif kind == "task":
        batch.update_task(replace(task, status=TaskStatus.QUEUED, seq=9), TaskStatus.PENDING)
    else:
        changed = replace(attempt, status=AttemptStatus.SUCCEEDED, finished_at=T0, pid=9)
        batch.update_attempt(changed, AttemptStatus.RUNNING)
    store.commit(batch)

    if kind == "run":
        assert store.find_runs(["r1"])["r1"] == replace(
            run, status=RunStatus.RUNNING, started_at=T0
        )
    elif kind == "task":
        assert store.get_tasks(["r1"]) == [replace(task, status=TaskStatus.QUEUED, seq=9)]
    else:
        assert store.get_attempts("r1")[0].status is AttemptStatus.SUCCEEDED
        assert store.get_attempts("r1")[0].pid == 9


@pytest.mark.parametrize("kind", ["run", "task", "attempt", "missing"])
def test_stale_update_raises_and_commits_nothing_of_the_batch(store: RunStore, kind: str) -> None:
    run, task, attempt = make_run(), make_task(), make_attempt()
    commit(store, run, task, attempt)
    before = snapshot(store, ["r1", "r2"])

    batch = Batch()
    # Valid changes that must be rolled back with the stale one.
    batch.insert_run(make_run("r2"))
    batch.insert_task(make_task("r2"))
    batch.logs.append(make_log("r1", message="rolled back"))
    batch.workflows.append(workflow())
    if kind == "run":
        batch.update_run(replace(run, status=RunStatus.COMPLETED), RunStatus.RUNNING)
        batch.update_task(replace(task, status=TaskStatus.QUEUED), TaskStatus.PENDING)
    elif kind == "task":
        batch.update_run(replace(run, status=RunStatus.RUNNING), RunStatus.QUEUED)
        batch.update_task(replace(task, status=TaskStatus.COMPLETED), TaskStatus.RUNNING)
    elif kind == "attempt":
        batch.update_run(replace(run, status=RunStatus.RUNNING), RunStatus.QUEUED)
        batch.update_attempt(replace(attempt, status=AttemptStatus.LOST), AttemptStatus.FAILED)
    else:
        batch.update_run(replace(run, status=RunStatus.RUNNING), RunStatus.QUEUED)
        batch.update_task(make_task(step="nope", status=TaskStatus.QUEUED), TaskStatus.PENDING)

    with pytest.raises(StaleWriteError) as caught:
        store.commit(batch)
    expected_name = {"run": "r1", "task": "fetch", "attempt": "fetch", "missing": "nope"}[kind]
    assert kind in str(caught.value) or kind == "missing"
    assert expected_name in str(caught.value)
    assert snapshot(store, ["r1", "r2"]) == before
    assert store.list_workflows() == []


def test_several_updates_of_each_kind_in_one_batch(store: RunStore) -> None:
    runs = [make_run(f"r{i}") for i in range(5)]
    tasks = [make_task(f"r{i}", seq=i) for i in range(5)]
    attempts = [make_attempt(f"r{i}") for i in range(5)]
    commit(store, *runs, *tasks, *attempts)

    batch = Batch()
    for run, task, attempt in zip(runs, tasks, attempts, strict=True):
        batch.update_run(replace(run, status=RunStatus.RUNNING), RunStatus.QUEUED)
        batch.update_task(replace(task, status=TaskStatus.QUEUED), TaskStatus.PENDING)
        batch.update_attempt(replace(attempt, status=AttemptStatus.FAILED), AttemptStatus.RUNNING)
    store.commit(batch)
    ids = [run.run_id for run in runs]
    assert {r.status for r in store.find_runs(ids).values()} == {RunStatus.RUNNING}
    assert {t.status for t in store.get_tasks(ids)} == {TaskStatus.QUEUED}
    assert {a.status for rid in ids for a in store.get_attempts(rid)} == {AttemptStatus.FAILED}

    # One stale row among several fails the whole batch and names that row.
    again = Batch()
    for i, run in enumerate(runs):
        expected = RunStatus.QUEUED if i == 3 else RunStatus.RUNNING
        again.update_run(replace(run, status=RunStatus.COMPLETED), expected)
    with pytest.raises(StaleWriteError, match="r3"):
        store.commit(again)
    assert {r.status for r in store.find_runs(ids).values()} == {RunStatus.RUNNING}


def test_coalesced_batch_writes_the_final_state(store: RunStore) -> None:
    commit(store, make_run("r0"))
    batch = Batch()
    run = make_run()
    batch.insert_run(run)
    run.status = RunStatus.RUNNING
    batch.update_run(run, RunStatus.QUEUED)  # coalesced into the insert
    task = make_task()
    batch.insert_task(task)
    task.status = TaskStatus.QUEUED
    task.seq = 7
    batch.update_task(task, TaskStatus.PENDING)
    other = make_run("r0", status=RunStatus.RUNNING)
    batch.update_run(other, RunStatus.QUEUED)
    other.status = RunStatus.COMPLETED
    batch.update_run(other, RunStatus.RUNNING)  # coalesced: queued -> completed in one write
    assert len(batch.run_updates) == 1
    store.commit(batch)

    assert store.find_runs(["r1"])["r1"].status is RunStatus.RUNNING
    assert store.get_tasks(["r1"])[0].status is TaskStatus.QUEUED
    assert store.get_tasks(["r1"])[0].seq == 7
    assert store.find_runs(["r0"])["r0"].status is RunStatus.COMPLETED


def test_idempotency_keys(store: RunStore) -> None:
    commit(store, make_run("r1", idempotency_key="k1"), make_run("r2"), make_run("r3"))
    assert store.find_idempotency_keys(["k1", "k2"]) == {"k1": "r1"}
    assert store.find_idempotency_keys([]) == {}

    commit(store, make_run("r1", idempotency_key="k1"))  # the same run again: a no-op
    with pytest.raises(StaleWriteError, match=r"k1|idempotency"):
        commit(store, make_run("r4", idempotency_key="k1"), make_task("r4"))
    assert store.find_runs(["r4"]) == {}
    assert store.get_tasks(["r4"]) == []
    with pytest.raises(StaleWriteError):
        commit(store, make_run("r5", idempotency_key="k5"), make_run("r6", idempotency_key="k5"))
    assert store.find_runs(["r5", "r6"]) == {}
    assert store.find_idempotency_keys(["k1", "k5"]) == {"k1": "r1"}


def test_tasks_and_attempts_need_their_parents(store: RunStore) -> None:
    with pytest.raises(StaleWriteError):
        commit(store, make_task("ghost"))
    commit(store, make_run())
    with pytest.raises(StaleWriteError):
        commit(store, make_attempt(step="ghost"))
    assert store.get_tasks(["ghost", "r1"]) == []
    assert store.get_attempts("r1") == []


def test_find_runs_and_get_tasks(store: RunStore) -> None:
    commit(store, make_run("a"), make_run("b"), make_task("a", "s2"), make_task("a", "s1"))
    commit(store, make_task("b", "s1", 1), make_task("b", "s1", 0))
    assert sorted(store.find_runs(["b", "a", "zz"])) == ["a", "b"]
    assert store.find_runs([]) == {}
    got = [(t.run_id, t.step, t.map_index) for t in store.get_tasks(["b", "a"])]
    assert got == [("a", "s1", -1), ("a", "s2", -1), ("b", "s1", 0), ("b", "s1", 1)]
    assert store.get_tasks([]) == []


def test_list_runs_filters_order_and_limit(store: RunStore) -> None:
    records = [
        make_run("a1", workflow="a", created_at=T0 + timedelta(seconds=1)),
        make_run(
            "a2", workflow="a", created_at=T0 + timedelta(seconds=3), status=RunStatus.RUNNING
        ),
        make_run(
            "b1", workflow="b", created_at=T0 + timedelta(seconds=2), status=RunStatus.RUNNING
        ),
        make_run("a3", workflow="a", created_at=T0 + timedelta(seconds=3)),  # tie: by run_id
    ]
    commit(store, *records)
    assert [r.run_id for r in store.list_runs(RunFilter())] == ["a3", "a2", "b1", "a1"]
    assert [r.run_id for r in store.list_runs(RunFilter(workflow="a"))] == ["a3", "a2", "a1"]
    assert [r.run_id for r in store.list_runs(RunFilter(status=RunStatus.RUNNING))] == ["a2", "b1"]
    assert [r.run_id for r in store.list_runs(RunFilter("a", RunStatus.RUNNING))] == ["a2"]
    assert [r.run_id for r in store.list_runs(RunFilter(limit=2))] == ["a3", "a2"]
    assert store.list_runs(RunFilter(workflow="nope")) == []
    window = {
        "created_after": T0 + timedelta(seconds=2),
        "created_before": T0 + timedelta(seconds=3),
    }
    assert [r.run_id for r in store.list_runs(RunFilter(**window))] == ["b1"]  # after is inclusive
    later = store.list_runs(RunFilter("a", created_after=T0 + timedelta(seconds=2)))
    assert [r.run_id for r in later] == ["a3", "a2"]


def test_pending_deadlines_are_those_of_unfinished_runs(store: RunStore) -> None:
    due = T0 + timedelta(minutes=5)
    commit(
        store,
        make_run("open", deadline_at=due),
        make_run("done", deadline_at=due, status=RunStatus.COMPLETED),
        make_run("free"),
    )
    assert store.pending_deadlines() == [("open", due)]


def test_workflows_latest_by_version_and_list(store: RunStore) -> None:
    v1 = workflow("invoice", "jobs.invoice:fetch")
    v2 = workflow("invoice", "jobs.invoice:fetch_v2")
    other = workflow("alpha")
    assert v1.version != v2.version
    store.save_workflow(v1)
    store.save_workflow(v2)
    store.save_workflow(v1)  # saving an old version again does not make it the latest
    commit(store, other)
    assert store.get_workflow("invoice") == v2
    assert store.get_workflow("invoice", v1.version) == v1
    assert store.get_workflow("invoice", "nope") is None
    assert store.get_workflow("nope") is None
    assert store.list_workflows() == [other, v2]


def test_load_active(store: RunStore) -> None:
    commit(
        store,
        make_run("run", status=RunStatus.RUNNING),
        make_run("que"),
        make_run("done", status=RunStatus.COMPLETED),
        make_task("run", "a", status=TaskStatus.COMPLETED),
        make_task("run", "b", status=TaskStatus.RUNNING),
        make_task("que", "a"),
        make_task("done", "a", status=TaskStatus.COMPLETED),
        make_attempt("run", "a", status=AttemptStatus.SUCCEEDED),
        make_attempt("run", "b", 1, status=AttemptStatus.LOST),
        make_attempt("run", "b", 2),
        make_attempt("done", "a", status=AttemptStatus.SUCCEEDED),
    )
    runs, tasks, attempts = store.load_active()
    assert [r.run_id for r in runs] == ["run"]
    assert sorted((t.run_id, t.step) for t in tasks) == [("run", "a"), ("run", "b")]
    assert [(a.run_id, a.step, a.attempt) for a in attempts] == [("run", "b", 2)]


def test_running_attempts_are_those_of_the_runs_asked_for_and_running(store: RunStore) -> None:
    commit(
        store,
        make_run("a", status=RunStatus.RUNNING),
        make_run("b", status=RunStatus.RUNNING),
        make_task("a", "x", status=TaskStatus.RUNNING),
        make_task("b", "x", status=TaskStatus.RUNNING),
        make_attempt("a", "x", 1, status=AttemptStatus.FAILED),
        make_attempt("a", "x", 2),
        make_attempt("b", "x", 1),
    )
    found = store.running_attempts(["a", "nobody", "a"])
    assert [(at.run_id, at.attempt, at.status) for at in found] == [("a", 2, AttemptStatus.RUNNING)]
    assert sorted(at.run_id for at in store.running_attempts(["a", "b"])) == ["a", "b"]
    assert store.running_attempts([]) == []


def test_load_active_without_tasks(store: RunStore) -> None:
    commit(store, make_run("run", status=RunStatus.RUNNING), make_task("run", "a"))
    runs, tasks, _ = store.load_active(False)
    assert ([r.run_id for r in runs], tasks) == (["run"], [])


def test_live_tasks_leave_out_the_completed_items_of_wide_fan_outs_and_count_them(
    store: RunStore,
) -> None:
    done, queued, running = TaskStatus.COMPLETED, TaskStatus.QUEUED, TaskStatus.RUNNING
    commit(
        store,
        make_run("w", status=RunStatus.RUNNING),
        make_run("n", status=RunStatus.RUNNING),
        make_task("w", "wide", status=running, map_count=5),  # over the window of 3
        *(make_task("w", "wide", i, status=done) for i in range(3)),
        make_task("w", "wide", 3, status=running),  # the fifth is not created yet
        make_task("w", "other"),
        make_task("n", "narrow", status=running, map_count=2),
        make_task("n", "narrow", 0, status=done),
        make_task("n", "narrow", 1, status=queued),
        make_task("n", "plain"),
    )
    tasks, counts = store.live_tasks(["w", "n", "nope"], 3)
    assert sorted((t.run_id, t.step, t.map_index) for t in tasks) == [
        ("n", "narrow", -1),
        ("n", "narrow", 0),  # a fan-out within the window keeps its items
        ("n", "narrow", 1),
        ("n", "plain", -1),
        ("w", "other", -1),
        ("w", "wide", -1),
        ("w", "wide", 3),
    ]
    assert counts == {("w", "wide"): (4, 3), ("n", "narrow"): (2, 1)}


def test_a_compensating_run_leaves_its_wide_fan_outs_done_and_undone_items_in_the_store(
    store: RunStore,
) -> None:
    done, undone = TaskStatus.COMPLETED, TaskStatus.COMPENSATED
    commit(
        store,
        make_run("u", status=RunStatus.COMPENSATING),
        make_task("u", "wide", status=TaskStatus.FAILED, map_count=6),  # over the window of 3
        *(make_task("u", "wide", i, status=undone) for i in (0, 1)),
        make_task("u", "wide", 2, status=TaskStatus.COMPENSATING),
        *(make_task("u", "wide", i, status=done, result_json=f'"{i}"') for i in (5, 3)),
        make_task("u", "wide", 4, status=TaskStatus.COMPENSATION_FAILED),
    )
    tasks, counts = store.live_tasks(["u"], 3)
    assert sorted(t.map_index for t in tasks) == [-1, 2, 4]  # being undone, or failed to
    assert counts == {("u", "wide"): (6, 2)}
    page = store.completed_items("u", "wide", 0, 1)
    assert [(t.map_index, t.result_json) for t in page] == [(3, '"3"')]
    assert [t.map_index for t in store.completed_items("u", "wide", 4, 10)] == [5]
    assert store.completed_items("u", "wide", 6, 10) == []


def test_collect_items_reads_results_in_map_order(store: RunStore) -> None:
    done = TaskStatus.COMPLETED
    commit(
        store,
        make_run("j"),
        make_run("b"),
        make_task("j", "m", status=done, map_count=11),
        *(make_task("j", "m", i, status=done, result_json=f'"{i}"') for i in (10, 2, 0, 1)),
        make_task("j", "m", 3, status=done),  # a null result
        make_task("b", "m", status=done, map_count=2),
        make_task("b", "m", 1, status=done, result_ref="file:///x/1"),
        make_task("b", "m", 0, status=done, result_json="[1]"),
    )
    assert store.collect_items("j", "m") == ('["0","1","2",null,"10"]', None)
    assert store.collect_items("b", "m") == (
        None,
        '{"list": [{"json": "[1]"}, {"blob": "file:///x/1"}]}',
    )
    assert store.collect_items("nope", "m") == ("[]", None)
    # past the limit it stops reading: the coordinator never holds more than that
    assert store.collect_items("j", "m", 23) == ('["0","1","2",null,"10"]', None)
    with pytest.raises(CollectionTooLarge):
        store.collect_items("j", "m", 22)
    with pytest.raises(CollectionTooLarge):
        store.collect_items("b", "m", 10)


def test_item_results_read_a_page_of_completed_items_from_an_index(store: RunStore) -> None:
    done = TaskStatus.COMPLETED
    commit(
        store,
        make_run("p"),
        make_task("p", "m", status=TaskStatus.RUNNING, map_count=6),
        *(make_task("p", "m", i, status=done, result_json=f'"{i}"') for i in (5, 0, 2, 1)),
        make_task("p", "m", 3, status=done, result_ref="file:///x/3"),
        make_task("p", "m", 4, status=TaskStatus.QUEUED),  # not completed: not read
        make_task("p", "other", 0, status=done, result_json='"other"'),
    )
    assert store.item_results("p", "m", 0, 3) == [
        (0, '"0"', None),
        (1, '"1"', None),
        (2, '"2"', None),
    ]
    assert store.item_results("p", "m", 3, 10) == [(3, None, "file:///x/3"), (5, '"5"', None)]
    assert store.item_results("p", "m", 6, 10) == []
    assert store.item_results("nope", "m", 0, 10) == []


def test_page_queued_orders_by_priority_then_seq(store: RunStore) -> None:
    commit(store, make_run())
    specs = [(0, 5), (2, 9), (0, 1), (2, 3), (1, 7), (0, 2), (2, 4)]
    tasks = [
        make_task(step=f"s{seq}", status=TaskStatus.QUEUED, priority=p, seq=seq) for p, seq in specs
    ]
    tasks.append(make_task(step="other", status=TaskStatus.QUEUED, queue="other", seq=8))
    tasks.append(make_task(step="pending", status=TaskStatus.PENDING, priority=9, seq=6))
    commit(store, *tasks)
    expected = [(2, 3), (2, 4), (2, 9), (1, 7), (0, 1), (0, 2), (0, 5)]

    assert [(t.priority, t.seq) for t in store.page_queued("default", None, 100)] == expected
    pages: list[list[tuple[int, int]]] = []
    cursor: tuple[int, int] | None = None
    while True:
        page = store.page_queued("default", cursor, 3)
        if not page:
            break
        pages.append([(t.priority, t.seq) for t in page])
        cursor = (page[-1].priority, page[-1].seq)
    assert pages == [expected[:3], expected[3:6], expected[6:]]
    assert [t.step for t in store.page_queued("other", None, 10)] == ["other"]
    assert store.page_queued("nope", None, 10) == []
    assert store.count_queued() == 8
    assert store.queued_queues() == ["default", "other"]
    assert store.max_task_seq() == 9


def test_counters_on_an_empty_store(store: RunStore) -> None:
    assert store.count_queued() == 0
    assert store.queued_queues() == []
    assert store.max_task_seq() == 0
    assert store.load_active() == ([], [], [])


def test_get_logs_by_step(store: RunStore) -> None:
    commit(store, make_run(), make_run("r2"))
    lines = [make_log(step="a", message="1"), make_log(step="b", message="2")]
    commit(store, logs=lines)
    commit(store, logs=[make_log(step="a", message="3"), make_log("r2", step="a", message="x")])
    assert [line.message for line in store.get_logs(LogQuery("r1"))] == ["1", "2", "3"]
    assert [line.message for line in store.get_logs(LogQuery("r1", "a"))] == ["1", "3"]
    assert store.get_logs(LogQuery("r1", "zz")) == []
    assert [line.message for line in store.get_logs(LogQuery("r2"))] == ["x"]


# -- SQL only -------------------------------------------------------------------------


def test_migrations_create_the_schema_of_tables_py(sql_url: str) -> None:
    import sqlalchemy as sa
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from wfray.adapters.sqlalchemy import migrate, rows, tables
    from wfray.adapters.sqlalchemy.engine import create_engine

    migrate.upgrade(sql_url)
    migrate.upgrade(sql_url)  # already at head: nothing to do
    engine = create_engine(sql_url)
    try:
        migrate.check_current(engine)
        assert migrate.current_revisions(engine) == migrate.head_revisions()
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"version_table": migrate.VERSION_TABLE, "compare_type": True}
            )
            diff = compare_metadata(context, tables.metadata)
            names = set(sa.inspect(conn).get_table_names())
        assert diff == []
        assert {"workflows", "runs", "tasks", "attempts", "logs", "meta"} <= names
    finally:
        engine.dispose()
    for table, fields in [
        (tables.runs, rows.RUN_FIELDS),
        (tables.tasks, rows.TASK_FIELDS),
        (tables.attempts, rows.ATTEMPT_FIELDS),
        (tables.logs, rows.LOG_FIELDS),
    ]:
        assert set(fields) <= set(table.c.keys()), table.name


def test_concurrent_upgrades_migrate_once(sql_url: str) -> None:
    from wfray.adapters.sqlalchemy import migrate

    errors: list[BaseException] = []

    def run() -> None:
        try:
            migrate.upgrade(sql_url)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    store = sql_store(sql_url, create=False)
    store.close()


def test_an_empty_database_fails_the_schema_check(sql_url: str) -> None:
    from wfray.adapters.sqlalchemy import migrate
    from wfray.adapters.sqlalchemy.engine import create_engine

    engine = create_engine(sql_url)
    try:
        with pytest.raises(SchemaOutdatedError, match=r"no wfray schema.*wfray db upgrade"):
            migrate.check_current(engine)
    finally:
        engine.dispose()
    with pytest.raises(SchemaOutdatedError):
        sql_store(sql_url, create=False)


@pytest.mark.parametrize("stamp", ["0000", "base"])
def test_a_database_at_another_revision_fails_the_schema_check(sql_url: str, stamp: str) -> None:
    import sqlalchemy as sa

    from wfray.adapters.sqlalchemy import migrate
    from wfray.adapters.sqlalchemy.engine import create_engine

    migrate.upgrade(sql_url)
    engine = create_engine(sql_url)
    try:
        with engine.begin() as conn:
            table = migrate.VERSION_TABLE
            if stamp == "base":
                conn.execute(sa.text(f"DELETE FROM {table}"))
            else:
                conn.execute(sa.text(f"UPDATE {table} SET version_num = :v"), {"v": stamp})
        with pytest.raises(SchemaOutdatedError) as caught:
            migrate.check_current(engine)
    finally:
        engine.dispose()
    message = str(caught.value)
    if stamp == "base":
        assert "no wfray schema" in message
    else:
        assert "0000" in message
        assert "does not know" in message
    with pytest.raises(SchemaOutdatedError):
        sql_store(sql_url, create=False)


def test_a_store_migrated_by_a_newer_wfray_refuses_to_start_and_is_left_alone(
    sql_url: str,
) -> None:
    import sqlalchemy as sa

    from wfray.adapters.sqlalchemy import migrate
    from wfray.adapters.sqlalchemy.engine import create_engine
    from wfray.domain.versions import WFRAY_VERSION

    migrate.upgrade(sql_url)
    engine = create_engine(sql_url)
    table = migrate.VERSION_TABLE
    try:
        with engine.begin() as conn:  # as a later release's migration would leave it
            conn.execute(sa.text(f"UPDATE {table} SET version_num = '0099_future'"))
        with pytest.raises(SchemaOutdatedError) as caught:
            sql_store(sql_url)  # the coordinator's start: it migrates
        assert migrate.current_revisions(engine) == ("0099_future",)
    finally:
        engine.dispose()
    message = str(caught.value)
    assert "0099_future" in message and "a newer wfray migrated it" in message
    assert f"({WFRAY_VERSION}, schema {migrate.head_revisions()[0]})" in message


def test_an_unreachable_postgres_names_the_url_without_its_password() -> None:
    url = "postgresql+psycopg://wfray:s3cr3t-pw@127.0.0.1:1/wfray"
    with pytest.raises(StoreUnavailableError) as caught:
        sql_store(url)
    message = str(caught.value)
    assert "s3cr3t-pw" not in message
    assert "wfray:***@127.0.0.1:1/wfray" in message
    assert "expected a PostgreSQL server accepting connections at 127.0.0.1:1" in message
    assert caught.value.__cause__ is not None


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("not a url at all", "cannot parse"),
        ("postgresql+nodriver://u:s3cr3t-pw@h/db", "no database driver"),
        ("mysql://u:s3cr3t-pw@h/db", "unsupported database"),
        ("sqlite+pysqlcipher://u:s3cr3t-pw@/x.db", "no database driver"),
    ],
)
def test_a_bad_url_is_a_clear_error(url: str, match: str) -> None:
    with pytest.raises(StoreUnavailableError, match=match) as caught:
        sql_store(url)
    assert "s3cr3t-pw" not in str(caught.value)


def test_a_sqlite_file_that_cannot_be_opened_is_store_unavailable(tmp_path: Path) -> None:
    folder = tmp_path / "is-a-folder.db"
    folder.mkdir()
    with pytest.raises(StoreUnavailableError, match="SQLite database file") as caught:
        sql_store(f"sqlite:///{folder}")
    assert str(folder) in str(caught.value)


def test_sqlite_connections_get_the_pragmas(sqlite_file_url: str) -> None:
    import sqlalchemy as sa

    from wfray.adapters.sqlalchemy.store import SqlRunStore

    store = SqlRunStore(sqlite_file_url, sqlite_synchronous="normal")
    try:
        with store.engine.connect() as conn:
            pragma = {
                name: conn.execute(sa.text(f"PRAGMA {name}")).scalar()
                for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
            }
    finally:
        store.close()
    assert pragma == {
        "journal_mode": "wal",
        "synchronous": 1,
        "busy_timeout": 10000,
        "foreign_keys": 1,
    }
    with pytest.raises(StoreUnavailableError, match="sqlite_synchronous"):
        SqlRunStore(sqlite_file_url, sqlite_synchronous="sometimes")


def test_a_bulk_commit_uses_executemany(sql_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlalchemy as sa

    from wfray.adapters.sqlalchemy.fastpath import CompiledWrite
    from wfray.adapters.sqlalchemy.store import SqlRunStore

    store = SqlRunStore(sql_url)
    statements: list[tuple[str, bool]] = []

    def record(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        statements.append((sql.split("(")[0].strip(), many))

    sa.event.listen(store.engine, "before_cursor_execute", record)
    # SQLite's hot writes skip Core (and its events): they are counted where they run
    fast_run = CompiledWrite.run

    def counted(write: CompiledWrite, conn: Any, items: Any) -> int:
        items = list(items)
        statements.append((write.sql.split("(")[0].strip(), len(items) > 1))
        return fast_run(write, conn, items)

    monkeypatch.setattr(CompiledWrite, "run", counted)
    try:
        count = 2_000
        tasks = [make_task(step=f"s{i}", seq=i, status=TaskStatus.QUEUED) for i in range(count)]
        logs = [make_log(step=f"s{i}", message=f"line {i}") for i in range(count)]
        commit(store, make_run(), *tasks, logs=logs)
        batch = Batch()
        for task in tasks:
            batch.update_task(replace(task, status=TaskStatus.RUNNING), TaskStatus.QUEUED)
        store.commit(batch)
        store.commit(batch)  # replayed
        assert store.count_queued() == 0
        assert len(store.get_tasks(["r1"])) == count
        assert len(store.get_logs(LogQuery("r1"))) == count
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", record)
        store.close()
    writes = [(sql, many) for sql, many in statements if sql.startswith(("INSERT", "UPDATE"))]
    task_writes = [(sql, many) for sql, many in writes if "tasks" in sql]
    # One executemany per kind of change (a driver may split it into a few round trips).
    assert 3 <= len(task_writes) <= 12, task_writes
    assert all(many for _, many in task_writes), task_writes


def test_without_sane_rowcounts_a_select_checks_the_updates(sql_url: str) -> None:
    from wfray.adapters.sqlalchemy.store import SqlRunStore

    store = SqlRunStore(sql_url)
    store._sane_multi_rowcount = False  # as on a driver that cannot count executemany rows
    try:
        runs = [make_run(f"r{i}") for i in range(3)]
        commit(store, *runs)
        good = Batch()
        for run in runs:
            good.update_run(replace(run, status=RunStatus.RUNNING), RunStatus.QUEUED)
        store.commit(good)
        store.commit(good)
        stale = Batch()
        for run in runs:
            stale.update_run(replace(run, status=RunStatus.COMPLETED), RunStatus.QUEUED)
        with pytest.raises(StaleWriteError, match="r0: expected queued, found running"):
            store.commit(stale)
    finally:
        store.close()


@pytest.mark.postgres
def test_a_commit_cut_off_by_the_server_is_unavailable_then_replays(postgres_url: str) -> None:
    import sqlalchemy as sa

    from wfray.adapters.sqlalchemy.engine import create_engine
    from wfray.adapters.sqlalchemy.store import SqlRunStore

    store = SqlRunStore(postgres_url)
    admin = create_engine(postgres_url)
    fired: list[int] = []

    def kill_own_backend(conn: Any, cursor: Any, sql: str, *_: Any) -> None:
        if sql.startswith("INSERT INTO tasks") and not fired:
            fired.append(conn.connection.dbapi_connection.info.backend_pid)
            with admin.begin() as other:
                other.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": fired[0]})

    try:
        batch = Batch()
        batch.insert_run(make_run())
        batch.insert_task(make_task())
        sa.event.listen(store.engine, "before_cursor_execute", kill_own_backend)
        with pytest.raises(StoreUnavailableError, match="unavailable") as caught:
            store.commit(batch)
        assert "expected a PostgreSQL server" in str(caught.value)
        assert fired
        assert store.find_runs(["r1"]) == {}  # rolled back with the connection
        store.commit(batch)  # the replay; the pool hands out a fresh connection
        assert [t.step for t in store.get_tasks(["r1"])] == ["fetch"]
    finally:
        admin.dispose()
        store.close()


def test_counters_never_hand_out_a_value_twice(store: Any) -> None:
    import threading

    assert store.next_value("invoice") == 1
    assert store.next_value("invoice", 5) == 6
    assert store.next_value("other") == 1
    taken: list[int] = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(25):
            value = store.next_value("invoice")
            with lock:
                taken.append(value)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(taken) == list(range(7, 107))
    with pytest.raises(ValueError, match="at least 1"):
        store.next_value("invoice", 0)


# -- bounded reads and idempotency (the API's pages) ----------------------------------


def test_list_runs_pages_by_keyset_after_a_position(store: RunStore) -> None:
    # Three runs of one instant and two around it: a page boundary may fall inside the tie.
    tie = T0 + timedelta(seconds=5)
    commit(
        store,
        make_run("z-late", created_at=tie + timedelta(seconds=1)),
        *(make_run(rid, created_at=tie) for rid in ("t1", "t3", "t2")),
        make_run("a-early", created_at=tie - timedelta(seconds=1)),
    )
    order = ["z-late", "t3", "t2", "t1", "a-early"]
    assert [r.run_id for r in store.list_runs(RunFilter())] == order
    pages: list[list[str]] = []
    position = None
    while True:
        page = store.list_runs(RunFilter(limit=2, position=position))
        if not page:
            break
        pages.append([r.run_id for r in page])
        position = (page[-1].created_at, page[-1].run_id)
    assert pages == [["z-late", "t3"], ["t2", "t1"], ["a-early"]]
    # A position of the store's own instant in another zone finds the same rows.
    at_cest = tie.astimezone(CEST)
    assert [r.run_id for r in store.list_runs(RunFilter(position=(at_cest, "t2")))] == [
        "t1",
        "a-early",
    ]
    # A forged position (an id that does not exist) is still one bounded page.
    assert [r.run_id for r in store.list_runs(RunFilter(limit=1, position=(tie, "t25")))] == ["t2"]


def test_tasks_and_attempts_are_paged_by_key(store: RunStore) -> None:
    items = [make_task(step="b", map_index=i) for i in (1, 0, -1)] + [make_task(step="a")]
    tries = [make_attempt(step="b", attempt=n, map_index=0) for n in (2, 1)]
    commit(store, make_run(), *items, *tries, make_attempt(step="a"), make_run("other"))
    commit(store, make_task("other", "a"))

    first = store.page_tasks("r1", None, 3)
    assert [(t.step, t.map_index) for t in first] == [("a", -1), ("b", -1), ("b", 0)]
    rest = store.page_tasks("r1", (first[-1].step, first[-1].map_index), 3)
    assert [(t.step, t.map_index) for t in rest] == [("b", 1)]
    assert store.page_tasks("r1", ("b", 1), 3) == []
    got = [(a.step, a.map_index, a.attempt) for a in store.page_attempts("r1", None, 2)]
    assert got == [("a", -1, 1), ("b", 0, 1)]
    after = [(a.step, a.attempt) for a in store.page_attempts("r1", ("b", 0, 1), 5)]
    assert after == [("b", 2)]
    assert store.page_tasks("nope", None, 5) == []
    assert store.count_history("r1") == (4, 3)  # another run's rows are not counted
    assert store.count_history("nope") == (0, 0)


def test_log_lines_have_increasing_ids_and_are_read_after_one(store: RunStore) -> None:
    commit(store, make_run())
    commit(store, logs=[make_log(message=str(i)) for i in range(3)])
    commit(store, logs=[make_log(step="other", message="3"), make_log(message="4")])

    lines = store.get_logs(LogQuery("r1"))
    ids = [line.id for line in lines]
    assert all(isinstance(i, int) for i in ids) and ids == sorted(set(ids)), ids  # type: ignore[type-var]
    assert [line.message for line in store.get_logs(LogQuery("r1", after_id=ids[1]))] == [
        "2",
        "3",
        "4",
    ]
    assert [line.message for line in store.get_logs(LogQuery("r1", after_id=ids[1], limit=2))] == [
        "2",
        "3",
    ]
    assert [line.message for line in store.get_logs(LogQuery("r1", "fetch", ids[2]))] == ["4"]
    assert store.get_logs(LogQuery("r1", after_id=ids[-1])) == []


def test_a_run_keeps_the_hash_of_the_request_that_claimed_its_key(store: RunStore) -> None:
    commit(store, make_run("r1", idempotency_key="k1", request_hash="ab" * 32), make_run("r2"))

    found = store.find_runs(["r1", "r2"])
    assert found["r1"].request_hash == "ab" * 32
    assert found["r2"].request_hash is None
