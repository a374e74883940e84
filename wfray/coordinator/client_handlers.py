"""How the coordinator actor answers each client command: one handler per command type, and
the one table, `HANDLERS`, that maps the first to the second."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

from wfray.application.client_commands import (
    AppendLogs,
    Cancel,
    Claim,
    Command,
    DeclareSchedules,
    DeleteSchedule,
    Detail,
    DetailPage,
    FinishClaim,
    ListRuns,
    ListSchedules,
    Logs,
    NextValue,
    PauseSchedule,
    Pid,
    Publish,
    R,
    ReadAudit,
    ReadClaim,
    ReadItemResults,
    RecordAudit,
    RecordEnv,
    Register,
    Resume,
    ResumeSchedule,
    RetryCompensation,
    Start,
    Stats,
    Submit,
    SubmitAndWait,
    TriggerSchedule,
    UpsertSchedule,
    Views,
    Wait,
    Workflows,
)
from wfray.application.messages import CommandResult, RunView, SubmitResult
from wfray.application.views import ClaimView, RunDetail, ScheduleInfo
from wfray.coordinator.audit_trail import audited, done, rebounded, record, results_outcome
from wfray.coordinator.collection import read_page
from wfray.coordinator.coordinator import Coordinator
from wfray.coordinator.desk import Desk
from wfray.coordinator.scheduler import Scheduler
from wfray.domain.audit import AuditEntry
from wfray.domain.errors import WfrayError
from wfray.domain.records import LogRecord, RunRecord
from wfray.domain.workflow import WorkflowSchema

Handler = Callable[[Desk, Any], Awaitable[Any]]


async def answer(desk: Desk, command: Command[R]) -> R:
    """The answer of the handler for the command's type."""
    handler = HANDLERS.get(type(command))
    if handler is None:
        raise WfrayError(f"the coordinator has no handler for {type(command).__name__}")
    result: R = await handler(desk, command)
    return result


async def _coordinator(desk: Desk) -> Coordinator:
    return (await desk.ready()).coordinator


async def _scheduler(desk: Desk) -> Scheduler:
    return (await desk.ready()).scheduler


# -- the actor itself ----------------------------------------------------------------------------


async def start(desk: Desk, command: Start) -> None:
    await desk.ready(command.wait_s)


async def pid(desk: Desk, command: Pid) -> int:
    return os.getpid()


async def stats(desk: Desk, command: Stats) -> dict[str, object]:
    return (await _coordinator(desk)).stats()


# -- workflows and runs --------------------------------------------------------------------------


async def register(desk: Desk, command: Register) -> None:
    await (await _coordinator(desk)).register(command.schemas, command.env_hash)


async def record_env(desk: Desk, command: RecordEnv) -> str:
    return await (await _coordinator(desk)).record_env(command.env)


async def submit(desk: Desk, command: Submit) -> list[SubmitResult]:
    return await (await _coordinator(desk)).submit(command.requests)


async def submit_and_wait(
    desk: Desk, command: SubmitAndWait
) -> tuple[list[SubmitResult], list[RunView]]:
    return await (await _coordinator(desk)).submit_and_wait(command.requests, command.wait_s)


async def wait(desk: Desk, command: Wait) -> list[RunView]:
    return await (await _coordinator(desk)).wait(command.run_ids, command.wait_s)


async def views(desk: Desk, command: Views) -> list[RunView]:
    return await (await _coordinator(desk)).views(command.run_ids)


async def cancel(desk: Desk, c: Cancel) -> list[CommandResult]:
    started = await desk.ready()
    return await audited(
        started,
        c.origin,
        "run.cancel",
        c.run_ids,
        {"reason": c.reason, "compensate": c.compensate},
        lambda: started.coordinator.cancel(c.run_ids, c.reason, c.compensate),
        results_outcome,
    )


async def resume(desk: Desk, c: Resume) -> list[CommandResult]:
    started = await desk.ready()
    act = lambda: started.coordinator.resume(c.run_ids)  # noqa: E731
    return await audited(started, c.origin, "run.resume", c.run_ids, None, act, results_outcome)


async def retry_compensation(desk: Desk, c: RetryCompensation) -> list[CommandResult]:
    started = await desk.ready()
    return await audited(
        started,
        c.origin,
        "run.retry_compensation",
        c.run_ids,
        None,
        lambda: started.coordinator.retry_compensation(c.run_ids),
        results_outcome,
    )


async def publish(desk: Desk, c: Publish) -> list[str]:
    coordinator = await _coordinator(desk)
    return await coordinator.publish(c.name, c.payload_json, c.event_id, c.source, c.inputs, c.keys)


async def next_value(desk: Desk, command: NextValue) -> int:
    return await (await _coordinator(desk)).next_value(command.counter, command.count)


# -- claims and logs -----------------------------------------------------------------------------


async def claim(desk: Desk, c: Claim) -> ClaimView:
    return await (await _coordinator(desk)).claims.claim(c.key, c.attempt, c.ttl_s)


async def finish_claim(desk: Desk, c: FinishClaim) -> ClaimView:
    return await (await _coordinator(desk)).claims.done(c.key, c.attempt, c.result_json)


