"""The client's reads: a run's detail and logs, lists of runs, counters, statistics
(Client inherits them)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from wfray.application.client_commands import Command, Detail, ListRuns, Logs, NextValue, R, Stats
from wfray.application.views import RunDetail
from wfray.client.handle import RunHandle
from wfray.domain.reads import LogQuery, RunFilter, run_status
from wfray.domain.records import LogRecord, RunRecord
from wfray.sdk.definition import Workflow


class ReadCalls:
    """Reads over the client's `call`."""

    def call(self, command: Command[R], *, timeout_s: float = 60.0) -> R:
        raise NotImplementedError  # the Client's

    def _handle(self, run_id: str, flow: Workflow | None) -> RunHandle:
        raise NotImplementedError  # the Client's

    def next_value(self, counter: str, count: int = 1) -> int:
        """Advance a counter owned by wfray's store; values are never handed out twice."""
        return self.call(NextValue(counter, count))

    def dead_letter(self, workflow: str | None = None, limit: int = 100) -> list[RunRecord]:
        """Runs whose compensation failed: they need attention (see `retry_compensation`)."""
        return self.list_runs(workflow, "compensation_failed", limit)

    def run(self, run_id: str) -> RunHandle:
        return self._handle(run_id, None)

    def detail(self, run_id: str) -> RunDetail:
        return self.call(Detail(run_id))

    def list_runs(
        self,
        workflow: str | None = None,
        status: str | None = None,
        limit: int = 100,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        position: tuple[datetime, str] | None = None,
    ) -> list[RunRecord]:
        """Runs, newest first, filtered by workflow, status and creation time; with
        `position` (created_at, run_id), those after it in that order."""
        wanted = RunFilter(
            workflow, run_status(status), limit, created_after, created_before, position
        )
        return self.call(ListRuns(wanted))

    def logs(
        self,
        run_id: str,
        step: str | None = None,
        after_id: int | None = None,
        limit: int | None = None,
    ) -> list[LogRecord]:
        """Log lines in order; with `after_id`, those after that line (`LogRecord.id`)."""
        return self.call(Logs(LogQuery(run_id, step, after_id, limit)))

    def stats(self) -> dict[str, Any]:
        return self.call(Stats())
