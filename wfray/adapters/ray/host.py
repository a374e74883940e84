"""Hosts the Ray-free Coordinator in a named, detached Ray actor, and the executors beside it.

The decoration happens here, in one factory, as Ray Serve wraps its plain ServeController.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from wfray.adapters.ray.autoscale import start_autoscaling
from wfray.adapters.ray.executor import (
    CpuExecutor,
    Envelope,
    ExecutorConfig,
    IoExecutor,
    collect_garbage_rarely,
)
from wfray.adapters.ray.metrics import export_forever
from wfray.application.claims import ClaimView
from wfray.application.coordinator import Coordinator
from wfray.application.messages import (
    CommandResult,
    Dispatch,
    Drained,
    ExecutorSnapshot,
    RunView,
    SubmitRequest,
    SubmitResult,
)
from wfray.application.ports import RunStore
from wfray.application.queries import Queries
from wfray.application.schedule_ports import ScheduleStore
from wfray.application.scheduler import ScheduleInfo, Scheduler
from wfray.application.step_runner import RunnerSettings
from wfray.application.wire import Sealed, SealedBatch, SealedSnapshot, open_outcome
from wfray.bootstrap import MEMORY_URL, SystemClock, build_coordinator, build_store
from wfray.config import Settings
from wfray.domain.errors import WfrayError
from wfray.domain.records import LogRecord
from wfray.domain.schedule import ScheduleSpec
from wfray.domain.workflow import WorkflowSchema

log = logging.getLogger("wfray.host")

COORDINATOR_NAME = "wfray-coordinator"
START_WAIT_S = 20.0
SCHEDULER_TICK_S = 1.0  # the default; Settings.scheduler_tick_s overrides it when present


def executor_name(executor: str) -> str:
    """The Ray actor name of an executor: "cpu", "io", "io.1", ... (application/reconciler.py)."""
    return f"wfray-executor-{executor}"


def io_executor_ids(settings: Settings) -> list[str]:
    return ["io", *(f"io.{i}" for i in range(1, settings.io_executors))]


def executor_actor_names(namespace: str) -> list[str]:
    """The executor actors running in a namespace, whatever they were configured as."""
    return [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["namespace"] == namespace and a["name"].startswith(executor_name(""))
    ]


def stop_unconfigured_executors(settings: Settings) -> None:
    """io executors left from a start with more of them: stopped, so that no attempt runs
    on there unseen (the coordinator records their attempts as lost and runs them again)."""
    wanted = {executor_name(e) for e in ["cpu", *io_executor_ids(settings)]}
    for name in executor_actor_names(settings.namespace):
        if name not in wanted:
            log.warning("stopping executor %s: no longer configured", name)
            with contextlib.suppress(ValueError):
                ray.kill(ray.get_actor(name, namespace=settings.namespace), no_restart=True)


class ActorExecutor:
    """The StepExecutor port over an executor actor's handle."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    async def dispatch(self, dispatches: list[Dispatch], epoch: int) -> None:
        await self.handle.dispatch.remote([Envelope.of(d) for d in dispatches], epoch)

    async def drain(self, ack: int, wait_s: float, epoch: int) -> Drained:
        drained: SealedBatch = await self.handle.drain.remote(ack, wait_s, epoch)
        return drained.opened()

    async def snapshot(self, ack: int, epoch: int) -> ExecutorSnapshot:
        snapshot: SealedSnapshot = await self.handle.snapshot.remote(ack, epoch)
        return snapshot.opened()

    async def cancel(self, attempts: list[tuple[str, str, int, int]]) -> None:
        await self.handle.cancel.remote(attempts)


def executor_config(settings: Settings) -> ExecutorConfig:
    return ExecutorConfig(
        blob_root=settings.blob_root,
        runner=RunnerSettings(
            blob_threshold_bytes=settings.blob_threshold_bytes,
            max_result_bytes=settings.max_result_bytes,
            log_limit=settings.log_limit,
            secret_dir=settings.secret_dir,
            max_log_line_chars=settings.max_log_line_chars,
        ),
        io_concurrency=settings.io_concurrency,
        attempts_per_task=settings.cpu_attempts_per_task,
        namespace=settings.namespace,
        io_sync_timeout_s=settings.io_sync_timeout_s,
    )


def start_executors(settings: Settings) -> dict[str, Any]:
    """Get or create the detached executor actors, one per pool."""
    config = executor_config(settings)
    stop_unconfigured_executors(settings)
    common: dict[str, Any] = {
        "namespace": settings.namespace,
        "lifetime": "detached",
        "max_restarts": -1,
        "max_task_retries": 0,
        "get_if_exists": True,
        "num_cpus": 0,
    }
    # several io executors go to different nodes where they can: SPREAD
    io_options = dict(common, scheduling_strategy="SPREAD")
    if ray.cluster_resources().get("io", 0) >= 1:
        io_options["resources"] = {"io": 1}
    io_actor = ray.remote(IoExecutor)
    executors: dict[str, Any] = {
        "cpu": ray.remote(CpuExecutor).options(name=executor_name("cpu"), **common).remote(config)
    }
    for executor in io_executor_ids(settings):
        options = dict(io_options, name=executor_name(executor))
        executors[executor] = io_actor.options(**options).remote(config)
    return executors


