"""Dispatching: ready tasks become attempts on the executors, and the queued backlog waiting
in the store is paged into memory as room frees."""

from __future__ import annotations

import asyncio
import functools
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from wfray.application.batch import Batch
from wfray.application.messages import UNREADABLE_ENV, ArgSpec, Dispatch, Outcome
from wfray.coordinator.durable import DurableStore
from wfray.coordinator.heartbeats import START_GRACE_S, HeartbeatWatch
from wfray.coordinator.loading import RunLoader
from wfray.coordinator.settings import CoordinatorSettings
from wfray.coordinator.state import CoordinatorState
from wfray.domain import engine
from wfray.domain.policy import FailureInfo
from wfray.domain.records import AttemptRecord, TaskRecord
from wfray.domain.run_state import RunState
from wfray.domain.status import AttemptStatus, TaskStatus
from wfray.domain.workflow import StepSchema

# Attempts running at most, for workers to report outcomes to the coordinator directly:
# one call per outcome beats the executor's batched path on latency, not on throughput.
LIGHT_LOAD = 16


def count_failure(task: TaskRecord, outcome: Outcome) -> FailureInfo:
    """What the retry policy needs of a failed attempt; counts it on the task."""
    lost = outcome.status is AttemptStatus.LOST
    if lost:
        task.lost += 1
    else:
        task.failures += 1
    return FailureInfo(
        error_type=outcome.error_type or "wfray.UnknownError",
        message=outcome.error_message or "",
        retryable=outcome.retryable,
        retry_after_s=outcome.retry_after_s,
        lost=lost,
    )


@functools.lru_cache(maxsize=1024)
def held_resources(
    pool: str, num_cpus: float | None, resources: tuple[tuple[str, float], ...]
) -> str:
    """What one attempt holds while it runs, for cost accounting (resource-seconds)."""
    held = dict(resources)
    if pool == "cpu":
        held["CPU"] = 1.0 if num_cpus is None else num_cpus
    return json.dumps(held, sort_keys=True)


class Placement(Protocol):
    """Which executor of a pool takes the next attempt (reconciler.py)."""

    def executor_for(self, pool: str) -> str: ...
    def incarnation(self, executor: str) -> str: ...


class Launcher:
    """Records new attempts and builds what their executors get."""

    def __init__(
        self,
        state: CoordinatorState,
        placement: Placement,
        heartbeats: HeartbeatWatch,
        settings: CoordinatorSettings,
    ) -> None:
        self.state = state
        self.placement = placement
        self.heartbeats = heartbeats
        self.share_short_steps = settings.share_short_steps

    def _shareable(self, workflow: str, task: TaskRecord, step: StepSchema, kind: str) -> bool:
        """May this attempt share a Ray task with others (coordinator/shared_tasks.py)?"""
        return (
            self.share_short_steps
            and kind == "step"
            and task.pool == "cpu"
            and step.timeout_s is None
            and step.heartbeat_timeout_s is None
            and self.state.short_steps.is_short(workflow, task.step)
        )

    def launch(
        self,
        state: RunState,
        task: TaskRecord,
        fn: str,
        args: dict[str, ArgSpec],
        batch: Batch,
        now: datetime,
        kind: str = "step",
    ) -> Dispatch:
        """Record a new attempt of a task (dispatched now) and build what the executor gets."""
        memory = self.state
        executor = self.placement.executor_for(task.pool)
        attempt = AttemptRecord(
            run_id=task.run_id,
            step=task.step,
            map_index=task.map_index,
            attempt=task.attempts,
            status=AttemptStatus.RUNNING,
            executor=executor,
            incarnation=self.placement.incarnation(executor),
            queued_at=now,
            kind=kind,
        )
        step = state.schema.step(task.step)
        attempt.resources_json = held_resources(
            task.pool, step.num_cpus, tuple(step.resources.items())
        )
        batch.insert_attempt(attempt)
        key = (task.run_id, task.step, task.map_index, task.attempts)
        light_load = len(memory.attempts) < LIGHT_LOAD
        memory.attempt_started(key, attempt)
        if kind == "step" and step.heartbeat_timeout_s is not None:
            self.heartbeats.watch(key, step.heartbeat_timeout_s, now, START_GRACE_S)
        env_hash = state.run.env_hash
        # loaded with the run (loading.py); one that cannot be read fails in its executor
        runtime_env = None if env_hash is None else memory.envs.get(env_hash, UNREADABLE_ENV)
        return Dispatch(
            run_id=task.run_id,
            workflow=state.run.workflow,
            step=task.step,
            map_index=task.map_index,
            attempt=task.attempts,
            fn=fn,
            args=args,
            pool=task.pool,
            num_cpus=step.num_cpus,
            resources=dict(step.resources),
            timeout_s=step.timeout_s,
            heartbeat_timeout_s=step.heartbeat_timeout_s,
            report_directly=light_load,
            shareable=not light_load and self._shareable(state.run.workflow, task, step, kind),
            kind=kind,
            env_hash=env_hash,
            runtime_env_json=runtime_env or None,
        )


@dataclass(eq=False)
class Dispatcher:
    state: CoordinatorState
    launcher: Launcher
    loader: RunLoader
    durable: DurableStore
    wake: asyncio.Event

    def dispatch(self, batch: Batch, now: datetime, touched: set[str]) -> list[Dispatch]:
        memory = self.state
        dispatches = []
        for task in memory.queues.select(now):
            state = memory.runs.get(task.run_id)
            if state is None or task.status is not TaskStatus.QUEUED:
                # cancelled while it waited (its run failed): free the slot for another turn
                memory.queues.finished(task)
                self.wake.set()
                continue
            memory.queued_count -= 1
            touched.add(task.run_id)
            step = state.schema.step(task.step)
            memory.record(state, engine.mark_dispatched(state, task, now), batch)
            args = memory.args.build(state, step, task)
            dispatches.append(self.launcher.launch(state, task, step.fn, args, batch, now))
        return dispatches

    async def page_in(self) -> None:
        memory = self.state
        for queue, boundary, room in memory.queues.needs_page():
            # the store pages strictly after (priority, seq); the boundary is inclusive
            after = None if boundary is None else (-boundary[0], boundary[1] - 1)
            tasks = await self.durable.call(self.durable.store.page_queued, queue, after, room)
            await self.loader.load_runs({t.run_id for t in tasks if t.run_id not in memory.runs})
            fresh = []
            for task in tasks:
                state = memory.runs.get(task.run_id)
                live = state.tasks.get(task.key) if state else None
                if live is not None and live.status is TaskStatus.QUEUED:
                    fresh.append(live)
            memory.queues.paged(queue, fresh, room)
            if fresh:
                self.wake.set()
