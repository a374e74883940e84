"""Retention through its store port: a batch whose delete fails leaves no archive behind.

The store is the real SQLite one (SqlRetentionStore); only its delete is made to fail, on
the second batch, as a full disk or a lost connection would.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest

from tests.analytics import T0
from wfray.adapters.blob import FsBlobStore
from wfray.adapters.sqlalchemy.retention import SqlRetentionBatch, SqlRetentionStore
from wfray.analytics import generate_history, read_table
from wfray.analytics.retention import prune
from wfray.domain.status import RUN_FINISHED

FINISHED = {status.value for status in RUN_FINISHED}


class DeleteFails(Exception):
    pass


class FailingBatch:
    """The real batch, except that its delete fails."""

    def __init__(self, batch: SqlRetentionBatch) -> None:
        self._batch = batch
        self.eligible_runs = batch.eligible_runs
        self.rows = batch.rows

    def delete_runs(self, run_ids: Sequence[str]) -> dict[str, int]:
        self._batch.delete_runs(run_ids)  # the rows go, then the transaction fails
        raise DeleteFails("the store went away before the commit")


class SecondDeleteFails:
    """The real SQLite store whose second transaction fails in its delete."""

    def __init__(self, store: SqlRetentionStore) -> None:
        self._store = store
        self.transactions = 0

    @contextmanager
    def transaction(self) -> Iterator[SqlRetentionBatch | FailingBatch]:
        self.transactions += 1
        with self._store.transaction() as batch:
            yield batch if self.transactions == 1 else FailingBatch(batch)


def test_a_batch_whose_delete_fails_keeps_its_rows_and_blobs_and_leaves_no_archive(
    sqlite_url: str, tmp_path: Path
) -> None:
    generate_history(sqlite_url, runs=60, days=3, seed=5, now=T0)
    cutoff = T0 - timedelta(hours=1)
    runs = read_table(sqlite_url, "runs").to_pylist()
    old = sorted(
        (r for r in runs if r["status"] in FINISHED and r["finished_at"] < cutoff),
        key=lambda r: (r["finished_at"], r["run_id"]),
    )
    assert len(old) > 20  # two batches of 10 at least
    blobs = FsBlobStore(str(tmp_path / "blobs"))
    for run in old:
        blobs.put(f"{run['run_id']}/result", b"large result")
    archive = tmp_path / "archive"
    archive.mkdir()
    store = SqlRetentionStore.open(sqlite_url)
    failing = SecondDeleteFails(store)

    try:
        with pytest.raises(DeleteFails):
            prune(failing, cutoff, archive, stamp="20250301T000000Z", batch=10, blobs=blobs)
    finally:
        store.close()

    first, second = [r["run_id"] for r in old[:10]], [r["run_id"] for r in old[10:20]]
    left = {r["run_id"] for r in read_table(sqlite_url, "runs").to_pylist()}
    assert not set(first) & left  # the first batch committed
    assert set(second) <= left  # the second rolled back, rows and all
    assert sorted(p.name for p in archive.iterdir()) == [
        f"{table}-20250301T000000Z-000000.parquet"
        for table in ("attempts", "logs", "runs", "tasks")
    ]  # the second batch's files, written before its delete, are gone, hidden ones too
    assert not any((tmp_path / "blobs" / run_id).exists() for run_id in first)
    assert all((tmp_path / "blobs" / run_id / "result").exists() for run_id in second)
