"""How the coordinator actor answers each client command: one handler per command type, and
the one table, `HANDLERS`, that maps the first to the second."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

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
    ReadClaim,
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
from wfray.application.queries import Queries
from wfray.application.views import ClaimView, RunDetail, ScheduleInfo
from wfray.coordinator.coordinator import Coordinator
from wfray.coordinator.scheduler import Scheduler
from wfray.domain.errors import WfrayError
from wfray.domain.records import LogRecord, RunRecord
from wfray.domain.workflow import WorkflowSchema


class Started(Protocol):
    """What the handlers act on, once wfray has started (bootstrap.System is one)."""

    @property
    def coordinator(self) -> Coordinator: ...

    @property
    def queries(self) -> Queries: ...

    @property
    def scheduler(self) -> Scheduler: ...


class Desk(Protocol):
    """Where the commands arrive (the coordinator host): it starts wfray and waits for it."""

    async def ready(self, wait_s: float = ...) -> Started: ...


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
    await (await _coordinator(desk)).register(command.schemas)


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


async def cancel(desk: Desk, command: Cancel) -> list[CommandResult]:
    coordinator = await _coordinator(desk)
    return await coordinator.cancel(command.run_ids, command.reason, command.compensate)


async def resume(desk: Desk, command: Resume) -> list[CommandResult]:
    return await (await _coordinator(desk)).resume(command.run_ids)


async def retry_compensation(desk: Desk, command: RetryCompensation) -> list[CommandResult]:
    return await (await _coordinator(desk)).retry_compensation(command.run_ids)


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
    return await asyncio.to_thread(
        queries.list_runs,
        c.workflow,
        c.status,
        c.limit,
        c.created_after,
        c.created_before,
        c.position,
    )


async def logs(desk: Desk, c: Logs) -> list[LogRecord]:
    queries = (await desk.ready()).queries
    return await asyncio.to_thread(queries.logs, c.run_id, c.step, c.after_id, c.limit)


async def workflows(desk: Desk, command: Workflows) -> list[WorkflowSchema]:
    queries = (await desk.ready()).queries
    return await asyncio.to_thread(queries.workflows)


# -- schedules -----------------------------------------------------------------------------------


async def upsert_schedule(desk: Desk, command: UpsertSchedule) -> bool:
    return await (await _scheduler(desk)).upsert(command.spec)


async def declare_schedules(desk: Desk, command: DeclareSchedules) -> None:
    await (await _scheduler(desk)).declare(command.specs)


async def delete_schedule(desk: Desk, command: DeleteSchedule) -> None:
    await (await _scheduler(desk)).delete(command.name)


async def pause_schedule(desk: Desk, command: PauseSchedule) -> None:
    await (await _scheduler(desk)).pause(command.name)


async def resume_schedule(desk: Desk, command: ResumeSchedule) -> None:
    await (await _scheduler(desk)).resume(command.name)


async def trigger_schedule(desk: Desk, command: TriggerSchedule) -> SubmitResult:
    return await (await _scheduler(desk)).trigger(command.name)


async def list_schedules(desk: Desk, command: ListSchedules) -> list[ScheduleInfo]:
    return await (await _scheduler(desk)).list_schedules(command.count)


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
}
