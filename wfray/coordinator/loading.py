"""Bringing runs and workflow schemas from the store into the coordinator's memory."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from wfray.coordinator.collection import collection
from wfray.coordinator.durable import DurableStore
from wfray.coordinator.state import CoordinatorState
from wfray.domain.code_env import CodeEnv
from wfray.domain.errors import InputValidationError, UnknownWorkflowError
from wfray.domain.records import RunRecord, TaskRecord
from wfray.domain.results import CollectFailed
from wfray.domain.run_state import RunState
from wfray.domain.status import TaskStatus
from wfray.domain.workflow import WorkflowSchema

log = logging.getLogger("wfray.coordinator")


def ray_options_json(env: CodeEnv) -> str:
    """What a dispatch carries of an environment: the `runtime_env` Ray builds, as JSON
    ("" when there is nothing to build, as for an environment of variable names only)."""
    options = env.ray_options()
    return json.dumps(options, sort_keys=True, separators=(",", ":")) if options else ""


@dataclass(eq=False)
class RunLoader:
    state: CoordinatorState
    durable: DurableStore

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
        runs = await self.durable.call(self.durable.store.find_runs, sorted(run_ids))
        await self.adopt([run for run in runs.values() if run.run_id not in self.state.runs])

    async def adopt(self, runs: list[RunRecord]) -> list[RunState]:
        """Hold these runs with their tasks (grouped once: a page of N runs costs N, not N
        squared), less the completed items of fan-outs wider than the memory cap (counted
        instead); those fan-outs that completed are collected here, for the steps that take
        them. Their runtime environments come with them."""
        if not runs:
            return []
        store, memory = self.durable.store, self.state
        await self.load_envs(run.env_hash for run in runs)
        versions = {(run.workflow, run.version) for run in runs}  # a page: mostly one or two
        schemas = {version: await self.schema(*version) for version in versions}
        window = memory.settings.memory_cap
        ids = [run.run_id for run in runs]
        tasks, counts = await self.durable.call(store.live_tasks, ids, window)
        by_run: dict[str, list[TaskRecord]] = defaultdict(list)
        for task in tasks:
            by_run[task.run_id].append(task)
        adopted = []
        for run in runs:
            if run.run_id in memory.runs:  # adopted by another caller meanwhile
                continue
            schema = schemas[(run.workflow, run.version)]
            state = memory.adopt(run, by_run[run.run_id], schema, counts)
            if state.paged:
                await self._collect_done(state)
            adopted.append(state)
        return adopted

    async def _collect_done(self, state: RunState) -> None:
        for step in sorted(state.paged):
            group = state.task(step)
            if state.items_done.get(step) != group.map_count:
                continue
            if group.status not in (TaskStatus.RUNNING, TaskStatus.COMPLETED):
                continue
            if group.status is TaskStatus.RUNNING:  # its completion was not recorded yet
                limit = self.state.settings.max_result_bytes
                result = await collection(self.durable, state, step, limit)
                self.state.collected.append((state.run.run_id, step, result))
                continue
            done = await collection(self.durable, state, step)  # it was collected before
            if not isinstance(done, CollectFailed):
                state.collected[step] = done
