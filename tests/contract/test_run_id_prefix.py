"""`run_ids_starting`, the lookup behind abbreviated run ids, on memory, SQLite and PostgreSQL.

The SQL stores use a byte-order range on the primary key, not LIKE: `_` and `%` are plain
characters of a run id, case matters, and the answer is bounded by `limit`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from wfray.adapters.memory.store import InMemoryRunStore
from wfray.adapters.sqlalchemy.reader import successor
from wfray.application.batch import Batch
from wfray.application.ports import RunStore
from wfray.domain.records import RunRecord
from wfray.domain.status import RunStatus
from wfray.entrypoints.cli_ids import resolve_run_id, short_ids
from wfray.entrypoints.cli_support import CliError, Exit

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
IDS = [
    "abc_1",
    "abcX1",
    "abc%2",
    "ABC3",
    "abd",
    "ab",
    "f" * 32,
    "f" * 31 + "e",
    "zz~",
    "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
]


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunStore]:
    made: RunStore
    if request.param == "memory":
        made = InMemoryRunStore()
    else:
        from wfray.adapters.sqlalchemy.store import SqlRunStore

        url = (
            f"sqlite:///{tmp_path / 'wfray.db'}"
            if request.param == "sqlite"
            else request.getfixturevalue("postgres_url")
        )
        made = SqlRunStore(url)
    batch = Batch()
    for run_id in IDS:
        batch.insert_run(
            RunRecord(
                run_id=run_id,
                workflow="w",
                version="v1",
                status=RunStatus.QUEUED,
                input_json="{}",
                created_at=T0,
            )
        )
    made.commit(batch)
    yield made
    made.close()


def test_prefix_lookup_is_literal_case_sensitive_ordered_and_bounded(store: RunStore) -> None:
    assert store.run_ids_starting("abc", 10) == ["abc%2", "abcX1", "abc_1"]  # byte order
    assert store.run_ids_starting("abc_", 10) == ["abc_1"]  # `_` is no wildcard
    assert store.run_ids_starting("abc%", 10) == ["abc%2"]  # nor is `%`
    assert store.run_ids_starting("ABC", 10) == ["ABC3"]  # case matters
    assert store.run_ids_starting("ab", 2) == ["ab", "abc%2"]  # at most `limit`
    assert store.run_ids_starting("f" * 31, 10) == ["f" * 31 + "e", "f" * 32]
    assert store.run_ids_starting("zz~", 10) == ["zz~"]
    assert store.run_ids_starting("q", 10) == []
    assert store.run_ids_starting("0a1b2c3d", 10) == [IDS[-1]]


def test_resolution_exact_unique_ambiguous_unknown(store: RunStore) -> None:
    assert resolve_run_id(store, "ab") == "ab"  # an id as typed wins over longer ones
    assert resolve_run_id(store, "abd") == "abd"
    assert resolve_run_id(store, "0a1b") == IDS[-1]
    with pytest.raises(CliError) as ambiguous:
        resolve_run_id(store, "abc")
    assert ambiguous.value.code is Exit.USAGE
    assert "abc%2" in str(ambiguous.value) and "abc_1" in str(ambiguous.value)
    with pytest.raises(CliError) as unknown:
        resolve_run_id(store, "nope")
    assert unknown.value.code is Exit.NOT_FOUND
    for hostile in ("a\x1b[2J", "ab\n", "../ab", "ab%"):
        with pytest.raises(CliError) as refused:
            resolve_run_id(store, hostile)
        assert refused.value.code is Exit.NOT_FOUND
        assert "\x1b" not in str(refused.value) and "\n" not in str(refused.value)


def test_short_ids_are_unique_in_the_whole_store(store: RunStore) -> None:
    # only one of the two f...-ids is on the page; its prefix must still name it alone
    shown = short_ids(store, ["f" * 32, IDS[-1], "ab"])
    assert shown["f" * 32] == "f" * 32  # 31 shared characters: the whole id
    assert shown["ab"] == "ab"
    for run_id, prefix in shown.items():
        assert resolve_run_id(store, prefix) == run_id
    page = short_ids(store, [IDS[-1], "abd", "zz~"])
    assert page[IDS[-1]] == IDS[-1][:8]
    assert resolve_run_id(store, page[IDS[-1]]) == IDS[-1]


def test_successor_bounds_every_string_with_the_prefix() -> None:
    assert successor("abc") == "abd"
    assert successor("a\U0010ffff") == "b"
    assert successor("\U0010ffff") is None
    assert successor("a\ud7ff") == "a\ue000"


@pytest.mark.postgres
def test_on_a_database_not_sorted_bytewise_the_lookup_takes_byte_order(postgres_url: str) -> None:
    """The test database sorts as C.UTF-8 (bytewise: the range walks the primary key); on
    an en_US database the same query runs under COLLATE "C". Both answer alike."""
    from wfray.adapters.sqlalchemy.store import SqlRunStore

    store = SqlRunStore(postgres_url)
    try:
        batch = Batch()
        for run_id in IDS:
            batch.insert_run(
                RunRecord(
                    run_id=run_id,
                    workflow="w",
                    version="v1",
                    status=RunStatus.QUEUED,
                    input_json="{}",
                    created_at=T0,
                )
            )
        store.commit(batch)
        assert store.run_ids_starting("abc", 10) == ["abc%2", "abcX1", "abc_1"]
        assert store._bytewise_collation is True
        store._bytewise_collation = False  # as an en_US.UTF-8 database would be
        assert store.run_ids_starting("abc", 10) == ["abc%2", "abcX1", "abc_1"]
        assert store.run_ids_starting("ABC", 10) == ["ABC3"]
    finally:
        store.close()
