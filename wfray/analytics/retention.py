"""Retention: delete (and optionally archive to Parquet) finished runs past a given age.

Runs go in batches, each in its own short write transaction (`BEGIN IMMEDIATE` on SQLite;
the chosen runs locked `FOR UPDATE` on PostgreSQL), so the coordinator is never blocked
for long and a resumed run cannot be deleted under it. A run is kept while it, its parent
or any of its children is still active. With an archive folder, each batch's rows are
written to Parquet (one file per table and batch, under a timestamped name) and fsynced
before the delete commits; the file gets its final name after the commit, so an archive
never holds rows that are still in the store under a final name. With a blob root, the
blob folders of a batch's runs are deleted once its delete has committed (a blob deleted
before would be lost to a run that stays if the commit failed).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import sqlalchemy as sa

from wfray.adapters.blob import FsBlobStore, blob_store
from wfray.adapters.sqlalchemy.engine import WRITE, unavailable_as_store_error
from wfray.adapters.sqlalchemy.tables import attempts, claims, logs, runs, tasks
from wfray.analytics.arrow import SCHEMAS, open_engine, stream_batches
from wfray.analytics.export import write_parquet
from wfray.domain.status import RUN_FINISHED

FINISHED = sorted(status.value for status in RUN_FINISHED)
# Children before parents: attempts reference tasks, tasks reference runs. A deleted run's
# claims (done or died: the run finished) go with it; a claim protects its key only as long
# as its holder's run is kept, and the claims of other runs are never touched.
DELETE_ORDER = (logs, attempts, tasks, claims, runs)
ARCHIVE_ORDER = (runs, tasks, attempts, logs)


@dataclass(frozen=True, slots=True)
class RetentionReport:
    """What `apply_retention` removed.

    Attributes:
        cutoff: runs that finished before this instant were eligible.
        runs, tasks, attempts, logs, claims: rows deleted per table.
        batches: transactions committed.
        blobs: runs whose blob folder was deleted (large results of any attempt).
        archive_files: Parquet files written, in order (empty without an archive folder).
    """

    cutoff: datetime
    runs: int = 0
    tasks: int = 0
    attempts: int = 0
    logs: int = 0
    claims: int = 0
    batches: int = 0
    blobs: int = 0
    archive_files: tuple[Path, ...] = field(default_factory=tuple)

    @property
    def counts(self) -> dict[str, int]:
        return {
            "runs": self.runs,
            "tasks": self.tasks,
            "attempts": self.attempts,
            "logs": self.logs,
        }


def apply_retention(
    store_url: str,
    older_than: timedelta,
    archive_dir: Path | None = None,
    *,
    now: datetime | None = None,
    batch: int = 500,
    blob_root: str | None = None,
) -> RetentionReport:
    """Delete finished runs that finished more than `older_than` ago, with their rows.

    Args:
        store_url: the wfray store (SQLite or PostgreSQL).
        older_than: the age past which a finished run goes (e.g. `timedelta(days=30)`).
        archive_dir: when given, every deleted row is first written there as Parquet
            (`<table>-<UTC timestamp>-<batch>.parquet`); appending runs never overwrite.
        now: the present, for tests; the current time by default.
        batch: runs per transaction.
        blob_root: the blob store of the runs' large results (`Settings.blob_root`); the
            blobs of every deleted run go with it. An archive keeps the rows, not the blobs.
    """
    if older_than < timedelta(0):
        raise ValueError(f"older_than must not be negative, got {older_than}")
    if batch < 1:
        raise ValueError(f"batch must be a positive number of runs, got {batch}")
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError(f"now must be an aware datetime (with a time zone), got {now!r}")
    cutoff = (now - older_than).astimezone(UTC)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    if archive_dir is not None:
        Path(archive_dir).mkdir(parents=True, exist_ok=True)
    totals = dict.fromkeys(("runs", "tasks", "attempts", "logs", "claims"), 0)
    files: list[Path] = []
    batches = 0
    blobs_deleted = 0
    blobs = None if blob_root is None else blob_store(blob_root)
    engine = open_engine(store_url)
    writer = engine.execution_options(**{WRITE: True})
    try:
        while True:
            partial: list[tuple[Path, Path]] = []
            try:
                with unavailable_as_store_error(engine.url), writer.begin() as conn:
                    run_ids = _eligible(conn, cutoff, batch)
                    if not run_ids:
                        break
                    if archive_dir is not None:
                        name = f"{stamp}-{batches:06d}.parquet"
                        partial = _archive(conn, run_ids, Path(archive_dir), name)
                    for table in DELETE_ORDER:
                        deleted = conn.execute(sa.delete(table).where(table.c.run_id.in_(run_ids)))
                        totals[table.name] += deleted.rowcount
            except BaseException:
                for written, _ in partial:  # the delete did not commit: its archive is void
                    written.unlink(missing_ok=True)
                raise
            blobs_deleted += _after_commit(partial, files, blobs, run_ids)
            batches += 1
    finally:
        engine.dispose()
    return RetentionReport(
        cutoff=cutoff,
        batches=batches,
        blobs=blobs_deleted,
        archive_files=tuple(files),
        **totals,
    )


def _after_commit(
    partial: list[tuple[Path, Path]],
    files: list[Path],
    blobs: FsBlobStore | None,
    run_ids: list[str],
) -> int:
    """A batch committed: its archive files take their final names and its runs' blobs go;
    returns how many runs had blobs."""
    for written, final in partial:
        os.replace(written, final)
        files.append(final)
    return 0 if blobs is None else blobs.delete_runs(run_ids)


def _eligible(conn: sa.Connection, cutoff: datetime, batch: int) -> list[str]:
    related = runs.alias("related")
    active_relative = sa.exists().where(
        sa.or_(
            related.c.parent_run_id == runs.c.run_id,
            related.c.run_id == runs.c.parent_run_id,
        ),
        related.c.status.not_in(FINISHED),
    )
    query = (
        sa.select(runs.c.run_id)
        .where(
            runs.c.status.in_(FINISHED),
            runs.c.finished_at < cutoff,
            ~active_relative,
        )
        .order_by(runs.c.finished_at, runs.c.run_id)
        .limit(batch)
    )
    if conn.dialect.name == "postgresql":
        # Lock the chosen runs so the coordinator cannot resume one before it is deleted.
        query = query.with_for_update(of=runs, skip_locked=True)
    return list(conn.execute(query).scalars())


def _archive(
    conn: sa.Connection, run_ids: list[str], folder: Path, name: str
) -> list[tuple[Path, Path]]:
    """Write the rows of `run_ids` to hidden files; (hidden, final) path pairs."""
    pairs: list[tuple[Path, Path]] = []
    for table in ARCHIVE_ORDER:
        final = folder / f"{table.name}-{name}"
        hidden = folder / f".{final.name}.pending"
        batches = stream_batches(conn, table, [table.c.run_id.in_(run_ids)])
        reader = pa.RecordBatchReader.from_batches(SCHEMAS[table.name], batches)
        write_parquet(reader, hidden)
        _fsync(hidden)
        pairs.append((hidden, final))
    return pairs


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
