"""The RunStore contract for uniqueness keys (`find_unique_runs`), on every adapter."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import sqlalchemy as sa
from alembic import command

from tests.contract.test_run_store import (  # noqa: F401
    T0,
    commit,
    make_run,
    sqlite_file_url,
    store,
)
from wfray.application.batch import Batch
from wfray.application.ports import RunStore
from wfray.domain.status import RunStatus


def test_the_run_holding_a_key_is_the_active_one_else_the_newest(store: RunStore) -> None:  # noqa: F811
    old = make_run("a-old", unique_key="k", status=RunStatus.COMPLETED)
    newer = make_run("a-new", unique_key="k", status=RunStatus.FAILED, created_at=T0 + timedelta(1))
    other_flow = make_run("b", workflow="weekly", unique_key="k", created_at=T0 + timedelta(2))
    plain = make_run("c", created_at=T0 + timedelta(3))
    commit(store, old, newer, other_flow, plain)

    found = store.find_unique_runs([("invoice", "k"), ("weekly", "k"), ("invoice", "none")])
    assert {ref: run.run_id for ref, run in found.items()} == {
        ("invoice", "k"): "a-new",  # both finished: the newest
        ("weekly", "k"): "b",  # keys are per workflow
    }
    assert found[("invoice", "k")].unique_key == "k"
    assert store.find_unique_runs([]) == {}

    # a finished run retried (active again) holds the key before a newer finished one
    batch = Batch()
    batch.update_run(replace(old, status=RunStatus.RUNNING), RunStatus.COMPLETED)
    store.commit(batch)
    assert store.find_unique_runs([("invoice", "k")])[("invoice", "k")].run_id == "a-old"


def test_many_runs_of_one_key_and_many_keys(store: RunStore) -> None:  # noqa: F811
    runs = [
        make_run(
            f"r{i:03}",
            unique_key=f"k{i % 7}",
            status=RunStatus.COMPLETED,
            created_at=T0 + timedelta(seconds=i),
        )
        for i in range(70)
    ]
    commit(store, *runs)
    found = store.find_unique_runs([("invoice", f"k{j}") for j in range(8)])
    assert {ref[1]: run.run_id for ref, run in found.items()} == {
        f"k{j}": f"r{63 + j:03}" for j in range(7)
    }


def test_migration_0010_keeps_stored_runs_and_schedules_and_goes_back(fresh_url: str) -> None:
    from wfray.adapters.sqlalchemy import migrate
    from wfray.adapters.sqlalchemy.store import SqlRunStore

    engine = sa.create_engine(fresh_url)
    try:
        migrate.upgrade(engine, "0009")
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO runs (run_id, workflow, version, status, input_json, created_at,"
                    " queue, priority, trigger) VALUES ('old', 'invoice', 'v1', 'completed',"
                    " '{}', :t, 'default', 0, 'client')"
                ),
                {"t": T0},
            )
        migrate.upgrade(engine)  # through 0010 and what followed it
        store = SqlRunStore(fresh_url, create=False)
        try:
            assert store.find_runs(["old"])["old"].unique_key is None
            commit(store, make_run("new", unique_key="k"))
            assert store.find_unique_runs([("invoice", "k")])[("invoice", "k")].run_id == "new"
        finally:
            store.close()
        with engine.begin() as conn:
            command.downgrade(migrate.alembic_config(conn), "0009")
        columns = {c["name"] for c in sa.inspect(engine).get_columns("runs")}
        assert "unique_key" not in columns and "request_hash" in columns
    finally:
        engine.dispose()
