"""Bringing runs and workflow schemas from the store into the coordinator's memory."""

from __future__ import annotations

from wfray.application.durable import DurableStore
from wfray.application.state import CoordinatorState
from wfray.domain.errors import UnknownWorkflowError
from wfray.domain.records import TaskRecord
from wfray.domain.workflow import WorkflowSchema


class RunLoader:
    def __init__(self, state: CoordinatorState, durable: DurableStore) -> None:
        self.state = state
        self.durable = durable

    async def schema(self, name: str, version: str | None) -> WorkflowSchema:
        known = self.state.schemas
        if version is not None and (name, version) in known:
            return known[(name, version)]
        found = await self.durable.call(self.durable.store.get_workflow, name, version)
        if found is None:
            what = f"{name!r} version {version!r}" if version else repr(name)
            raise UnknownWorkflowError(f"unknown workflow {what}; register it before submitting")
        known[(found.name, found.version)] = found
        return found

    async def load_runs(self, run_ids: set[str]) -> None:
        """Bring runs (and their tasks) from the store into memory."""
        if not run_ids:
            return
        ids = sorted(run_ids)
        store = self.durable.store
        runs = await self.durable.call(store.find_runs, ids)
        tasks_of: dict[str, list[TaskRecord]] = {run_id: [] for run_id in ids}
        for task in await self.durable.call(store.get_tasks, ids):
            tasks_of[task.run_id].append(task)
        # grouped once: a page of N runs costs N, not N squared (a page is up to the
        # memory cap, 10,000 runs by default)
        for run in runs.values():
            if run.run_id not in self.state.runs:
                self.state.adopt(
                    run, tasks_of[run.run_id], await self.schema(run.workflow, run.version)
                )
