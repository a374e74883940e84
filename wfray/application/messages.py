"""Messages between the client, the coordinator, the executors and the steps.

Plain, picklable values; results travel as JSON text or blob references.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from wfray.domain.records import LogRecord, RunRecord, WorkerIdentity
from wfray.domain.status import AttemptStatus, RunStatus

# What a dispatch carries as its runtime env when the run's could not be read from the
# store: its executor fails the attempt, saying so, instead of running it elsewhere.
UNREADABLE_ENV = "!unreadable"

# An argument: {"json": text} | {"blob": uri} | {"list": [arg, ...]} | {"dict": {name: arg}}
# | {"collected": {"run", "step", "count"}} (a paged fan-out's results, read where used)
# | {"item": arg, "index": i} | {"field": arg, "name": name}
ArgSpec = dict[str, Any]


@dataclass(slots=True)
class SubmitRequest:
    """One run to start. `run_id` is chosen by the client, so a retried request is a no-op."""

    run_id: str
    workflow: str
    version: str
    input_json: str
    idempotency_key: str | None = None
    priority: int = 0
    queue: str = "default"
    concurrency_key: str | None = None
    parent_run_id: str | None = None
    trigger: str = "client"
    trigger_id: str | None = None
    retry_json: str | None = None  # a RetryPolicy overriding the steps' own, as JSON
    deadline_s: float | None = None  # overrides the workflow's deadline
    # The workflow's uniqueness key, computed where the input was validated (unique_key.py).
    unique_key: str | None = None
    # The client made `run_id` up for this request (a random UUID) and sends it for the
    # first time: no run can hold it yet, so intake need not look it up in the store.
    # A resend after a lost answer clears it.
    fresh_id: bool = False
    # The runtime environment the run's steps need (domain/code_env.py), recorded before
    # the request is sent (RecordEnv); None: the cluster's own. Children take their parent's.
    env_hash: str | None = None


@dataclass(slots=True)
class SubmitResult:
    """The run that serves a request: a new one, or the one its key already named."""

    run_id: str
    created: bool
    error: str | None = None
    error_code: str | None = None
    retry_after_s: float | None = None


@dataclass(slots=True)
class RunView:
    """What a caller sees of a run."""

    run_id: str
    workflow: str
    status: RunStatus
    result_json: str | None = None
    result_ref: str | None = None
    error: str | None = None
    version: str | None = None  # the DAG's shape, and the code's identity (code_env.py)


def view_of(run: RunRecord) -> RunView:
    return RunView(
        run_id=run.run_id,
        workflow=run.workflow,
        status=run.status,
        result_json=run.result_json,
        result_ref=run.result_ref,
        error=run.error,
        version=run.shown_version,
    )


@dataclass(slots=True)
class CommandResult:
    """The answer to an operator command (cancel, resume): `applied` is False when it did
    nothing, and `message` says why (for example: the run had already finished)."""

    run_id: str
    applied: bool
    status: str
    message: str


@dataclass(slots=True)
class Dispatch:
    """One attempt of one task, sent to an executor."""

    run_id: str
    workflow: str
    step: str
    map_index: int
    attempt: int
    fn: str
    args: dict[str, ArgSpec]
    pool: str
    num_cpus: float | None = None
    resources: dict[str, float] = field(default_factory=dict)
    timeout_s: float | None = None
    heartbeat_timeout_s: float | None = None
    # Under light load the worker also hands its outcome straight to the coordinator, a
    # hop shorter than through its executor (whose copy stays the durable one).
    report_directly: bool = False
    # Of a short step, and free of timeouts: it may share a task (a shared task: one Ray
    # task for several such attempts) when the backlog is deep (coordinator/shared_tasks.py).
    shareable: bool = False
    kind: str = "step"  # or "compensation"
    # The run's runtime environment: its hash, and the `runtime_env` Ray builds for it as
    # canonical JSON (domain/code_env.py); None for runs in the cluster's own environment.
    env_hash: str | None = None
    runtime_env_json: str | None = None

    @property
    def attempt_key(self) -> tuple[str, str, int, int]:
        return (self.run_id, self.step, self.map_index, self.attempt)

    @property
    def idempotency_key(self) -> str:
        """Stable across attempts: pass it to external systems to dedupe side effects."""
        return f"{self.run_id}:{self.step}:{self.map_index}"


@dataclass(slots=True)
class Outcome:
    """How an attempt ended, as its executor saw it."""

    run_id: str
    step: str
    map_index: int
    attempt: int
    status: AttemptStatus
    started_at: datetime | None
    finished_at: datetime
    worker: WorkerIdentity = field(default_factory=WorkerIdentity)
    result_json: str | None = None
    result_ref: str | None = None
    result_items: int | None = None
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    retryable: bool = True
    retry_after_s: float | None = None
    logs: list[LogRecord] = field(default_factory=list)
    progress_json: str | None = None  # the last progress the step reported, if any
    seq: int = 0

    @property
    def attempt_key(self) -> tuple[str, str, int, int]:
        return (self.run_id, self.step, self.map_index, self.attempt)

    @classmethod
    def ended(
        cls,
        key: tuple[str, str, int, int],
        status: AttemptStatus,
        error_type: str,
        message: str,
        started_at: datetime | None = None,
    ) -> Outcome:
        """An attempt that ended without a result of its own: lost, cancelled, timed out."""
        run_id, step, map_index, attempt = key
        return cls(
            run_id=run_id,
            step=step,
            map_index=map_index,
            attempt=attempt,
            status=status,
            started_at=started_at,
            finished_at=datetime.now(UTC),
            error_type=error_type,
            error_message=message,
        )


@dataclass(slots=True)
class Drained:
    """A batch of outcomes from one executor incarnation."""

    incarnation: str
    outcomes: list[Outcome]
    held: int = 0  # outcomes the executor holds, not yet acknowledged (health.py)


@dataclass(slots=True)
class ExecutorSnapshot:
    """What an executor holds: the attempts it runs and the outcomes not yet acknowledged."""

    incarnation: str
    in_flight: list[tuple[str, str, int, int]]
    outcomes: list[Outcome]
