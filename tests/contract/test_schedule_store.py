"""The ScheduleStore contract, run on every adapter: memory, SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from wfray.adapters.memory.schedule_store import InMemoryScheduleStore
from wfray.application.ports import ScheduleStore
from wfray.domain.schedule import ScheduleSpec, TicksHandled

T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
LATER = T0 + timedelta(hours=1)


@pytest.fixture
def sqlite_file_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'data' / 'wfray.db'}"


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest) -> Iterator[ScheduleStore]:
    made: ScheduleStore
    if request.param == "memory":
        made = InMemoryScheduleStore()
    else:
        from wfray.adapters.sqlalchemy.schedule_store import SqlScheduleStore

        name = "sqlite_file_url" if request.param == "sqlite" else "postgres_url"
        made = SqlScheduleStore(request.getfixturevalue(name))
    yield made
    made.close()


def spec(name: str = "nightly", **kw: Any) -> ScheduleSpec:
    values: dict[str, Any] = {
        "name": name,
        "workflow": "invoices",
        "cron": "30 2 * * *",
        "tz": "Europe/Berlin",
        "input_json": '{"dry_run": false}',
        "queue": "billing",
        "priority": 5,
        "misfire": "all_within",
        "catchup_window_s": 3600.5,
        "grace_s": 2.5,
        "overlap": "buffer_one",
    }
    values.update(kw)
    return ScheduleSpec(**values)


def test_a_created_schedule_reads_back_whole_and_starts_firing_from_its_creation(
    store: ScheduleStore,
) -> None:
    assert store.upsert(spec(), T0) is True
    stored = store.get("nightly")
    assert stored is not None
    assert stored.spec == spec()
    assert (stored.last_fired, stored.created_at, stored.updated_at) == (T0, T0, T0)
    assert (stored.last_run_id, stored.buffered_at) == (None, None)
    assert stored.last_fired.tzinfo is not None
    assert store.get("other") is None


def test_upsert_replaces_the_spec_and_keeps_how_far_it_fired(store: ScheduleStore) -> None:
    store.upsert(spec(), T0)
    assert store.advance(TicksHandled("nightly", T0, LATER, "run-1", None), LATER)
    changed = spec(cron="0 3 * * *", misfire="skip", catchup_window_s=None, paused=True)
    assert store.upsert(changed, LATER + timedelta(minutes=1)) is False
    stored = store.get("nightly")
    assert stored is not None
    assert stored.spec == changed
    assert (stored.last_fired, stored.last_run_id, stored.created_at) == (LATER, "run-1", T0)
    assert stored.updated_at == LATER + timedelta(minutes=1)


def test_upsert_keeping_paused_leaves_the_stored_flag(store: ScheduleStore) -> None:
    store.upsert(spec(), T0)
    assert store.set_paused("nightly", True, T0)
    store.upsert(spec(priority=9), LATER, keep_paused=True)
    stored = store.get("nightly")
    assert stored is not None and stored.spec.paused and stored.spec.priority == 9


def test_load_all_lists_every_schedule_by_name(store: ScheduleStore) -> None:
    for name in ("weekly", "daily", "hourly"):
        store.upsert(spec(name), T0)
    assert [r.name for r in store.load_all()] == ["daily", "hourly", "weekly"]


def test_delete_removes_and_says_whether_there_was_one(store: ScheduleStore) -> None:
    store.upsert(spec(), T0)
    assert store.delete("nightly") is True
    assert store.delete("nightly") is False
    assert store.get("nightly") is None and store.load_all() == []


def test_advance_is_a_compare_and_set_on_last_fired(store: ScheduleStore) -> None:
    store.upsert(spec(), T0)
    assert store.advance(TicksHandled("nightly", T0, LATER, "run-1", LATER), LATER) is True
    # a racing scheduler that read last_fired = T0 loses and changes nothing
    assert (
        store.advance(TicksHandled("nightly", T0, LATER + timedelta(hours=1), "run-2", None), LATER)
        is False
    )
    assert store.advance(TicksHandled("missing", T0, LATER, None, None), LATER) is False
    stored = store.get("nightly")
    assert stored is not None
    assert (stored.last_fired, stored.last_run_id, stored.buffered_at) == (LATER, "run-1", LATER)


def test_of_many_racing_advances_exactly_one_wins(store: ScheduleStore) -> None:
    store.upsert(spec(), T0)
    wins: list[bool] = []
    start = threading.Barrier(4)

    def race(i: int) -> None:
        start.wait(timeout=10)
        wins.append(store.advance(TicksHandled("nightly", T0, LATER, f"run-{i}", None), LATER))

    threads = [threading.Thread(target=race, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(wins) == [False, False, False, True]


def test_resume_moves_last_fired_to_now_and_drops_the_buffered_tick(store: ScheduleStore) -> None:
    store.upsert(spec(), T0)
    store.advance(TicksHandled("nightly", T0, T0, "run-1", T0), T0)
    assert store.set_paused("nightly", True, LATER)
    paused = store.get("nightly")
    assert paused is not None and paused.spec.paused and paused.last_fired == T0
    resumed_at = LATER + timedelta(hours=5)
    assert store.set_paused("nightly", False, resumed_at)
    resumed = store.get("nightly")
    assert resumed is not None and not resumed.spec.paused
    assert (resumed.last_fired, resumed.buffered_at) == (resumed_at, None)
    assert store.set_paused("missing", True, LATER) is False


def test_resume_never_moves_last_fired_back(store: ScheduleStore) -> None:
    store.upsert(spec(), T0)
    store.advance(TicksHandled("nightly", T0, LATER, None, None), LATER)
    store.set_paused("nightly", True, T0)
    store.set_paused("nightly", False, T0)
    stored = store.get("nightly")
    assert stored is not None and stored.last_fired == LATER
