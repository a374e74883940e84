"""InMemoryRunStore: the RunStore contract in a dict, for tests and `wfray.testing`."""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from datetime import datetime

from wfray.application.batch import Batch, RejectedRow
from wfray.application.quarantine import APPLYING, PENDING, AttemptKey, QuarantinedOutcome
from wfray.domain.claims import ClaimRecord
from wfray.domain.errors import StaleWriteError, StoreRejectedError
from wfray.domain.records import AttemptRecord, LogRecord, RunRecord, TaskRecord, as_row
from wfray.domain.status import ACTIVE_RUNS, AttemptStatus, RunStatus, TaskStatus
from wfray.domain.uniqueness import holds_before
from wfray.domain.workflow import WorkflowSchema


class InMemoryRunStore:
    """Keeps copies, never the caller's objects, so it behaves like a database."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, int] = {}
        self._claims: dict[str, ClaimRecord] = {}
        self._workflows: dict[tuple[str, str], WorkflowSchema] = {}
        self._workflow_order: list[tuple[str, str]] = []
        self._runs: dict[str, RunRecord] = {}
        self._keys: dict[str, str] = {}
        self._tasks: dict[tuple[str, str, int], TaskRecord] = {}
        self._attempts: dict[tuple[str, str, int, int], AttemptRecord] = {}
        self._logs: list[LogRecord] = []
        self._log_keys: set[tuple[object, ...]] = set()
        self._aside: dict[AttemptKey, QuarantinedOutcome] = {}
        self._aside_epochs: dict[AttemptKey, int] = {}
        self._aside_deaths: dict[AttemptKey, int] = {}
        self._next_log_id = 1

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
                self._runs[run.run_id] = copy.copy(run)
            for key, task in batch.new_tasks.items():
                self._tasks.setdefault(key, copy.copy(task))
            for key, (task, _) in batch.task_updates.items():
                self._tasks[key] = copy.copy(task)
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

    def set_aside(
        self, items: Sequence[tuple[AttemptKey, str, str]], epoch: int, now: datetime
    ) -> None:
        with self._lock:
            for key, status, reason in items:
                self._aside[key] = QuarantinedOutcome(key, status, reason, now)
                self._aside_epochs[key] = epoch

    def set_aside_outcomes(self) -> list[QuarantinedOutcome]:
        with self._lock:
            found = [v for v in self._aside.values() if v.status not in (PENDING, APPLYING)]
        return sorted(found, key=lambda v: (v.at, v.key))

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

    def save_workflow(self, schema: WorkflowSchema) -> None:
        with self._lock:
            self._save_workflow(schema)

    def _save_workflow(self, schema: WorkflowSchema) -> None:
        key = (schema.name, schema.version)
        if key not in self._workflows:
            self._workflows[key] = schema
            self._workflow_order.append(key)

    def get_workflow(self, name: str, version: str | None = None) -> WorkflowSchema | None:
        with self._lock:
            if version is not None:
                return self._workflows.get((name, version))
            for key in reversed(self._workflow_order):
                if key[0] == name:
                    return self._workflows[key]
            return None

    def list_workflows(self) -> list[WorkflowSchema]:
        with self._lock:
            latest: dict[str, WorkflowSchema] = {}
            for key in self._workflow_order:
                latest[key[0]] = self._workflows[key]
            return [latest[name] for name in sorted(latest)]

    def find_runs(self, run_ids: Sequence[str]) -> dict[str, RunRecord]:
        with self._lock:
            return {rid: copy.copy(self._runs[rid]) for rid in run_ids if rid in self._runs}

    def find_idempotency_keys(self, keys: Sequence[str]) -> dict[str, str]:
        with self._lock:
            return {key: self._keys[key] for key in keys if key in self._keys}

    def find_unique_runs(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], RunRecord]:
        wanted = set(keys)
        with self._lock:
            found: dict[tuple[str, str], RunRecord] = {}
            for run in self._runs.values():
                ref = (run.workflow, run.unique_key or "")
                if run.unique_key is None or ref not in wanted:
                    continue
                held = found.get(ref)
                if held is None or holds_before(run, held):
                    found[ref] = run
            return {ref: copy.copy(found[ref]) for ref in keys if ref in found}

    def list_runs(
        self,
        workflow: str | None = None,
        status: RunStatus | None = None,
        limit: int = 100,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        position: tuple[datetime, str] | None = None,
    ) -> list[RunRecord]:
        with self._lock:
            runs = [
                copy.copy(run)
                for run in self._runs.values()
                if (workflow is None or run.workflow == workflow)
                and (status is None or run.status == status)
                and (created_after is None or run.created_at >= created_after)
                and (created_before is None or run.created_at < created_before)
                and (position is None or (run.created_at, run.run_id) < position)
            ]
        runs.sort(key=lambda r: (r.created_at, r.run_id), reverse=True)
        return runs[:limit]

    def child_runs(self, parent_run_ids: Sequence[str]) -> list[RunRecord]:
        wanted = set(parent_run_ids)
        with self._lock:
            found = [copy.copy(r) for r in self._runs.values() if r.parent_run_id in wanted]
        found.sort(key=lambda r: (r.created_at, r.run_id))
        return found

    def get_tasks(self, run_ids: Sequence[str]) -> list[TaskRecord]:
        wanted = set(run_ids)
        with self._lock:
            tasks = [copy.copy(t) for t in self._tasks.values() if t.run_id in wanted]
        tasks.sort(key=lambda t: (t.run_id, t.created_at, t.step, t.map_index))
        return tasks

    def get_attempts(self, run_id: str) -> list[AttemptRecord]:
        with self._lock:
            found = [copy.copy(a) for a in self._attempts.values() if a.run_id == run_id]
        found.sort(key=lambda a: (a.queued_at, a.step, a.map_index, a.attempt))
        return found

    def page_tasks(
        self, run_id: str, after: tuple[str, int] | None, limit: int
    ) -> list[TaskRecord]:
        with self._lock:
            found = [
                copy.copy(t)
                for t in self._tasks.values()
                if t.run_id == run_id and (after is None or (t.step, t.map_index) > after)
            ]
        found.sort(key=lambda t: (t.step, t.map_index))
        return found[:limit]

    def page_attempts(
        self, run_id: str, after: tuple[str, int, int] | None, limit: int
    ) -> list[AttemptRecord]:
        with self._lock:
            found = [
                copy.copy(a)
                for a in self._attempts.values()
                if a.run_id == run_id
                and (after is None or (a.step, a.map_index, a.attempt) > after)
            ]
        found.sort(key=lambda a: (a.step, a.map_index, a.attempt))
        return found[:limit]

    def get_logs(
        self,
        run_id: str,
        step: str | None = None,
        after_id: int | None = None,
        limit: int | None = None,
    ) -> list[LogRecord]:
        with self._lock:
            found = [
                copy.copy(line)
                for line in self._logs
                if line.run_id == run_id
                and (step is None or line.step == step)
                and (after_id is None or (line.id or 0) > after_id)
            ]
        return found if limit is None else found[:limit]

    def load_active(self) -> tuple[list[RunRecord], list[TaskRecord], list[AttemptRecord]]:
        with self._lock:
            runs = [copy.copy(r) for r in self._runs.values() if r.status in ACTIVE_RUNS]
            ids = {r.run_id for r in runs}
            tasks = [copy.copy(t) for t in self._tasks.values() if t.run_id in ids]
            attempts = [
                copy.copy(a) for a in self._attempts.values() if a.status == AttemptStatus.RUNNING
            ]
        return runs, tasks, attempts

    def page_queued(
        self, queue: str, after: tuple[int, int] | None, limit: int
    ) -> list[TaskRecord]:
        with self._lock:
            queued = [
                copy.copy(t)
                for t in self._tasks.values()
                if t.status == TaskStatus.QUEUED and t.queue == queue
            ]
        queued.sort(key=lambda t: (-t.priority, t.seq))
        if after is not None:
            priority, seq = after
            queued = [t for t in queued if (-t.priority, t.seq) > (-priority, seq)]
        return queued[:limit]

    def pending_deadlines(self) -> list[tuple[str, datetime]]:
        with self._lock:
            return [
                (run.run_id, run.deadline_at)
                for run in self._runs.values()
                if run.deadline_at is not None and not run.status.finished
            ]

    def count_queued(self) -> int:
        with self._lock:
            return sum(1 for t in self._tasks.values() if t.status == TaskStatus.QUEUED)

    def queued_queues(self) -> list[str]:
        with self._lock:
            return sorted({t.queue for t in self._tasks.values() if t.status == TaskStatus.QUEUED})

    def next_value(self, counter: str, count: int = 1) -> int:
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        with self._lock:
            self._counters[counter] = self._counters.get(counter, 0) + count
            return self._counters[counter]

    def get_claim(self, key: str) -> ClaimRecord | None:
        with self._lock:
            return self._claims.get(key)  # frozen: a copy would be the same

    def put_claim(self, claim: ClaimRecord, expected_version: int | None) -> bool:
        with self._lock:
            stored = self._claims.get(claim.key)
            if (None if stored is None else stored.version) != expected_version:
                return False
            self._claims[claim.key] = claim
            return True

    def claims_of(self, run_ids: Sequence[str], limit: int | None = None) -> list[ClaimRecord]:
        wanted = set(run_ids)
        with self._lock:
            held = [c for c in self._claims.values() if c.holder.run_id in wanted]
        return sorted(held, key=lambda c: c.key)[:limit]

    def max_task_seq(self) -> int:
        with self._lock:
            return max((t.seq for t in self._tasks.values()), default=0)

    def close(self) -> None:
        pass


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
