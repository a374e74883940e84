"""Bringing runs and workflow schemas from the store into the coordinator's memory."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

from wfray.coordinator.durable import DurableStore
from wfray.coordinator.state import CoordinatorState
from wfray.domain.code_env import CodeEnv
from wfray.domain.errors import InputValidationError, UnknownWorkflowError
from wfray.domain.records import TaskRecord
from wfray.domain.workflow import WorkflowSchema

log = logging.getLogger("wfray.coordinator")


def ray_options_json(env: CodeEnv) -> str:
    """What a dispatch carries of an environment: the `runtime_env` Ray builds, as JSON
    ("" when there is nothing to build, as for an environment of variable names only)."""
    options = env.ray_options()
    return json.dumps(options, sort_keys=True, separators=(",", ":")) if options else ""


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

    def remember_env(self, env: CodeEnv) -> None:
        self.state.envs[env.hash] = ray_options_json(env)

    async def load_envs(self, env_hashes: Iterable[str | None]) -> set[str]:
        """Bring these runtime environments into memory (those not there yet); the hashes
        the store does not hold are returned."""
        wanted = {h for h in env_hashes if h is not None and h not in self.state.envs}
        if not wanted:
            return set()
        stored = await self.durable.call(self.durable.store.get_runtime_envs, sorted(wanted))
        for env_hash, text in stored.items():
            try:
                self.remember_env(CodeEnv.from_json(text))
            except (ValueError, InputValidationError) as exc:
                # a row that no longer reads: its runs' attempts fail, the others go on
                log.error("runtime env %s cannot be read: %s", env_hash, exc)
                continue
        return wanted - set(self.state.envs)

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
        await self.load_envs(run.env_hash for run in runs.values())
        for run in runs.values():
            if run.run_id not in self.state.runs:
                self.state.adopt(
                    run, tasks_of[run.run_id], await self.schema(run.workflow, run.version)
                )
