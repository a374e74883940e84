"""The write side of InMemoryRunStore: batches, outcome marks, workflows, counters, claims.

It refuses what the SQL stores refuse (compare-and-set misses, missing parents, taken
idempotency keys, values PostgreSQL cannot hold), so tests on it see what production sees.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from datetime import datetime
from typing import TypeVar

from wfray.adapters.memory.store_base import InMemoryStoreBase
from wfray.application.batch import Batch, RejectedRow
from wfray.application.quarantine import APPLYING, PENDING, QuarantinedOutcome
from wfray.domain.claims import ClaimRecord
from wfray.domain.errors import StaleWriteError, StoreRejectedError
from wfray.domain.records import (
    RUN_FIXED,
    TASK_FIXED,
    AttemptKey,
    AttemptRecord,
    LogRecord,
    RunRecord,
    TaskRecord,
    as_row,
)
from wfray.domain.workflow import WorkflowSchema


class InMemoryRunWriter(InMemoryStoreBase):
    """Each call holds the lock for its whole change, like one transaction."""

    def commit(self, batch: Batch) -> None:
        with self._lock:
            self._check(batch)
            for schema in batch.workflows:
                self._save_workflow(schema)
            for run in batch.new_runs.values():
                if run.run_id not in self._runs:
                    self._runs[run.run_id] = copy.copy(run)
                    if run.idempotency_key is not None:
                        self._keys[run.idempotency_key] = run.run_id
            for run, _ in batch.run_updates.values():
                self._runs[run.run_id] = _updated(run, self._runs.get(run.run_id), RUN_FIXED)
            for key, task in batch.new_tasks.items():
                self._tasks.setdefault(key, copy.copy(task))
            for key, (task, _) in batch.task_updates.items():
                self._tasks[key] = _updated(task, self._tasks.get(key), TASK_FIXED)
            for akey, attempt in batch.new_attempts.items():
                self._attempts.setdefault(akey, copy.copy(attempt))
            for akey, (attempt, _) in batch.attempt_updates.items():
                self._attempts[akey] = copy.copy(attempt)
            for line_key, line in _log_keys(batch.logs):
                if line_key not in self._log_keys:  # a replayed batch adds no line twice
                    self._log_keys.add(line_key)
                    stored = copy.copy(line)
                    stored.id = self._next_log_id
                    self._next_log_id += 1
                    self._logs.append(stored)

    def rejected_rows(self, batch: Batch) -> list[RejectedRow]:
        """The rows a SQL database would refuse (what PostgreSQL refuses: NUL in text, lone
        surrogates, integers past 64 bits), and updates that find another status."""
        with self._lock:
            found = _refused(batch)
            updates: list[tuple[str, Record, object, Record | None]] = [
                *(("run", r, e, self._runs.get(r.run_id)) for r, e in batch.run_updates.values()),
                *(("task", t, e, self._tasks.get(k)) for k, (t, e) in batch.task_updates.items()),
                *(
                    ("attempt", a, e, self._attempts.get(k))
                    for k, (a, e) in batch.attempt_updates.items()
                ),
            ]
            for what, record, expected, stored in updates:
                if stored is None or stored.status not in (expected, record.status):
                    why = f"{what}: expected {expected}, found {_st(stored)}"
                    found.append(RejectedRow(record.run_id, what, _key(what, record), why))
            return found

    def _check(self, batch: Batch) -> None:
        """Compare-and-set: every update must find the expected (or, on replay, the new) status."""
        for run, expected in batch.run_updates.values():
            stored = self._runs.get(run.run_id)
            if stored is None or stored.status not in (expected, run.status):
                raise StaleWriteError(f"run {run.run_id}: expected {expected}, found {_st(stored)}")
        for key, (task, task_expected) in batch.task_updates.items():
            found = self._tasks.get(key)
            if found is None or found.status not in (task_expected, task.status):
                raise StaleWriteError(f"task {key}: expected {task_expected}, found {_st(found)}")
        for akey, (attempt, attempt_expected) in batch.attempt_updates.items():
            had = self._attempts.get(akey)
            if had is None or had.status not in (attempt_expected, attempt.status):
                raise StaleWriteError(
                    f"attempt {akey}: expected {attempt_expected}, found {_st(had)}"
                )
        self._check_inserts(batch)
        refused = _refused(batch)
        if refused:
            raise StoreRejectedError(refused[0].reason)

    def _check_inserts(self, batch: Batch) -> None:
        """What the SQL schema enforces: unique idempotency keys, tasks and attempts of rows
        that exist (stored or in this batch)."""
        claimed: dict[str, str] = {}
        for run in batch.new_runs.values():
            if run.idempotency_key is None or run.run_id in self._runs:
                continue
            holder = self._keys.get(run.idempotency_key) or claimed.get(run.idempotency_key)
            if holder is not None and holder != run.run_id:
                raise StaleWriteError(
                    f"run {run.run_id}: idempotency key {run.idempotency_key!r} "
                    f"is taken by run {holder}"
                )
            claimed[run.idempotency_key] = run.run_id
        for key, task in batch.new_tasks.items():
            known = task.run_id in self._runs or task.run_id in batch.new_runs
            if key not in self._tasks and not known:
                raise StaleWriteError(f"task {key}: run {task.run_id} does not exist")
        for akey in batch.new_attempts:
            tkey = akey[:3]
            known = tkey in self._tasks or tkey in batch.new_tasks
            if akey not in self._attempts and not known:
                raise StaleWriteError(f"attempt {akey}: task {tkey} does not exist")

    def note_undelivered(
        self, keys: Sequence[AttemptKey], epoch: int, now: datetime
    ) -> dict[AttemptKey, int]:
        with self._lock:
            marked = {k for k, v in self._aside.items() if v.status in (PENDING, APPLYING)}
            wanted = set(keys)
            for key in marked - wanted:
                del self._aside[key]
            deaths: dict[AttemptKey, int] = {}
            for key in dict.fromkeys(keys):
                if key not in marked:
                    if key not in self._aside:
                        self._aside[key] = QuarantinedOutcome(key, PENDING, "", now)
                        self._aside_epochs[key] = epoch
                        self._aside_deaths[key] = 0
                    continue
                count = self._aside_deaths.get(key, 0)
                if self._aside[key].status == APPLYING and self._aside_epochs[key] < epoch:
                    count += 1
                    self._aside[key] = QuarantinedOutcome(key, PENDING, "", now)
                    self._aside_epochs[key] = epoch
                    self._aside_deaths[key] = count
                deaths[key] = count
            return deaths

    def note_applying(self, keys: Sequence[AttemptKey], epoch: int, now: datetime) -> None:
        with self._lock:
            for key in keys:
                held = self._aside.get(key)
                if held is not None and held.status == PENDING:
                    self._aside[key] = QuarantinedOutcome(key, APPLYING, "", now)
                    self._aside_epochs[key] = epoch

    def quarantine(
        self, items: Sequence[tuple[AttemptKey, str, str]], epoch: int, now: datetime
    ) -> None:
        with self._lock:
            for key, status, reason in items:
                self._aside[key] = QuarantinedOutcome(key, status, reason, now)
                self._aside_epochs[key] = epoch

    def save_workflow(self, schema: WorkflowSchema) -> None:
        with self._lock:
            self._save_workflow(schema)

    def _save_workflow(self, schema: WorkflowSchema) -> None:
        key = (schema.name, schema.version)
        if key not in self._workflows:
            self._workflows[key] = schema
            self._workflow_order.append(key)

    def save_runtime_env(self, env_hash: str, env_json: str) -> None:
        with self._lock:
            self._envs.setdefault(env_hash, env_json)

    def next_value(self, counter: str, count: int = 1) -> int:
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        with self._lock:
            self._counters[counter] = self._counters.get(counter, 0) + count
            return self._counters[counter]

    def put_claim(self, claim: ClaimRecord, expected_version: int | None) -> bool:
        with self._lock:
            stored = self._claims.get(claim.key)
            if (None if stored is None else stored.version) != expected_version:
                return False
            self._claims[claim.key] = claim
            return True


def _updated(record: Updated, stored: Updated | None, fixed: tuple[str, ...]) -> Updated:
    """The row an update leaves: the record's, but for the fields fixed at creation, which
    stay as its insert wrote them (as the SQL stores write no update to them)."""
    row = copy.copy(record)
    if stored is not None:
        for name in fixed:
            setattr(row, name, getattr(stored, name))
    return row


def _log_keys(lines: list[LogRecord]) -> list[tuple[tuple[object, ...], LogRecord]]:
    """Each line with its identity: its fields plus its occurrence among identical lines of
    the batch (the SQL store hashes the same into its `line_key`)."""
    seen: dict[tuple[object, ...], int] = {}
    keyed: list[tuple[tuple[object, ...], LogRecord]] = []
    for line in lines:
        fields: tuple[object, ...] = (
            *(line.run_id, line.step, line.map_index, line.attempt),
            *(line.ts, line.level, line.logger, line.message),
        )
        occurrence = seen.get(fields, 0)
        seen[fields] = occurrence + 1
        keyed.append(((*fields, occurrence), line))
    return keyed


def _st(record: RunRecord | TaskRecord | AttemptRecord | None) -> str:
    return "nothing" if record is None else str(record.status)


_INT64 = 2**63
Record = RunRecord | TaskRecord | AttemptRecord
Updated = TypeVar("Updated", RunRecord, TaskRecord)


def _problem(value: object) -> str | None:
    if isinstance(value, str):
        if "\x00" in value:
            return "PostgreSQL text fields cannot contain NUL (0x00) bytes"
        try:
            value.encode()
        except UnicodeEncodeError as exc:
            return str(exc)
    elif isinstance(value, int) and not -_INT64 <= value < _INT64:
        return "integer out of range"
    return None


def _key(what: str, record: RunRecord | TaskRecord | AttemptRecord) -> tuple[object, ...]:
    if isinstance(record, RunRecord):
        return (record.run_id,)
    key: tuple[object, ...] = (record.run_id, record.step, record.map_index)
    return (*key, record.attempt) if isinstance(record, AttemptRecord) else key


def _refused(batch: Batch) -> list[RejectedRow]:
    """Rows holding a value a SQL database refuses, as SqlRunStore.rejected_rows names them."""
    found: list[RejectedRow] = []
    records: list[tuple[str, RunRecord | TaskRecord | AttemptRecord]] = [
        *(("run", r) for r, _ in batch.run_updates.values()),
        *(("task", t) for t, _ in batch.task_updates.values()),
        *(("attempt", a) for a, _ in batch.attempt_updates.values()),
        *(("run", r) for r in batch.new_runs.values()),
        *(("task", t) for t in batch.new_tasks.values()),
        *(("attempt", a) for a in batch.new_attempts.values()),
    ]
    for what, record in records:
        for value in as_row(record).values():
            why = _problem(value)
            if why is not None:
                found.append(RejectedRow(record.run_id, what, _key(what, record), why))
                break
    for index, line in enumerate(batch.logs):
        for value in as_row(line).values():
            why = _problem(value)
            if why is not None:
                key = (line.run_id, line.step, line.map_index, line.attempt, index)
                found.append(RejectedRow(line.run_id, "log", key, why))
                break
    return found
