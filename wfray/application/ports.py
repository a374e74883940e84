"""The ports the application needs; adapters implement them.

The store is two sides: RunLedger for the coordinator, the single writer, and RunReader for
those who only read (queries.py, the HTTP API, the CLI); RunStore, both, is what an adapter
builds. The scheduler's store (ScheduleStore) and engine (RunStarter) are here too.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from wfray.application.batch import Batch, RejectedRow
from wfray.application.messages import (
    CommandResult,
    Dispatch,
    Drained,
    ExecutorSnapshot,
    RunView,
    SubmitRequest,
    SubmitResult,
)
from wfray.application.quarantine import QuarantinedOutcome
from wfray.application.views import ChildStart, ChildStatus, ClaimView, StoreFacts
from wfray.domain.audit import AuditEntry, AuditQuery
from wfray.domain.claims import ClaimRecord
from wfray.domain.reads import LogQuery, RunFilter
from wfray.domain.records import (
    AttemptKey,
    AttemptRecord,
    LogRecord,
    QueuedTask,
    RunRecord,
    TaskRecord,
)
from wfray.domain.schedule import ScheduleRecord, ScheduleSpec, TicksHandled
from wfray.domain.workflow import WorkflowSchema


class Clock(Protocol):
    def now(self) -> datetime: ...


class RunLookup(Protocol):
    """Reads both sides make: runs, their tasks and claims, workflows, by id or name."""

    def get_workflow(self, name: str, version: str | None = None) -> WorkflowSchema | None: ...
    def list_workflows(self) -> list[WorkflowSchema]: ...
    def get_runtime_envs(self, env_hashes: Sequence[str]) -> dict[str, str]:
        """The stored runtime environments (domain/code_env.py) as JSON, by hash."""
        ...

    def subscription_envs(self, event: str) -> dict[str, str]:
        """The runtime env hash recorded for each workflow subscribed to `event` (those
        registered with one)."""
        ...

    def find_runs(self, run_ids: Sequence[str]) -> dict[str, RunRecord]: ...
    def find_views(self, run_ids: Sequence[str]) -> dict[str, RunView]:
        """What callers waiting for these runs are told of them (never their input)."""
        ...

    def child_runs(
        self, parent_run_ids: Sequence[str], limit: int | None = None
    ) -> list[RunRecord]:
        """The runs started by steps of these runs, oldest first (the first `limit`)."""
        ...

    def get_tasks(self, run_ids: Sequence[str]) -> list[TaskRecord]: ...
    def page_tasks(
        self, run_id: str, after: tuple[str, int] | None, limit: int
    ) -> list[TaskRecord]:
        """A run's tasks in (step, map_index) order, after `after`, at most `limit` (step
        names in the store's collation: its primary key's order, so a page reads `limit`
        rows)."""
        ...

    def item_results(
        self, run_id: str, step: str, start: int, limit: int
    ) -> list[tuple[int, str | None, str | None]]:
        """(map index, result JSON, blob ref) of the completed items of a fan-out from
        index `start` on, in map order, at most `limit`: a page of its collected results."""
        ...

    def claims_of(self, run_ids: Sequence[str], limit: int | None = None) -> list[ClaimRecord]:
        """The claims held by these runs, by key (the first `limit` of them)."""
        ...


class RunLedger(RunLookup, Protocol):
    """The coordinator's side: what the single writer commits and the reads it decides by.
    Sync; the coordinator calls it from a worker thread.

    `commit` applies one batch in one transaction and is idempotent under replay: a batch
    retried after an ambiguous failure (the connection died around COMMIT) changes nothing
    twice. Status updates are compare-and-set against the status the batch expects.
    """

    def commit(self, batch: Batch) -> None:
        """Raises StoreRejectedError (or StaleWriteError) when rows of the batch are refused
        for what they hold, StoreUnavailableError when the database cannot be reached."""
        ...

    def rejected_rows(self, batch: Batch) -> list[RejectedRow]:
        """The rows of `batch` that `commit` would refuse, and why; writes nothing."""
        ...

    def note_undelivered(
        self, keys: Sequence[AttemptKey], epoch: int, now: datetime
    ) -> dict[AttemptKey, int]:
        """Mark outcomes undelivered at a coordinator start; return, for those marked at an
        earlier start already, how many starts went down while applying them (marks of
        outcomes delivered since are dropped)."""
        ...

    def note_applying(self, keys: Sequence[AttemptKey], epoch: int, now: datetime) -> None:
        """The coordinator of `epoch` begins applying outcomes it noted at its start."""
        ...

    def quarantine(
        self, items: Sequence[tuple[AttemptKey, str, str]], epoch: int, now: datetime
    ) -> None:
        """Quarantine outcomes, as (key, status, reason) (application/quarantine.py)."""
        ...

    def save_workflow(self, schema: WorkflowSchema) -> None: ...
    def save_subscriptions(
        self, subscriptions: Sequence[tuple[str, str]], env_hash: str, now: datetime
    ) -> None:
        """Record the env the runs of these (workflow, event) subscriptions run in."""
        ...

    def save_runtime_env(self, env_hash: str, env_json: str) -> None:
        """Store a runtime environment under its content hash (idempotent)."""
        ...

    def find_idempotency_keys(self, keys: Sequence[str]) -> dict[str, str]: ...
    def find_unique_runs(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], RunRecord]:
        """The run holding each (workflow, uniqueness key): the one not finished if there
        is one, else the newest by (created_at, run_id); keys no run holds are left out."""
        ...

    def load_active(
        self, with_tasks: bool = True
    ) -> tuple[list[RunRecord], list[TaskRecord], list[AttemptRecord]]:
        """Runs with work in flight (running, compensating), their tasks (unless not
        `with_tasks`: then none), running attempts."""
        ...

    def running_attempts(self, run_ids: Sequence[str]) -> list[AttemptRecord]:
        """The running attempts of these runs (each run's history is not read)."""
        ...

    def live_tasks(
        self, run_ids: Sequence[str], window: int
    ) -> tuple[list[TaskRecord], dict[tuple[str, str], tuple[int, int]]]:
        """The runs' tasks less the completed (and compensated) items of fan-outs over
        `window` items, and per (run id, fanned-out step): (items stored, items completed)."""
        ...

    def completed_items(self, run_id: str, step: str, start: int, limit: int) -> list[TaskRecord]:
        """The completed items of a fan-out from map index `start` on, in map order, at
        most `limit` (a paged fan-out's page, to be undone)."""
        ...

    def collect_items(
        self, run_id: str, step: str, limit: int | None = None
    ) -> tuple[str | None, str | None]:
        """A fan-out's item results, each read once in map order, as
        `wfray.domain.results.collect` shapes them (CollectionTooLarge past `limit`)."""
        ...

    def page_queued(
        self, queue: str, after: tuple[int, int] | None, limit: int
    ) -> list[QueuedTask]:
        """The next `limit` queued tasks of `queue` in its order (priority descending, then
        seq), strictly after `after` (priority, seq): where they stand, not their rows."""
        ...

    def count_queued(self) -> int: ...
    def pending_deadlines(self) -> list[tuple[str, datetime]]:
        """(run id, deadline) of the runs not yet finished that have a deadline."""
        ...

    def queued_queues(self) -> list[str]: ...
    def max_task_seq(self) -> int: ...
    def next_value(self, counter: str, count: int = 1) -> int: ...
    def counters(self, prefix: str) -> dict[str, int]:
        """The named counters whose name starts with `prefix`, with their values."""
        ...

    def store_facts(self) -> StoreFacts:
        """The oldest queued run's creation time and the store's size: cheap enough to ask
        every few seconds, whatever the backlog (coordinator/health.py)."""
        ...

    def get_claim(self, key: str) -> ClaimRecord | None: ...
    def put_claim(self, claim: ClaimRecord, expected_version: int | None) -> bool:
        """Store `claim` if the stored one is at `expected_version` (None: none stored);
        False, writing nothing, if another write came first (domain/claims.py)."""
        ...


class RunReader(RunLookup, Protocol):
    """The read side: what operators and clients ask (queries.py, the HTTP API, the CLI).
    It writes nothing, and whoever built it closes it."""

    def list_runs(self, wanted: RunFilter) -> list[RunRecord]:
        """The runs `wanted` names, newest first (domain/reads.py)."""
        ...

    def get_attempts(self, run_id: str) -> list[AttemptRecord]: ...
    def page_attempts(
        self, run_id: str, after: tuple[str, int, int] | None, limit: int
    ) -> list[AttemptRecord]:
        """A run's attempts in (step, map_index, attempt) order, after `after`."""
        ...

    def count_history(self, run_id: str) -> tuple[int, int]:
        """How many tasks and attempts the run has, without reading them."""
        ...

    def get_logs(self, wanted: LogQuery) -> list[LogRecord]:
        """The log lines `wanted` names, in the order stored (increasing `id`)."""
        ...

    def quarantined_outcomes(self) -> list[QuarantinedOutcome]:
        """Outcomes refused or quarantined, oldest first (not the marks of a start)."""
        ...

    def run_ids_starting(self, prefix: str, limit: int) -> list[str]:
        """The ids of runs that start with `prefix`, in byte order, at most `limit` of them
        (an operator's abbreviated run id, resolved as git resolves commits)."""
        ...

    def close(self) -> None: ...


class RunStore(RunLedger, RunReader, Protocol):
    """The truth about runs, both sides: one adapter implements them, and the composition
    root builds one and hands each consumer the side it uses."""


class StepExecutor(Protocol):
    """A pool's executor: it launches attempts, owns them, and hands back their outcomes."""

    # `epoch`: the coordinator's, which fences out dispatches of earlier ones (outbox.py)
    async def dispatch(self, dispatches: list[Dispatch], epoch: int) -> None: ...
    async def drain(self, ack: int, wait_s: float, epoch: int) -> Drained: ...
    async def snapshot(self, ack: int, epoch: int) -> ExecutorSnapshot: ...
    async def cancel(self, attempts: list[tuple[str, str, int, int]]) -> None: ...


class StepServices(Protocol):
    """What a running step may ask of wfray (runtime.py): heartbeats, log lines, events,
    counters, child runs, claims. The Ray adapter calls the coordinator actor; the
    in-process one calls an in-process Coordinator."""

    def heartbeat(self, key: AttemptKey, progress_json: str | None) -> None: ...

    def logs(self, lines: list[LogRecord]) -> bool:
        """Deliver log lines of a running attempt; False if they did not arrive."""
        ...

    def publish(self, name: str, payload: Any, event_id: str) -> list[str]: ...

    def next_value(self, counter: str) -> int: ...

    def start_runs(self, children: ChildStart) -> None: ...

    def wait_runs(self, run_ids: Sequence[str], timeout_s: float) -> list[ChildStatus]: ...

    def claim(self, key: str, attempt: AttemptKey, ttl_s: float) -> ClaimView: ...

    def finish_claim(self, key: str, attempt: AttemptKey, result_json: str) -> ClaimView: ...

    def claimed(self, key: str, asker: AttemptKey) -> ClaimView | None: ...

    def item_results(
        self, run_id: str, step: str, start: int, limit: int
    ) -> list[tuple[int, str | None, str | None]]:
        """A page of a fan-out's item results, as `RunLookup.item_results` reads them
        (the coordinator may return fewer than `limit`: its pages are bounded in bytes)."""
        ...


class BlobStore(Protocol):
    """Large results, written by the step's side; the store keeps only the reference."""

    def put(self, key: str, data: bytes) -> str: ...
    def get(self, uri: str) -> bytes: ...
    def put_list(self, key: str, items: Sequence[bytes]) -> str:
        """Write a list of JSON items, readable whole (`get`) or one item at a time."""
        ...

    def get_item(self, uri: str, index: int) -> bytes:
        """One item of a list written by `put_list`, without reading the others."""
        ...


class PackageKeeper(Protocol):
    """Keeps a copy of the packages a recorded runtime env names (`gcs://` URIs), which the
    cluster deletes some time after the job that uploaded them ends (adapters/ray/packages.py)."""

    def keep(self, uris: Sequence[str]) -> None:
        """Copy each package the cluster holds and no copy exists of yet (blocking I/O)."""
        ...


class AuditLog(Protocol):
    """The audit trail: entries appended (never changed), read newest first, purged by age."""

    def record(self, entries: Sequence[AuditEntry]) -> None:
        """Store the entries (built by `domain.audit.audit_entry`, so already bounded)."""
        ...

    def read(self, query: AuditQuery) -> list[AuditEntry]:
        """Entries matching `query`, newest (highest id) first, at most `query.limit`."""
        ...

    def purge(self, before: datetime) -> int:
        """Delete the entries recorded before `before`; how many went."""
        ...


class ScheduleStore(Protocol):
    """The truth about schedules. Sync, like RunStore; the scheduler calls it from a thread.

    `advance` is a compare-and-set on `last_fired`: of two schedulers that handled the same
    tick, one moves the schedule on and the other learns it lost (False) and changes nothing.
    """

    def upsert(self, spec: ScheduleSpec, now: datetime, *, keep_paused: bool = False) -> bool:
        """Create the schedule (last fired = now) or replace its spec, keeping how far it
        fired. `keep_paused`: an existing schedule keeps its stored paused flag (code
        declarations must not undo an operator's pause). True if it was created."""
        ...

    def get(self, name: str) -> ScheduleRecord | None: ...
    def load_all(self) -> list[ScheduleRecord]:
        """Every schedule, by name."""
        ...

    def delete(self, name: str) -> bool:
        """Remove the schedule; False if there was none."""
        ...

    def set_paused(self, name: str, paused: bool, now: datetime) -> bool:
        """Pause or resume. Resuming moves `last_fired` to `now` (if later) and drops a
        buffered tick: a paused schedule's ticks never fire. False if there is no schedule."""
        ...

    def advance(self, handled: TicksHandled, now: datetime) -> bool:
        """Record the ticks handled, if the schedule's `last_fired` is still
        `handled.expected_last_fired` (False, writing nothing, if another came first)."""
        ...

    def close(self) -> None: ...


class RunStarter(Protocol):
    """The part of the Coordinator the scheduler uses (the Coordinator itself fits)."""

    async def submit(self, requests: Sequence[SubmitRequest]) -> list[SubmitResult]: ...
    async def cancel(
        self, run_ids: Sequence[str], reason: str = "", compensate: bool = True
    ) -> list[CommandResult]: ...
    async def views(self, run_ids: Sequence[str]) -> list[RunView]: ...
