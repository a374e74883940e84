"""What the HTTP API reads and writes: pydantic models, and the opaque page cursor.

Requests are strict (unknown fields are refused) and bounded, so that a malformed request
is a 422 naming its field, never a 500 from deeper down.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from wfray.application.messages import CommandResult
from wfray.application.views import RunDetail
from wfray.domain.claims import ClaimRecord
from wfray.domain.masking import MaskedData, MaskedOptionalText, MaskedText
from wfray.domain.queueing import QueueConfig
from wfray.domain.records import LogRecord, RunRecord, TaskRecord, as_row
from wfray.domain.status import AttemptStatus, RunStatus, TaskStatus
from wfray.domain.workflow import WorkflowSchema
from wfray.sdk.definition import Workflow

NAME = r"^[A-Za-z_][A-Za-z0-9_.\-]{0,127}$"  # workflow and queue names, as the domain has them
RUN_ID = r"^[^\x00-\x1f\x7f]{1,200}$"  # any printable id: clients may choose their own
MAX_PRIORITY = 1_000_000  # far inside the store's 32-bit integer column


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- requests ------------------------------------------------------------------------------------


class SubmitBody(Strict):
    """A run to start: a workflow (or a plain task) by name and its input."""

    workflow: str = Field(pattern=NAME, description="the workflow's or the task's name")
    input: Any = Field(default=None, description="validated against the workflow's model")
    priority: int = Field(default=0, ge=-MAX_PRIORITY, le=MAX_PRIORITY)
    queue: str = Field(default="default", pattern=NAME)
    concurrency_key: str | None = Field(default=None, min_length=1, max_length=200)
    deadline_s: float | None = Field(
        default=None, gt=0, le=366 * 24 * 3600, description="past it, the run fails"
    )


class CancelBody(Strict):
    reason: str = Field(default="", max_length=1000)
    compensate: bool = Field(default=True, description="undo the steps that completed")


class EventBody(Strict):
    name: str = Field(pattern=NAME)
    payload: Any = None
    id: str | None = Field(
        default=None, pattern=RUN_ID, description="deduplicates: one start per event id"
    )


# -- responses -----------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorOut(BaseModel):
    error: ErrorDetail


class SubmitAccepted(BaseModel):
    run_id: str
    workflow: str
    link: str


class RunOut(BaseModel):
    run_id: str
    workflow: str
    version: str = Field(description="the DAG's shape, then `+` and the code's env hash")
    env_hash: str | None = Field(description="the runtime env its steps run in, if recorded")
    status: RunStatus
    queue: str
    priority: int
    trigger: str
    trigger_id: str | None = Field(description="the event id, the schedule tick, the parent step")
    idempotency_key: str | None
    unique_key: str | None = Field(description="the workflow's uniqueness key of the input")
    parent_run_id: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    deadline_at: datetime | None
    error: MaskedOptionalText
    result: MaskedData = None
    result_ref: str | None

    @classmethod
    def of(cls, run: RunRecord) -> RunOut:
        """The record's fields of the same names (the rest, input included, stay out), with
        the version as shown and the result parsed."""
        result = None if run.result_json is None else json.loads(run.result_json)
        return cls.model_validate({**as_row(run), "version": run.shown_version, "result": result})


class RunPage(BaseModel):
    runs: list[RunOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")


class TaskOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    step: str
    map_index: int = Field(description="-1 for a step that is not fanned out")
    status: TaskStatus
    pool: str
    queue: str
    attempts: int
    failures: int
    lost: int
    retries: int
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    error_type: str | None
    error_message: MaskedOptionalText

    @classmethod
    def of(cls, task: TaskRecord) -> TaskOut:
        values = {name: getattr(task, name) for name in cls.model_fields if name != "retries"}
        return cls(retries=max(0, task.attempts - 1), **values)


class AttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    step: str
    map_index: int
    attempt: int
    kind: str = Field(description="step, or compensation")
    status: AttemptStatus
    executor: str
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    node_id: str | None
    worker_id: str | None
    host: str | None
    pid: int | None
    error_type: str | None
    error_message: MaskedOptionalText
    traceback: MaskedOptionalText


class ClaimOut(BaseModel):
    """A claim the run holds (ctx.claim): a named promise to do a side effect once."""

    key: str
    step: str
    map_index: int
    attempt: int = Field(description="the attempt holding it")
    claimed_at: datetime
    expires_at: datetime = Field(description="an unfinished hold lapses then")
    done: bool
    done_at: datetime | None
    result: MaskedData = Field(description="the holder's result reference, once done")
    taken_over_from: str | None = Field(
        description="the dead holder it was taken from: run_id/step[map_index]#attempt"
    )

    @classmethod
    def of(cls, claim: ClaimRecord) -> ClaimOut:
        h, prev = claim.holder, claim.taken_over_from
        return cls(
            key=claim.key,
            step=h.step,
            map_index=h.map_index,
            attempt=h.attempt,
            claimed_at=claim.claimed_at,
            expires_at=claim.expires_at,
            done=claim.done,
            done_at=claim.done_at,
            result=None if claim.result_json is None else json.loads(claim.result_json),
            taken_over_from=None
            if prev is None
            else f"{prev.run_id}/{prev.step}[{prev.map_index}]#{prev.attempt}",
        )


class RunDetailOut(BaseModel):
    run: RunOut
    tasks: list[TaskOut] = Field(description="a page of its tasks, by step and item")
    attempts: list[AttemptOut] = Field(description="a page of its attempts, by task")
    claims: list[ClaimOut] = Field(
        default_factory=list, description="the claims it holds, by key (on the first page)"
    )
    next_cursor: str | None = Field(
        default=None, description="pass as `cursor` for the next tasks and attempts"
    )

    @classmethod
    def of(cls, detail: RunDetail, next_cursor: str | None = None) -> RunDetailOut:
        return cls(
            run=RunOut.of(detail.run),
            tasks=[TaskOut.of(t) for t in detail.tasks],
            attempts=[AttemptOut.model_validate(a) for a in detail.attempts],
            claims=[ClaimOut.of(c) for c in detail.claims],
            next_cursor=next_cursor,
        )


class LogLineOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int | None = Field(description="pass as `after` to read the lines that follow")
    step: str
    map_index: int
    attempt: int
    ts: datetime
    level: str
    logger: str
    message: MaskedText

    @classmethod
    def of(cls, line: LogRecord) -> LogLineOut:
        return cls.model_validate(line)


class CommandOut(BaseModel):
    run_id: str
    applied: bool
    status: str
    message: str

    @classmethod
    def of(cls, result: CommandResult) -> CommandOut:
        return cls.model_validate(result, from_attributes=True)


class WorkflowOut(BaseModel):
    name: str
    version: str
    submittable: bool = Field(description="its module is imported here: it can be submitted")
    input_schema: dict[str, Any] | None = Field(description="JSON schema of its input")
    dag: WorkflowSchema

    @classmethod
    def listing(
        cls, loaded: Iterable[Workflow], stored: Iterable[WorkflowSchema]
    ) -> list[WorkflowOut]:
        """The loaded workflows (submittable), then stored versions that are not loaded."""
        by_version = {(flow.schema.name, flow.schema.version): flow for flow in loaded}
        out = [
            cls(
                name=flow.name,
                version=flow.schema.version,
                submittable=True,
                input_schema=None
                if flow.input_model is None
                else flow.input_model.model_json_schema(),
                dag=flow.schema,
            )
            for flow in by_version.values()
        ]
        out += [
            cls(name=s.name, version=s.version, submittable=False, input_schema=None, dag=s)
            for s in stored
            if (s.name, s.version) not in by_version
        ]
        return sorted(out, key=lambda w: (w.name, not w.submittable, w.version))


class QueueOut(BaseModel):
    name: str
    depth: int = Field(description="ready tasks held for dispatch")
    running: int
    concurrency: int | None
    rate_per_s: float | None
    burst: int
    per_key_limit: int | None
    precedence: int


class QueuesOut(BaseModel):
    queues: list[QueueOut]
    queued: int = Field(description="queued tasks in the whole backlog")
    max_backlog: int = Field(description="past it, submissions are refused (429)")

    @classmethod
    def of(
        cls, configs: Iterable[QueueConfig], max_backlog: int, stats: Mapping[str, Any]
    ) -> QueuesOut:
        """Queues from the coordinator's stats ({name: (held, running)}) and their limits."""
        held: Mapping[str, tuple[int, int]] = stats.get("queues", {})
        by_name = {q.name: q for q in configs}
        queues = []
        for name in sorted({"default", *held, *by_name}):
            config = by_name.get(name) or QueueConfig(name=name)
            depth, running = held.get(name, (0, 0))
            queues.append(QueueOut(**config.model_dump(), depth=depth, running=running))
        return cls(queues=queues, queued=int(stats.get("queued", 0)), max_backlog=max_backlog)


class HealthOut(BaseModel):
    status: str = Field(description="ok, or unavailable")
    coordinator: str | None = Field(default=None, description="with a token: its state")
    store: str | None = Field(default=None, description="with a token: its state")
    coordinator_health: dict[str, Any] | None = Field(
        default=None,
        description="with a read token: start cause and counts, uptime, loop turns, commit "
        "failures, outcomes quarantined, attempts in flight and outbox sizes per executor, "
        "queued tasks, ages of the oldest queued run and running attempt, store size",
    )


class EventAccepted(BaseModel):
    name: str
    id: str | None
    runs: list[str]


def _json_schema(model: type[BaseModel] | None) -> dict[str, Any] | None:
    return None if model is None else model.model_json_schema()
