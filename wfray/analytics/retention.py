"""Retention: delete (and optionally archive to Parquet) finished runs past a given age.

Runs go in batches, each in its own short write transaction of the store (a
`RetentionStore`, retention_store.py), so the coordinator is never blocked for long and a
resumed run cannot be deleted under it. A run is kept while it, its parent or any of its
children is still active. With an archive folder, each batch's rows are written to Parquet
(one file per table and batch, under a timestamped name) and fsynced before the delete
commits; the file gets its final name after the commit, so an archive never holds rows
that are still in the store under a final name. With a blob root, the blob folders of a
batch's runs are deleted once its delete has committed (a blob deleted before would be
lost to a run that stays if the commit failed).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from wfray.adapters.blob import FsBlobStore, blob_store
from wfray.adapters.package_copies import PackageCopies
from wfray.adapters.sqlalchemy.audit import SqlAuditLog
from wfray.adapters.sqlalchemy.retention import SqlRetentionStore
from wfray.analytics.export import write_parquet
from wfray.analytics.retention_store import RetentionBatch, RetentionStore
from wfray.domain.audit import Origin, audit_entry
from wfray.domain.code_env import gcs_packages

log = logging.getLogger("wfray.retention")

ARCHIVE_ORDER = ("runs", "tasks", "attempts", "logs")


@dataclass(frozen=True, slots=True)
class RetentionReport:
    """What `apply_retention` removed.

    Attributes:
        cutoff: runs that finished before this instant were eligible.
        runs, tasks, attempts, logs, claims: rows deleted per table.
        outcome_quarantine: quarantined outcomes of the deleted runs (coordinator/poison.py),
            deleted with them (diagnostics: not archived).
        batches: transactions committed.
        blobs: runs whose blob folder was deleted (large results of any attempt).
        packages: copies of code packages deleted (no kept run, schedule or subscription
            refers to them any more: adapters/package_copies.py).
        archive_files: Parquet files written, in order (empty without an archive folder).
    """

    cutoff: datetime
    runs: int = 0
    tasks: int = 0
    attempts: int = 0
    logs: int = 0
    claims: int = 0
    outcome_quarantine: int = 0
    batches: int = 0
    blobs: int = 0
    packages: int = 0
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
    origin: Origin | None = None,
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
        origin: who runs it, for the audit trail (which always gets an entry: "client" if
            not given; a failed run is recorded with its error).
    """
    cutoff = _cutoff(older_than, now, batch)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    if archive_dir is not None:
        Path(archive_dir).mkdir(parents=True, exist_ok=True)
    blobs = None if blob_root is None else blob_store(blob_root)
    store = SqlRetentionStore.open(store_url)
    audit = SqlAuditLog(store_url, create=False)
    params = {
        "older_than": str(older_than),
        "cutoff": cutoff.isoformat(),
        "archive": None if archive_dir is None else str(archive_dir),
    }
    try:
        report = prune(store, cutoff, archive_dir, stamp=stamp, batch=batch, blobs=blobs)
    except Exception as exc:
        outcome = f"error: {type(exc).__name__}: {exc}"
        audit.record([audit_entry(datetime.now(UTC), origin, "retention", (), params, outcome)])
        raise
    else:
        counts = {
            **report.counts,
            "claims": report.claims,
            "outcome_quarantine": report.outcome_quarantine,
            "blobs": report.blobs,
            "packages": report.packages,
        }
        outcome = ", ".join(f"{n} {table}" for table, n in counts.items()) + " deleted"
        audit.record([audit_entry(datetime.now(UTC), origin, "retention", (), params, outcome)])
        return report
    finally:
        audit.close()
        store.close()


def _cutoff(older_than: timedelta, now: datetime | None, batch: int) -> datetime:
    """The instant before which finished runs go, once the arguments are checked."""
    if older_than < timedelta(0):
        raise ValueError(f"older_than must not be negative, got {older_than}")
    if batch < 1:
        raise ValueError(f"batch must be a positive number of runs, got {batch}")
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError(f"now must be an aware datetime (with a time zone), got {now!r}")
    return (now - older_than).astimezone(UTC)


