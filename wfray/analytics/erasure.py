"""Erasure: remove one data subject's runs everywhere wfray keeps them.

`erase(store_url, Selector(...))` finds the runs a selector names (run ids, input fields,
tags) in the store and in Parquet archives (`wfray retention --archive`, `wfray export`),
adds their child runs, and removes their rows (runs, tasks, attempts, logs, claims and
set-aside outcomes; a run's idempotency key is on its row), their blobs, and their rows in
the archives' Parquet files (each rewritten without them, atomically). Active runs are
refused (`ActiveRunsError`) unless the caller cancels them first (`cancel=`). Every call is
recorded in the audit trail with the selector and the counts, never the erased data.

Runs carry no tags of their own: `--tag customer=42` is the top-level input field
`customer` holding 42 (or "42"); `--input-field customer.id=42` follows a dotted path.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from wfray.adapters.blob import blob_store
from wfray.adapters.sqlalchemy.audit import SqlAuditLog
from wfray.adapters.sqlalchemy.erasure import RunRow, SqlErasureStore
from wfray.domain.audit import Origin, audit_entry
from wfray.domain.errors import ActiveRunsError
from wfray.domain.status import RUN_FINISHED

_FINISHED = {status.value for status in RUN_FINISHED}


@dataclass(frozen=True, slots=True)
class Selector:
    """Whose runs: these run ids, and runs whose input has these (dotted path, value) fields.

    A run is chosen when its id is listed or every field matches. A value matches the
    field's JSON value (`42` matches 42, `"42"` and `42` both match the string "42").
    """

    run_ids: tuple[str, ...] = ()
    fields: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not self.run_ids and not self.fields:
            raise ValueError("an erasure needs run ids or input fields to select runs")
        for path, _ in self.fields:
            if not path or any(not part for part in path.split(".")):
                raise ValueError(f"input field path {path!r} is empty or has an empty part")

    def describe(self) -> dict[str, Any]:
        """The selector as the audit trail keeps it."""
        shown: dict[str, Any] = {f"input.{path}": value for path, value in self.fields}
        if self.run_ids:
            shown["run_ids"] = len(self.run_ids)
        return shown

    def picks(self, run_id: str, input_json: str | None) -> bool:
        if run_id in self.run_ids:
            return True
        if not self.fields or input_json is None:
            return False
        try:
            data = json.loads(input_json)
        except ValueError:
            return False
        return all(_matches(_at(data, path), value) for path, value in self.fields)


_MISSING = object()


def _at(data: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return _MISSING
    return data


def _matches(found: Any, text: str) -> bool:
    if found is _MISSING:
        return False
    if isinstance(found, str):
        return found == text or json.dumps(found) == text
    try:
        wanted = json.loads(text)
    except ValueError:
        return False
    # 1 is not true: the types must agree (numbers among themselves)
    if isinstance(found, bool) or isinstance(wanted, bool):
        return found is wanted
    return bool(type(found) in (int, float) and type(wanted) in (int, float) and found == wanted)


@dataclass(frozen=True, slots=True)
class ErasureReport:
    """What `erase` removed (or, with `dry_run`, would remove)."""

    selector: Selector
    runs: int = 0  # runs chosen: in the store or in an archive
    deleted: dict[str, int] = field(default_factory=dict)  # store rows per table
    blobs: int = 0  # runs whose blob folder went
    archive_rows: dict[str, int] = field(default_factory=dict)  # Parquet file -> rows removed
    cancelled: int = 0
    dry_run: bool = False

    @property
    def matched(self) -> bool:
        return self.runs > 0

    def summary(self) -> str:
        if not self.matched:
            return "nothing matched: no run in the store or the archives fits the selector"
        verb = "would remove" if self.dry_run else "removed"
        rows = ", ".join(f"{n} {table}" for table, n in self.deleted.items())
        archived = sum(self.archive_rows.values())
        return (
            f"{verb} {self.runs} runs ({rows or 'no store rows'}), the blobs of {self.blobs} "
            f"runs, {archived} archived rows in {len(self.archive_rows)} Parquet files"
        )


Cancel = Callable[[list[str]], None]  # cancels these runs and returns once they finished


def erase(
    store_url: str,
    selector: Selector,
    *,
    blob_root: str | None = None,
    archive_dirs: Sequence[Path] = (),
    cancel: Cancel | None = None,
    origin: Origin | None = None,
    dry_run: bool = False,
) -> ErasureReport:
    """Erase the runs `selector` picks (see the module docstring); the report of it.

    Raises:
        ActiveRunsError: some are active and no `cancel` was given (nothing is erased).
    """
    store = SqlErasureStore.open(store_url)
    audit = SqlAuditLog(store_url, create=False)
    params = {**selector.describe(), "archives": len(archive_dirs), "dry_run": dry_run}

    def note(outcome: str) -> None:
        audit.record([audit_entry(datetime.now(UTC), origin, "erasure", (), params, outcome)])

    try:
        report = _erase(store, selector, blob_root, archive_dirs, cancel, dry_run)
    except ActiveRunsError:
        note("refused: some of the runs are still active")
        raise
    except Exception as exc:
        note(f"error: {type(exc).__name__}")  # its message may name the subject's runs
        raise
    else:
        note(report.summary())
        return report
    finally:
        audit.close()
        store.close()


def _erase(
    store: SqlErasureStore,
    selector: Selector,
    blob_root: str | None,
    archive_dirs: Sequence[Path],
    cancel: Cancel | None,
    dry_run: bool,
) -> ErasureReport:
    def wanted(row: RunRow) -> bool:
        return selector.picks(row[0], row[2])

    stored = store.matching(wanted)
    files = [f for folder in archive_dirs for f in sorted(Path(folder).glob("*.parquet"))]
    archived = _archived_runs(files, selector)
    chosen = sorted(set(stored) | archived)
    if not chosen:
        return ErasureReport(selector, dry_run=dry_run)
    active = sorted(r for r, status in stored.items() if status not in _FINISHED)
    if active and not dry_run:
        if cancel is None:
            raise ActiveRunsError(
                f"{len(active)} of the runs to erase are still active ({', '.join(active[:5])}"
                f"{', ...' if len(active) > 5 else ''}): cancel them first, or pass --cancel"
            )
        cancel(active)
    if dry_run:
        counts = {f.name: _rows_of(f, chosen) for f in files}
        return ErasureReport(selector, len(chosen), {"runs": len(stored)}, 0, counts, 0, True)
    # every chosen id: rows that outlived an archived run (claims, set-aside outcomes) go too
    deleted = store.delete(chosen)
    blobs = blob_store(blob_root).delete_runs(chosen) if blob_root else 0
    rewritten = {str(f): _drop_rows(f, chosen) for f in files}
    return ErasureReport(
        selector,
        runs=len(chosen),
        deleted=deleted,
        blobs=blobs,
        archive_rows={name: n for name, n in rewritten.items() if n},
        cancelled=len(active),
    )


def _archived_runs(files: Sequence[Path], selector: Selector) -> set[str]:
    """Runs the selector picks in the archives' run tables, with their archived children."""
    found: set[str] = set()
    parents: dict[str, list[str]] = {}
    for path in files:
        names = set(pq.read_schema(path).names)
        if not {"run_id", "input_json"} <= names:
            continue
        columns = ["run_id", "input_json", *(["parent_run_id"] if "parent_run_id" in names else [])]
        table = pq.read_table(path, columns=columns).to_pydict()
        parent_of = table.get("parent_run_id", [None] * len(table["run_id"]))
        for run_id, input_json, parent in zip(
            table["run_id"], table["input_json"], parent_of, strict=True
        ):
            if selector.picks(run_id, input_json):
                found.add(run_id)
            if parent is not None:
                parents.setdefault(parent, []).append(run_id)
    waiting = list(found)
    while waiting:
        for child in parents.get(waiting.pop(), []):
            if child not in found:
                found.add(child)
                waiting.append(child)
    return found


def _rows_of(path: Path, run_ids: list[str]) -> int:
    if "run_id" not in pq.read_schema(path).names:
        return 0
    column = pq.read_table(path, columns=["run_id"]).column("run_id")
    return int(pc.sum(pc.is_in(column, value_set=pa.array(run_ids))).as_py() or 0)


def _drop_rows(path: Path, run_ids: list[str]) -> int:
    """Rewrite the Parquet file without the rows of `run_ids` (atomically, fsynced);
    how many rows went."""
    if "run_id" not in pq.read_schema(path).names:
        return 0
    table = pq.read_table(path)
    gone = pc.is_in(table.column("run_id"), value_set=pa.array(run_ids))
    removed = int(pc.sum(gone).as_py() or 0)
    if not removed:
        return 0
    kept = table.filter(pc.invert(gone))
    partial = path.with_name(f".{path.name}.erasing")
    try:
        pq.write_table(kept, partial, compression="zstd")
        fd = os.open(partial, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return removed