class CoordinatorHost:
    """The actor body: builds the coordinator on (re)start and recovers from the store."""

    def __init__(self, settings: Settings) -> None:
        logging.basicConfig(level=logging.INFO)
        collect_garbage_rarely()
        self.settings = settings
        self.coordinator: Coordinator | None = None
        self.queries: Queries | None = None
        self._starter: asyncio.Task[None] | None = None
        self._started: asyncio.Event | None = None
        self._start_error: Exception | None = None
        self._autoscale_loop: asyncio.Task[None] | None = None
        self.scheduler: Scheduler | None = None
        self._scheduler_loop: asyncio.Task[None] | None = None
        # __init__ cannot await: a call to ourselves starts recovery as soon as we are up,
        # so a restarted coordinator resumes its runs without waiting for a client
        ray.get_runtime_context().current_actor.start.remote()

    async def start(self, wait_s: float = START_WAIT_S) -> None:
        """Start (or keep trying to start) the coordinator; fail clearly if it has not
        started within `wait_s` (a busy cluster may need the client's whole budget)."""
        if self._starter is None:
            self._started = asyncio.Event()
            self._starter = asyncio.create_task(self._keep_starting())
        assert self._started is not None
        if self.coordinator is None:
            asked_at = time.monotonic()
            try:
                await self._wait_started(wait_s)
            except TimeoutError:
                kind = type(self._start_error) if self._start_error else WfrayError
                if not issubclass(kind, WfrayError):
                    kind = WfrayError
                raise kind(
                    f"wfray could not start within {time.monotonic() - asked_at:.0f}s: "
                    f"{self._start_error or 'still starting'}"
                ) from None

    async def _wait_started(self, wait_s: float) -> None:
        """Until started. A start that keeps failing (the store unreachable, say) is given up
        after START_WAIT_S; one that is only slow (a loaded cluster) gets all of `wait_s`."""
        assert self._started is not None
        deadline = time.monotonic() + wait_s
        failing_since = time.monotonic() + START_WAIT_S
        while True:
            left = deadline - time.monotonic()
            if self._start_error is not None:
                left = min(left, failing_since - time.monotonic())
            if left <= 0:
                raise TimeoutError
            try:
                await asyncio.wait_for(asyncio.shield(self._started.wait()), min(left, 1.0))
                return
            except TimeoutError:
                continue

    async def _keep_starting(self) -> None:
        # keeps trying (say, while the database is down) so a restarted coordinator
        # resumes its runs by itself, without waiting for a client call
        delay = 0.5
        while True:
            try:
                await self._start()
            except Exception as exc:
                self._start_error = exc
                log.warning("coordinator start failed, retrying in %.1fs: %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            assert self._started is not None
            self._started.set()
            return

    async def _start(self) -> None:
        store = await asyncio.to_thread(build_store, self.settings)
        handles = start_executors(self.settings)
        executors = {pool: ActorExecutor(h) for pool, h in handles.items()}
        coordinator = build_coordinator(self.settings, store, dict(executors))
        await coordinator.start()
        assert coordinator._loop_task is not None
        coordinator._loop_task.add_done_callback(_crash_on_failure)
        self.queries = Queries(store)
        self.scheduler = Scheduler(
            build_schedule_store(self.settings, store), coordinator, SystemClock()
        )
        tick_s = float(getattr(self.settings, "scheduler_tick_s", SCHEDULER_TICK_S))
        self._scheduler_loop = asyncio.create_task(
            self.scheduler.run_forever(tick_s), name="wfray-scheduler-loop"
        )
        self._autoscale_loop = start_autoscaling(self.settings, coordinator)
        self._metrics_loop = asyncio.create_task(
            export_forever(coordinator), name="wfray-metrics-export"
        )
        self.coordinator = coordinator

    async def _ready(self) -> Coordinator:
        await self.start()
        assert self.coordinator is not None
        return self.coordinator

    async def register(self, schemas: Sequence[WorkflowSchema]) -> None:
        await (await self._ready()).register(schemas)

    async def submit(self, requests: Sequence[SubmitRequest]) -> list[SubmitResult]:
        return await (await self._ready()).submit(requests)

    async def wait(self, run_ids: Sequence[str], timeout_s: float) -> list[RunView]:
        return await (await self._ready()).wait(run_ids, timeout_s)

    async def submit_and_wait(
        self, requests: Sequence[SubmitRequest], timeout_s: float
    ) -> tuple[list[SubmitResult], list[RunView]]:
        return await (await self._ready()).submit_and_wait(requests, timeout_s)

    async def views(self, run_ids: Sequence[str]) -> list[RunView]:
        return await (await self._ready()).views(run_ids)

    async def query(self, name: str, *args: Any, **kwargs: Any) -> Any:
        await self._ready()
        assert self.queries is not None
        return await asyncio.to_thread(self.queries.call, name, *args, **kwargs)

    async def cancel(
        self, run_ids: Sequence[str], reason: str = "", compensate: bool = True
    ) -> list[CommandResult]:
        return await (await self._ready()).cancel(run_ids, reason, compensate)

    async def retry_compensation(self, run_ids: Sequence[str]) -> list[CommandResult]:
        return await (await self._ready()).retry_compensation(run_ids)

    async def publish(
        self,
        name: str,
        payload_json: str,
        event_id: str,
        source: str = "client",
        inputs: Mapping[str, str] | None = None,
        keys: Mapping[str, str] | None = None,
    ) -> list[str]:
        coordinator = await self._ready()
        return await coordinator.publish(name, payload_json, event_id, source, inputs, keys)

    async def next_value(self, counter: str, count: int = 1) -> int:
        return await (await self._ready()).next_value(counter, count)

    async def claim(self, key: str, attempt: tuple[str, str, int, int], ttl_s: float) -> ClaimView:
        return await (await self._ready()).claims.claim(key, attempt, ttl_s)

    async def finish_claim(
        self, key: str, attempt: tuple[str, str, int, int], result_json: str
    ) -> ClaimView:
        return await (await self._ready()).claims.done(key, attempt, result_json)

    async def claimed(
        self, key: str, asker: tuple[str, str, int, int] | None = None
    ) -> ClaimView | None:
        return await (await self._ready()).claims.read(key, asker)

    async def run_claims(self, run_ids: Sequence[str]) -> list[ClaimView]:
        return await (await self._ready()).claims.of_runs(list(run_ids))

    async def report(self, pool: str, outcome: Sealed) -> None:
        (await self._ready()).report(pool, open_outcome(outcome))

    async def append_logs(self, lines: Sequence[LogRecord]) -> bool:
        """Answers once the lines are committed (the worker keeps them until then)."""
        return await (await self._ready()).append_logs(lines)

    async def heartbeat(
        self, beats: Sequence[tuple[tuple[str, str, int, int], str | None]]
    ) -> None:
        (await self._ready()).heartbeat(beats)

    async def resume(self, run_ids: Sequence[str]) -> list[CommandResult]:
        return await (await self._ready()).resume(run_ids)

    async def stats(self) -> dict[str, object]:
        return (await self._ready()).stats()

    async def pid(self) -> int:
        return os.getpid()

    # -- schedules ---------------------------------------------------------------------------

    async def _ready_scheduler(self) -> Scheduler:
        await self._ready()
        assert self.scheduler is not None
        return self.scheduler

    async def upsert_schedule(self, spec: ScheduleSpec) -> bool:
        return await (await self._ready_scheduler()).upsert(spec)

    async def declare_schedules(self, specs: Sequence[ScheduleSpec]) -> None:
        await (await self._ready_scheduler()).declare(specs)

    async def delete_schedule(self, name: str) -> None:
        await (await self._ready_scheduler()).delete(name)

    async def pause_schedule(self, name: str) -> None:
        await (await self._ready_scheduler()).pause(name)

    async def resume_schedule(self, name: str) -> None:
        await (await self._ready_scheduler()).resume(name)

    async def trigger_schedule(self, name: str) -> SubmitResult:
        return await (await self._ready_scheduler()).trigger(name)

    async def list_schedules(self, count: int = 3) -> list[ScheduleInfo]:
        return await (await self._ready_scheduler()).list_schedules(count)


def build_schedule_store(settings: Settings, runs: RunStore) -> ScheduleStore:
    """The schedule store beside the run store: the same database (and engine) or memory."""
    if settings.database_url == MEMORY_URL:
        from wfray.adapters.memory.schedule_store import InMemoryScheduleStore

        return InMemoryScheduleStore()
    from wfray.adapters.sqlalchemy.schedule_store import SqlScheduleStore
    from wfray.adapters.sqlalchemy.store import SqlRunStore

    if isinstance(runs, SqlRunStore):
        return SqlScheduleStore(runs.engine)
    return SqlScheduleStore(settings.database_url)


def _crash_on_failure(task: asyncio.Task[None]) -> None:
    if task.cancelled() or task.exception() is None:
        return
    log.critical("coordinator loop died; restarting the actor", exc_info=task.exception())
    os._exit(1)  # Ray restarts the actor (max_restarts=-1) and it recovers from the store


def coordinator_actor(settings: Settings, *, node_id: str | None = None) -> Any:
    """Get or create the coordinator actor, pinned to `node_id` (default: this node)."""
    pin = node_id or ray.get_runtime_context().get_node_id()
    return (
        ray.remote(CoordinatorHost)
        .options(
            name=COORDINATOR_NAME,
            namespace=settings.namespace,
            lifetime="detached",
            max_restarts=-1,
            max_task_retries=0,
            get_if_exists=True,
            num_cpus=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(pin, soft=False),
        )
        .remote(settings)
    )
