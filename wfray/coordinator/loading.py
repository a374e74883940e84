"""Bringing runs and workflow schemas from the store into the coordinator's memory."""

from __future__ import annotations

from wfray.coordinator.durable import DurableStore
from wfray.coordinator.state import CoordinatorState
from wfray.domain.errors import UnknownWorkflowError
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
        tasks = await self.durable.call(store.get_tasks, ids)
        for run in runs.values():
            if run.run_id not in self.state.runs:
                self.state.adopt(
                    run,
                    [t for t in tasks if t.run_id == run.run_id],
                    await self.schema(run.workflow, run.version),
                )
