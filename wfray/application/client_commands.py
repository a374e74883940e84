"""What a client asks of the coordinator actor: one frozen command per call.

The client sends a command to the actor's single `handle` method, which answers it with the
one handler `client_handlers.HANDLERS` names for its type. A command's type parameter is its
answer's type, so `client.call(Views(ids))` is a `list[RunView]` to the type checker too.

Not to be confused with `commands.py`, the coordinator's desk that applies cancel, resume and
retried compensations in its loop turns.

Fire-and-forget traffic from workers (`report`, `heartbeat`) stays on its own actor methods:
see `adapters/ray/host.py`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from wfray.application.messages import CommandResult, RunView, SubmitRequest, SubmitResult
from wfray.application.views import ClaimView, RunDetail, ScheduleInfo
from wfray.domain.audit import AuditEntry, AuditQuery, Origin
from wfray.domain.code_env import CodeEnv
from wfray.domain.reads import LogQuery, RunFilter
from wfray.domain.records import AttemptKey, LogRecord, RunRecord
from wfray.domain.schedule import ScheduleSpec
from wfray.domain.workflow import WorkflowSchema

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Command(Generic[R]):
    """A call on the coordinator actor whose answer is an R."""


# -- the actor itself ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Start(Command[None]):
    """Answered once wfray has started (store migrated, executors up, runs recovered)."""

    wait_s: float


@dataclass(frozen=True, slots=True)
class Pid(Command[int]):
    """The coordinator process's id, answered even before it has started (fault tests)."""


@dataclass(frozen=True, slots=True)
class Stats(Command[dict[str, Any]]):
    pass


# -- workflows and runs --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Register(Command[None]):
    schemas: Sequence[WorkflowSchema]
    env_hash: str | None = None  # the registering client's env: its subscriptions' runs'


@dataclass(frozen=True, slots=True)
class RecordEnv(Command[str]):
    """Store a runtime environment (domain/code_env.py); the answer is its hash."""

    env: CodeEnv


@dataclass(frozen=True, slots=True)
class Submit(Command[list[SubmitResult]]):
    requests: Sequence[SubmitRequest]


@dataclass(frozen=True, slots=True)
class SubmitAndWait(Command[tuple[list[SubmitResult], list[RunView]]]):
    """Submit, then wait up to `wait_s` for the runs: one call from request to answer."""

    requests: Sequence[SubmitRequest]
    wait_s: float


@dataclass(frozen=True, slots=True)
class Wait(Command[list[RunView]]):
    """The runs' views once all have finished, or as they are after `wait_s`."""

    run_ids: Sequence[str]
    wait_s: float


@dataclass(frozen=True, slots=True)
class Views(Command[list[RunView]]):
    run_ids: Sequence[str]


@dataclass(frozen=True, slots=True)
class Cancel(Command[list[CommandResult]]):
    run_ids: Sequence[str]
    reason: str = ""
    compensate: bool = True
    origin: Origin | None = None  # who asks, for the audit trail (None: "client")


@dataclass(frozen=True, slots=True)
class Resume(Command[list[CommandResult]]):
    run_ids: Sequence[str]
    origin: Origin | None = None


@dataclass(frozen=True, slots=True)
class RetryCompensation(Command[list[CommandResult]]):
    run_ids: Sequence[str]
    origin: Origin | None = None


@dataclass(frozen=True, slots=True)
class Publish(Command[list[str]]):
    """An internal event; the answer is the ids of the runs it started."""

    name: str
    payload_json: str
    event_id: str
    source: str = "client"
    inputs: Mapping[str, str] | None = None
    keys: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class NextValue(Command[int]):
    counter: str
    count: int = 1


# -- claims and logs, asked by running steps -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claim(Command[ClaimView]):
    key: str
    attempt: AttemptKey
    ttl_s: float


@dataclass(frozen=True, slots=True)
class FinishClaim(Command[ClaimView]):
    key: str
    attempt: AttemptKey
    result_json: str


@dataclass(frozen=True, slots=True)
class ReadClaim(Command[ClaimView | None]):
    key: str
    asker: AttemptKey | None = None


@dataclass(frozen=True, slots=True)
class ReadItemResults(Command[list[tuple[int, str | None, str | None]]]):
    """A page of a paged fan-out's item results, for the step that collects them."""

    run_id: str
    step: str
    start: int
    limit: int


@dataclass(frozen=True, slots=True)
class AppendLogs(Command[bool]):
    """A step's log lines; answered once they are committed (the worker keeps them until)."""

    lines: Sequence[LogRecord]


# -- reading the store ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Detail(Command[RunDetail]):
    run_id: str


@dataclass(frozen=True, slots=True)
class DetailPage(Command[RunDetail]):
    """A run with at most `limit` of its tasks and attempts, after the given positions."""

    run_id: str
    limit: int
    tasks_after: tuple[str, int] | None = None
    attempts_after: tuple[str, int, int] | None = None


@dataclass(frozen=True, slots=True)
class ListRuns(Command[list[RunRecord]]):
    wanted: RunFilter


@dataclass(frozen=True, slots=True)
class Logs(Command[list[LogRecord]]):
    wanted: LogQuery


@dataclass(frozen=True, slots=True)
class Workflows(Command[list[WorkflowSchema]]):
    pass


# -- schedules -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UpsertSchedule(Command[bool]):
    spec: ScheduleSpec
    origin: Origin | None = None


@dataclass(frozen=True, slots=True)
class DeclareSchedules(Command[None]):
    """Schedules declared in code, upserted when their workflow is registered."""

    specs: Sequence[ScheduleSpec]


@dataclass(frozen=True, slots=True)
class DeleteSchedule(Command[None]):
    name: str
    origin: Origin | None = None


@dataclass(frozen=True, slots=True)
class PauseSchedule(Command[None]):
    name: str
    origin: Origin | None = None


@dataclass(frozen=True, slots=True)
class ResumeSchedule(Command[None]):
    name: str
    origin: Origin | None = None


@dataclass(frozen=True, slots=True)
class TriggerSchedule(Command[SubmitResult]):
    name: str
    origin: Origin | None = None


@dataclass(frozen=True, slots=True)
class ListSchedules(Command[list[ScheduleInfo]]):
    count: int = 3


# -- the audit trail -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReadAudit(Command[list[AuditEntry]]):
    """Audit entries, newest first (`query.before_id` pages on)."""

    query: AuditQuery


@dataclass(frozen=True, slots=True)
class RecordAudit(Command[None]):
    """Entries an entry point recorded itself (the API's token use); bounded again on arrival."""

    entries: Sequence[AuditEntry]
