"""`child_runs` on every store (memory, SQLite, PostgreSQL): oldest first, a limit kept by
the store (`wfray show` reads a bounded page of a run that started many)."""

from __future__ import annotations

from datetime import timedelta

from tests.contract.test_run_store import T0, make_run, sqlite_file_url, store  # noqa: F401
from wfray.application.batch import Batch
from wfray.application.ports import RunStore


def test_child_runs_come_oldest_first_and_a_limit_keeps_the_first(
    store: RunStore,  # noqa: F811  (the fixture)
) -> None:
    batch = Batch()
    batch.insert_run(make_run("parent"))
    batch.insert_run(make_run("other"))
    # created out of order, two in the same instant (then by run id, bytewise)
    for name, seconds in [("c-3", 3), ("c-1", 1), ("c-2b", 2), ("c-2a", 2), ("c-0", 0)]:
        batch.insert_run(
            make_run(name, created_at=T0 + timedelta(seconds=seconds), parent_run_id="parent")
        )
    batch.insert_run(make_run("o-0", parent_run_id="other"))
    store.commit(batch)

    every = [run.run_id for run in store.child_runs(["parent"])]
    assert every == ["c-0", "c-1", "c-2a", "c-2b", "c-3"]
    assert [run.run_id for run in store.child_runs(["parent"], 3)] == every[:3]
    assert [run.run_id for run in store.child_runs(["parent"], 10)] == every
    assert [run.run_id for run in store.child_runs(["parent", "other"], 2)] == ["c-0", "o-0"]
    assert store.child_runs(["nobody"], 5) == []
    (first,) = store.child_runs(["parent"], 1)
    assert first.parent_run_id == "parent" and first.created_at == T0
