"""Read-side use cases: what operators and clients ask of the store."""

from __future__ import annotations

import json
from typing import Any

from wfray.application.ports import RunReader
from wfray.application.views import RunDetail
from wfray.domain.errors import RunNotFoundError
from wfray.domain.reads import LogQuery, RunFilter
from wfray.domain.records import LogRecord, RunRecord
from wfray.domain.workflow import WorkflowSchema


class Queries:
    def __init__(self, store: RunReader) -> None:
        self.store = store

    def run_detail(self, run_id: str) -> RunDetail:
        runs = self.store.find_runs([run_id])
        if run_id not in runs:
            raise RunNotFoundError(f"no run with id {run_id!r}")
        return RunDetail(
            run=runs[run_id],
            tasks=self.store.get_tasks([run_id]),
            attempts=self.store.get_attempts(run_id),
            children=self.store.child_runs([run_id]),
            claims=self.store.claims_of([run_id]),
            runtime_env=self._env_of(runs[run_id]),
        )

    def _env_of(self, run: RunRecord) -> dict[str, Any] | None:
        if run.env_hash is None:
            return None
        text = self.store.get_runtime_envs([run.env_hash]).get(run.env_hash)
        return None if text is None else dict(json.loads(text))

    def run_detail_page(
        self,
        run_id: str,
        limit: int,
        tasks_after: tuple[str, int] | None = None,
        attempts_after: tuple[str, int, int] | None = None,
    ) -> RunDetail:
        """A run with at most `limit` of its tasks and of its attempts, in key order after
        the given positions: a run of a million tasks is read a page at a time."""
        runs = self.store.find_runs([run_id])
        if run_id not in runs:
            raise RunNotFoundError(f"no run with id {run_id!r}")
        return RunDetail(
            run=runs[run_id],
            tasks=self.store.page_tasks(run_id, tasks_after, limit),
            attempts=self.store.page_attempts(run_id, attempts_after, limit),
            runtime_env=self._env_of(runs[run_id]),
            # on the first page only: a run of a million items claims at most that many keys
            claims=self.store.claims_of([run_id], limit)
            if tasks_after is None and attempts_after is None
            else [],
        )

    def list_runs(self, wanted: RunFilter) -> list[RunRecord]:
        return self.store.list_runs(wanted)

    def logs(self, wanted: LogQuery) -> list[LogRecord]:
        return self.store.get_logs(wanted)

    def workflows(self) -> list[WorkflowSchema]:
        return self.store.list_workflows()
