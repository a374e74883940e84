"""The records a run leaves behind: runs, task executions, attempts and log lines.

Plain mutable values: the coordinator keeps live ones in memory as a cache and the RunStore
persists them. Results travel as JSON text (or a blob reference), never as live objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, NamedTuple

from wfray.domain.code_env import shown_version
from wfray.domain.status import AttemptStatus, RunStatus, TaskStatus

WHOLE_STEP = -1  # map_index of a step that is not fanned out (or of a fan-out's group row)

TaskKey = tuple[str, int]  # (step, map_index)


class QueuedTask(NamedTuple):
    """A queued task's place in its queue: all that paging the backlog in reads of it (the
    task itself comes with its run)."""

    run_id: str
    step: str
    map_index: int
    priority: int
    seq: int

    @property
    def key(self) -> TaskKey:
        return (self.step, self.map_index)


AttemptKey = tuple[str, str, int, int]  # run id, step, map index, attempt number


@dataclass(slots=True)
class RunRecord:
    run_id: str
    workflow: str
    version: str
    status: RunStatus
    input_json: str
    created_at: datetime
    queue: str = "default"
    priority: int = 0
    idempotency_key: str | None = None
    concurrency_key: str | None = None
    parent_run_id: str | None = None
    trigger: str = "client"  # client | http | schedule | event | parent
    trigger_id: str | None = None  # the event id, the schedule tick, the parent's step
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result_json: str | None = None
    result_ref: str | None = None
    error: str | None = None
    retry_json: str | None = None  # a retry policy given at submission, overriding the step's
    deadline_at: datetime | None = None  # past it, the run fails
    # With an idempotency key: a hash of what the request asked (idempotency.py), so the
    # same key sent with another workflow or input is refused instead of answered.
    request_hash: str | None = None
    # The workflow's uniqueness key for this run's input (domain/uniqueness.py), if declared.
    unique_key: str | None = None
    # The runtime environment its steps run in (domain/code_env.py), by content hash;
    # None: the cluster's own (runs from before 0012, local development).
    env_hash: str | None = None

    @property
    def shown_version(self) -> str:
        """The workflow version as shown: the DAG's shape, and the code's identity."""
        return shown_version(self.version, self.env_hash)


@dataclass(slots=True)
class TaskRecord:
    run_id: str
    step: str
    map_index: int
    status: TaskStatus
    pool: str
    created_at: datetime
    queue: str = "default"
    priority: int = 0
    seq: int = 0
    concurrency_key: str | None = None
    attempts: int = 0
    failures: int = 0
    lost: int = 0
    map_count: int | None = None
    ready_at: datetime | None = None
    queued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result_json: str | None = None
    result_ref: str | None = None
    result_items: int | None = None
    error_type: str | None = None
    error_message: str | None = None
    progress_json: str | None = None  # the last progress reported by a heartbeat
    heartbeat_at: datetime | None = None

    @property
    def key(self) -> TaskKey:
        return (self.step, self.map_index)


@dataclass(slots=True)
class AttemptRecord:
    run_id: str
    step: str
    map_index: int
    attempt: int
    status: AttemptStatus
    executor: str
    incarnation: str
    queued_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    node_id: str | None = None
    worker_id: str | None = None
    host: str | None = None
    pid: int | None = None
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    kind: str = "step"  # "step", or "compensation" for an attempt at undoing it
    resources_json: str | None = None  # what it held while it ran: {"CPU": 1.0}

    @property
    def task_key(self) -> TaskKey:
        return (self.step, self.map_index)


# Fields a run or task is given when it is created and that nothing changes afterwards:
# stores write them with the first row only, so an update leaves the indexes on them alone
# (on SQLite an update rewrites the index entries of every column it sets, changed or not).
# tests/unit/test_fixed_fields.py finds every assignment to them in wfray.
RUN_FIXED = (
    "workflow",
    "version",
    "input_json",
    "created_at",
    "queue",
    "priority",
    "idempotency_key",
    "concurrency_key",
    "parent_run_id",
    "trigger",
    "trigger_id",
    "retry_json",
    "deadline_at",
    "request_hash",
    "unique_key",
    "env_hash",
)
TASK_FIXED = ("pool", "created_at", "queue", "priority", "concurrency_key")


@dataclass(slots=True)
class LogRecord:
    run_id: str
    step: str
    map_index: int
    attempt: int
    ts: datetime
    level: str
    logger: str
    message: str
    id: int | None = None  # the store's line id, increasing: read "the lines after id N"


@dataclass(slots=True)
class WorkerIdentity:
    node_id: str | None = None
    worker_id: str | None = None
    host: str | None = None
    pid: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def as_row(record: object) -> dict[str, Any]:
    """A record's fields as a dict (enums stay enums; adapters convert)."""
    names = _FIELD_NAMES.get(type(record))
    if names is None:
        names = _FIELD_NAMES[type(record)] = tuple(f.name for f in fields(record))  # type: ignore[arg-type]
    return {name: getattr(record, name) for name in names}


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
