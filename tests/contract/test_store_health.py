"""What the coordinator's health asks of the store (coordinator/health.py): named counters by
prefix, and the oldest queued run and the store's size, on every store."""

from __future__ import annotations

from datetime import timedelta

from tests.contract.test_run_store import (  # noqa: F401
    T0,
    commit,
    make_run,
    sqlite_file_url,
    store,
    workflow,
)
from wfray.application.ports import RunStore
from wfray.domain.status import RunStatus


def test_counters_are_read_by_prefix(store: RunStore) -> None:  # noqa: F811
    assert store.counters("wfray:coordinator:") == {}
    store.next_value("wfray:coordinator:starts:first_start")
    store.next_value("wfray:coordinator:starts:process_died", 2)
    store.next_value("invoice")
    store.next_value("wfray:coordinatorX")  # a longer name, not under the prefix
    assert store.counters("wfray:coordinator:") == {
        "wfray:coordinator:starts:first_start": 1,
        "wfray:coordinator:starts:process_died": 2,
    }
    assert store.counters("wfray:coordinator:starts:process") == {
        "wfray:coordinator:starts:process_died": 2
    }
    assert store.counters("%") == {}  # a prefix, not a pattern


def test_store_facts_name_the_oldest_queued_run(store: RunStore) -> None:  # noqa: F811
    assert store.store_facts().oldest_queued_run_at is None
    store.save_workflow(workflow("invoice"))
    store.save_workflow(workflow("report"))
    commit(
        store,
        make_run("old-done", status=RunStatus.COMPLETED, created_at=T0 - timedelta(hours=2)),
        make_run("running", status=RunStatus.RUNNING, created_at=T0 - timedelta(hours=1)),
        make_run("queued", created_at=T0 + timedelta(minutes=5)),
        make_run("older", workflow="report", created_at=T0 + timedelta(minutes=1)),
    )
    facts = store.store_facts()
    assert facts.oldest_queued_run_at == T0 + timedelta(minutes=1)
    if type(store).__name__ == "InMemoryRunStore":
        assert facts.size_bytes is None
    else:
        assert facts.size_bytes is not None and facts.size_bytes > 0
