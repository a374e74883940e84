"""The claim part of the RunStore contract, run on every adapter: memory, SQLite, PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from wfray.adapters.memory.store import InMemoryRunStore
from wfray.application.ports import RunStore
from wfray.domain.claims import ClaimRecord, Holder, StepLiveness, decide, finish

T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
TTL = timedelta(minutes=5)
A = Holder("run-a", "invoice", 2, 1)
B = Holder("run-b", "invoice", -1, 3)


@pytest.fixture
def sqlite_file_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'data' / 'wfray.db'}"


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest) -> Iterator[RunStore]:
    made: RunStore
    if request.param == "memory":
        made = InMemoryRunStore()
    else:
        from wfray.adapters.sqlalchemy.store import SqlRunStore

        name = "sqlite_file_url" if request.param == "sqlite" else "postgres_url"
        made = SqlRunStore(request.getfixturevalue(name))
    yield made
    made.close()


def fresh(holder: Holder = A, key: str = "inv:1") -> ClaimRecord:
    return decide(None, holder, key, TTL, StepLiveness.RUNNING, T0).record


def test_an_unclaimed_key_reads_as_none(store: RunStore) -> None:
    assert store.get_claim("nobody") is None
    assert store.claims_of(["run-a"]) == []


def test_a_claim_reads_back_as_written(store: RunStore) -> None:
    claim = fresh()
    assert store.put_claim(claim, None)
    assert store.get_claim("inv:1") == claim
    done = finish(claim, A, '{"invoice": "I-7", "städte": ["Łódź"]}', T0 + TTL)
    assert store.put_claim(done, 1)
    assert store.get_claim("inv:1") == done
    taken = decide(claim, B, "inv:1", TTL, StepLiveness.ENDED, T0).record
    assert taken.taken_over_from == A
    assert store.put_claim(taken, 1) is False  # decided on version 1; done made it 2
    assert store.get_claim("inv:1") == done


def test_a_takeover_keeps_the_dead_holder(store: RunStore) -> None:
    claim = fresh()
    store.put_claim(claim, None)
    taken = decide(claim, B, "inv:1", TTL, StepLiveness.ENDED, T0 + TTL).record
    assert store.put_claim(taken, 1)
    stored = store.get_claim("inv:1")
    assert stored == taken and stored is not None and stored.taken_over_from == A


def test_writes_are_compare_and_set_on_the_version(store: RunStore) -> None:
    claim = fresh()
    assert store.put_claim(claim, None)
    assert store.put_claim(fresh(B), None) is False  # the key is taken
    assert store.get_claim("inv:1") == claim
    stale = decide(claim, B, "inv:1", TTL, StepLiveness.ENDED, T0).record
    assert store.put_claim(stale, 7) is False
    assert store.get_claim("inv:1") == claim


def test_racing_first_claims_let_exactly_one_through(store: RunStore) -> None:
    wins: list[Holder] = []
    lock = threading.Lock()
    start = threading.Barrier(6)

    def race(i: int) -> None:
        holder = Holder(f"run-{i}", "mail", -1, 1)
        start.wait(timeout=30)
        if store.put_claim(fresh(holder, "mail:week-9"), None):
            with lock:
                wins.append(holder)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(wins) == 1
    stored = store.get_claim("mail:week-9")
    assert stored is not None and stored.holder == wins[0]


def test_claims_of_runs_lists_only_theirs(store: RunStore) -> None:
    store.put_claim(fresh(A, "k2"), None)
    store.put_claim(fresh(A, "k1"), None)
    store.put_claim(fresh(B, "k3"), None)
    assert [c.key for c in store.claims_of(["run-a"])] == ["k1", "k2"]
    assert [c.key for c in store.claims_of(["run-a", "run-b", "run-z"])] == ["k1", "k2", "k3"]
    assert store.claims_of([]) == []
    assert [c.key for c in store.claims_of(["run-a", "run-b"], limit=2)] == ["k1", "k2"]