def prune(
    store: RetentionStore,
    cutoff: datetime,
    archive_dir: Path | None,
    *,
    stamp: str,
    batch: int,
    blobs: FsBlobStore | None,
) -> RetentionReport:
    """Delete the runs finished before `cutoff`, `batch` per transaction, until none is left.

    `archive_dir` (which must exist) gets each batch's rows as Parquet files named after
    `stamp` and the batch's number; `blobs` loses the blob folders of the deleted runs.
    """
    totals = dict.fromkeys(("runs", "tasks", "attempts", "logs", "claims", "outcome_quarantine"), 0)
    files: list[Path] = []
    batches = 0
    blobs_deleted = 0
    while pruned := _prune_batch(store, cutoff, batch, archive_dir, f"{stamp}-{batches:06d}"):
        for table, rows in pruned.deleted.items():
            totals[table] += rows
        blobs_deleted += _after_commit(pruned.archive, files, blobs, pruned.run_ids)
        batches += 1
    return RetentionReport(
        cutoff=cutoff,
        batches=batches,
        blobs=blobs_deleted,
        packages=0 if blobs is None else prune_packages(store, PackageCopies(blobs), cutoff),
        archive_files=tuple(files),
        **totals,
    )


def prune_packages(store: RetentionStore, copies: PackageCopies, recorded_since: datetime) -> int:
    """Delete the package copies that no env in use names (`RetentionStore.envs_in_use`:
    an env recorded since `recorded_since` counts, so a copy just taken for a run about to
    be submitted stays); returns how many went. Nothing goes while an env cannot be read:
    its packages are not known."""
    kept = copies.kept()  # before the envs are read: a copy taken meanwhile is not listed
    named: set[str] = set()
    for text in store.envs_in_use(recorded_since):
        try:
            named.update(gcs_packages(json.loads(text)))
        except (ValueError, TypeError, AttributeError):
            log.warning("retention: a runtime env cannot be read; no package copy deleted")
            return 0
    unused = [uri for uri in kept if uri not in named]
    for uri in unused:
        copies.delete(uri)
    return len(unused)


@dataclass(frozen=True, slots=True)
class _Pruned:
    """One committed batch: its runs, rows deleted per table, (hidden, final) archive files."""

    run_ids: list[str]
    deleted: dict[str, int]
    archive: list[tuple[Path, Path]]


def _prune_batch(
    store: RetentionStore, cutoff: datetime, limit: int, archive_dir: Path | None, name: str
) -> _Pruned | None:
    """Archive and delete one batch in one transaction; None when no run is eligible."""
    archive: list[tuple[Path, Path]] = []
    try:
        with store.transaction() as transaction:
            run_ids = transaction.eligible_runs(cutoff, limit)
            if not run_ids:
                return None
            if archive_dir is not None:
                archive = _archive(transaction, run_ids, Path(archive_dir), f"{name}.parquet")
            deleted = transaction.delete_runs(run_ids)
    except BaseException:
        for written, _ in archive:  # the delete did not commit: its archive is void
            written.unlink(missing_ok=True)
        raise
    return _Pruned(run_ids, deleted, archive)


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


def _archive(
    transaction: RetentionBatch, run_ids: list[str], folder: Path, name: str
) -> list[tuple[Path, Path]]:
    """Write the rows of `run_ids` to hidden files; (hidden, final) path pairs."""
    pairs: list[tuple[Path, Path]] = []
    for table in ARCHIVE_ORDER:
        final = folder / f"{table}-{name}"
        hidden = folder / f".{final.name}.pending"
        write_parquet(transaction.rows(table, run_ids), hidden)
        _fsync(hidden)
        pairs.append((hidden, final))
    return pairs


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
