"""The client's calls about schedules and the audit trail (Client inherits them)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wfray.application.client_commands import (
    Command,
    DeleteSchedule,
    ListSchedules,
    PauseSchedule,
    R,
    ReadAudit,
    ResumeSchedule,
    TriggerSchedule,
    UpsertSchedule,
)
from wfray.application.views import ScheduleInfo
from wfray.client.handle import RunHandle
from wfray.client.submission import (
    raise_refusal,
)
from wfray.domain.audit import AuditEntry, AuditQuery, Origin
from wfray.domain.schedule import ScheduleSpec
from wfray.sdk.definition import Workflow, WorkflowRef
from wfray.sdk.schedules import build_spec


class ScheduleCalls:
    """Schedules and the audit trail, over the client's `call`."""

    origin: Origin

    def call(self, command: Command[R], *, timeout_s: float = 60.0) -> R:
        raise NotImplementedError  # the Client's

    def register(
        self, *workflows: WorkflowRef, runtime_env: Mapping[str, Any] | None = None
    ) -> None:
        raise NotImplementedError  # the Client's

    def env_hash(self, runtime_env: Mapping[str, Any] | None = None) -> str | None:
        raise NotImplementedError  # the Client's

    def _handle(self, run_id: str, flow: Workflow | None) -> RunHandle:
        raise NotImplementedError  # the Client's

    # -- schedules -----------------------------------------------------------------------------

    def create_schedule(
        self,
        schedule: ScheduleSpec | WorkflowRef,
        /,
        *,
        origin: Origin | None = None,
        **options: Any,
    ) -> ScheduleSpec:
        """Create or update a cron schedule: a `wfray.Schedule`, or a workflow and the
        keyword arguments of `wfray.schedule` (name, cron, tz, input, misfire, overlap...).
        Its ticks start runs from now on; an update keeps how far it fired."""
        if isinstance(schedule, ScheduleSpec):
            if options:
                raise TypeError("pass either a Schedule or a workflow with options, not both")
            spec = schedule
        else:
            spec = build_spec(schedule, **options)
            self.register(schedule)
        if spec.env_hash is None:
            spec = spec.with_(env_hash=self.env_hash())
        self.call(UpsertSchedule(spec, origin or self.origin))
        return spec

    def delete_schedule(self, name: str, *, origin: Origin | None = None) -> None:
        """Delete a schedule; its runs stay. ScheduleNotFoundError if there is none."""
        self.call(DeleteSchedule(name, origin or self.origin))

    def pause_schedule(self, name: str, *, origin: Origin | None = None) -> None:
        """Stop firing until resumed; ticks that fall while paused never fire."""
        self.call(PauseSchedule(name, origin or self.origin))

    def resume_schedule(self, name: str, *, origin: Origin | None = None) -> None:
        self.call(ResumeSchedule(name, origin or self.origin))

    def trigger_schedule(self, name: str, *, origin: Origin | None = None) -> RunHandle:
        """Start a run of the schedule now, outside its cron."""
        result = self.call(TriggerSchedule(name, origin or self.origin))
        raise_refusal([result], [])
        return self._handle(result.run_id, None)

    def list_schedules(self, next_count: int = 3) -> list[ScheduleInfo]:
        """Every schedule with its next `next_count` fire times (none while paused)."""
        return self.call(ListSchedules(next_count))

    # -- the audit trail -------------------------------------------------------------------------

    def audit(self, query: AuditQuery | None = None, **filters: Any) -> list[AuditEntry]:
        """Audit entries, newest first: an `AuditQuery`, or its fields as keywords (actor,
        action, target, since, until, before_id, limit)."""
        return self.call(ReadAudit(query or AuditQuery(**filters)))