async def read_claim(desk: Desk, c: ReadClaim) -> ClaimView | None:
    return await (await _coordinator(desk)).claims.read(c.key, c.asker)


async def read_item_results(
    desk: Desk, c: ReadItemResults
) -> list[tuple[int, str | None, str | None]]:
    durable = (await _coordinator(desk)).durable
    return await durable.call(read_page, durable.store, c.run_id, c.step, c.start, c.limit)


async def append_logs(desk: Desk, command: AppendLogs) -> bool:
    return await (await _coordinator(desk)).append_logs(command.lines)


# -- reading the store: in a thread, the store's calls block -------------------------------------


async def detail(desk: Desk, command: Detail) -> RunDetail:
    queries = (await desk.ready()).queries
    return await asyncio.to_thread(queries.run_detail, command.run_id)


async def detail_page(desk: Desk, c: DetailPage) -> RunDetail:
    queries = (await desk.ready()).queries
    return await asyncio.to_thread(
        queries.run_detail_page, c.run_id, c.limit, c.tasks_after, c.attempts_after
    )


async def list_runs(desk: Desk, c: ListRuns) -> list[RunRecord]:
    queries = (await desk.ready()).queries
    return await asyncio.to_thread(queries.list_runs, c.wanted)


async def logs(desk: Desk, c: Logs) -> list[LogRecord]:
    queries = (await desk.ready()).queries
    return await asyncio.to_thread(queries.logs, c.wanted)


async def workflows(desk: Desk, command: Workflows) -> list[WorkflowSchema]:
    queries = (await desk.ready()).queries
    return await asyncio.to_thread(queries.workflows)


# -- schedules -----------------------------------------------------------------------------------


async def upsert_schedule(desk: Desk, c: UpsertSchedule) -> bool:
    started = await desk.ready()
    spec = c.spec
    params = {
        "workflow": spec.workflow,
        "cron": spec.cron,
        "tz": spec.tz,
        "queue": spec.queue,
        "priority": spec.priority,
        "misfire": spec.misfire,
        "overlap": spec.overlap,
        "paused": spec.paused,
    }  # not its input: that is the caller's data
    return await audited(
        started,
        c.origin,
        "schedule.create",
        [spec.name],
        params,
        lambda: started.scheduler.upsert(spec),
        lambda created: "created" if created else "updated",
    )


async def declare_schedules(desk: Desk, command: DeclareSchedules) -> None:
    await (await _scheduler(desk)).declare(command.specs)


async def delete_schedule(desk: Desk, c: DeleteSchedule) -> None:
    started = await desk.ready()
    act = lambda: started.scheduler.delete(c.name)  # noqa: E731
    await audited(started, c.origin, "schedule.delete", [c.name], None, act, done)


async def pause_schedule(desk: Desk, c: PauseSchedule) -> None:
    started = await desk.ready()
    act = lambda: started.scheduler.pause(c.name)  # noqa: E731
    await audited(started, c.origin, "schedule.pause", [c.name], None, act, done)


async def resume_schedule(desk: Desk, c: ResumeSchedule) -> None:
    started = await desk.ready()
    act = lambda: started.scheduler.resume(c.name)  # noqa: E731
    await audited(started, c.origin, "schedule.resume", [c.name], None, act, done)


async def trigger_schedule(desk: Desk, c: TriggerSchedule) -> SubmitResult:
    started = await desk.ready()
    return await audited(
        started,
        c.origin,
        "schedule.trigger",
        [c.name],
        None,
        lambda: started.scheduler.trigger(c.name),
        lambda result: f"refused: {result.error}" if result.error else f"run {result.run_id}",
    )


async def list_schedules(desk: Desk, command: ListSchedules) -> list[ScheduleInfo]:
    return await (await _scheduler(desk)).list_schedules(command.count)


# -- the audit trail ----------------------------------------------------------------------------


async def read_audit(desk: Desk, command: ReadAudit) -> list[AuditEntry]:
    audit = (await desk.ready()).audit
    return await asyncio.to_thread(audit.read, command.query)


async def record_audit(desk: Desk, command: RecordAudit) -> None:
    await record(await desk.ready(), rebounded(command.entries))


HANDLERS: dict[type[Command[Any]], Handler] = {
    Start: start,
    Pid: pid,
    Stats: stats,
    Register: register,
    RecordEnv: record_env,
    Submit: submit,
    SubmitAndWait: submit_and_wait,
    Wait: wait,
    Views: views,
    Cancel: cancel,
    Resume: resume,
    RetryCompensation: retry_compensation,
    Publish: publish,
    NextValue: next_value,
    Claim: claim,
    FinishClaim: finish_claim,
    ReadClaim: read_claim,
    ReadItemResults: read_item_results,
    AppendLogs: append_logs,
    Detail: detail,
    DetailPage: detail_page,
    ListRuns: list_runs,
    Logs: logs,
    Workflows: workflows,
    UpsertSchedule: upsert_schedule,
    DeclareSchedules: declare_schedules,
    DeleteSchedule: delete_schedule,
    PauseSchedule: pause_schedule,
    ResumeSchedule: resume_schedule,
    TriggerSchedule: trigger_schedule,
    ListSchedules: list_schedules,
    ReadAudit: read_audit,
    RecordAudit: record_audit,
}
