"""How wfray's Ray actors, tasks and Serve deployment are made and found.

The one module that applies `ray.remote` and `serve.deployment`: the classes it wraps (the
coordinator host, the executors, the HTTP API) are plain, as Ray Serve wraps its plain
ServeController in `controller_actor_class.py`. Nothing here runs at import time.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from collections.abc import Callable
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from wfray.adapters.ray.envelopes import Envelope
from wfray.adapters.ray.executor import (
    CpuExecutor,
    ExecutorConfig,
    collect_garbage_rarely,
    run_cpu_attempts,
)
from wfray.adapters.ray.host import (
    COORDINATOR_NAME,
    Build,
    CoordinatorHost,
    executor_actor_names,
    executor_name,
    io_executor_ids,
)
from wfray.adapters.ray.io_executor import IoEnvRunner, IoExecutor
from wfray.adapters.ray.versions import check_actors_async
from wfray.application.messages import Dispatch, Drained, ExecutorSnapshot
from wfray.application.ports import StepExecutor
from wfray.application.wire import SealedBatch, SealedSnapshot
from wfray.config import Settings
from wfray.worker.step_runner import RunnerSettings

log = logging.getLogger("wfray.actors")

# Detached so they outlive the process that made them; restarted by Ray for ever; a call is
# never retried by Ray (wfray decides what a lost call means); no CPU held (2-core machines).
DETACHED: dict[str, Any] = {
    "lifetime": "detached",
    "max_restarts": -1,
    "max_task_retries": 0,
    "get_if_exists": True,
    "num_cpus": 0,
}


# -- the coordinator -----------------------------------------------------------------------------


def restarted_by_ray() -> bool:
    """Whether Ray restarted the actor this runs in (asks the GCS: not in a constructor)."""
    return bool(ray.get_runtime_context().was_current_actor_reconstructed)


class CoordinatorActor(CoordinatorHost):
    """The coordinator host as Ray runs it, in a process of its own.

    Ray awaits an async constructor on the actor's event loop, so the start can be set going
    here without a Ray call: a restarted coordinator resumes its runs by itself, before any
    client asks. Whether Ray restarted it is asked by that start (`restarted`): an error
    raised in a constructor fails the actor's creation for good, and a GCS call there
    would hold up every creation and restart.
    """

    async def __init__(  # type: ignore[misc]
        self, settings: Settings, build: Build, restarted: Callable[[], bool]
    ) -> None:
        logging.basicConfig(level=logging.INFO)
        collect_garbage_rarely()
        super().__init__(settings, build, restarted)
        self.begin_start()


HEAD_NODE_RESOURCE = "node:__internal_head__"  # Ray gives it to the head node only


def store_is_local(settings: Settings) -> bool:
    """True when the store is a file on the node that opens it (SQLite)."""
    return settings.database_url.startswith("sqlite")


def head_node_id() -> str | None:
    """The head node's id, while it is alive."""
    for node in ray.nodes():
        if node.get("Alive") and HEAD_NODE_RESOURCE in node.get("Resources", {}):
            return str(node["NodeID"])
    return None


def coordinator_placement(settings: Settings, node_id: str | None) -> Any:
    """Where the coordinator runs, and where Ray may restart it.

    A SQLite store is a file on the node that created it: the coordinator is pinned there
    (`node_id`, default this node), as a restart anywhere else would open an empty store.
    A shared store (PostgreSQL) lets it run anywhere: it prefers the head (`node_id`,
    default the head, else this node) but is not bound to it, so that when that node dies
    Ray restarts the coordinator on a node that lives.
    """
    if store_is_local(settings):
        pin = node_id or ray.get_runtime_context().get_node_id()
        return NodeAffinitySchedulingStrategy(pin, soft=False)
    preferred = node_id or head_node_id() or ray.get_runtime_context().get_node_id()
    return NodeAffinitySchedulingStrategy(preferred, soft=True)


def coordinator_actor(
    settings: Settings,
    build: Build,
    *,
    node_id: str | None = None,
    runtime_env: dict[str, Any] | None = None,
) -> Any:
    """Get or create the coordinator actor, placed by `coordinator_placement`, hosting what
    `build` makes (a module-level function: Ray sends it by name; bootstrap picks it); a new
    one in `runtime_env` if given (an upgrade's: upgrade.py), else in this job's."""
    options = dict(DETACHED, name=COORDINATOR_NAME, namespace=settings.namespace)
    if runtime_env is not None:
        options["runtime_env"] = runtime_env
    return (
        ray.remote(CoordinatorActor)
        .options(scheduling_strategy=coordinator_placement(settings, node_id), **options)
        .remote(settings, build, restarted_by_ray)
    )


# -- the executors -------------------------------------------------------------------------------


@functools.cache
def _cpu_attempts_task() -> Any:
    return ray.remote(max_retries=0)(run_cpu_attempts)


@functools.lru_cache(maxsize=4096)
def cpu_attempts_task(
    num_cpus: float,
    resources: tuple[tuple[str, float], ...],
    name: str,
    env_json: str | None = None,
) -> Any:
    """The Ray task running cpu attempts with this resource shape, under the name the Ray
    Dashboard lists it by (`wfray:<workflow>.<step>`), in this runtime env (its JSON; None:
    the executor's own), as CpuExecutor launches it."""
    # .options() builds a new remote function each call: one per shape, name and env is enough
    options: dict[str, Any] = {"num_cpus": num_cpus, "name": name}
    if resources:
        options["resources"] = dict(resources)
    if env_json is not None:
        options["runtime_env"] = json.loads(env_json)
    return _cpu_attempts_task().options(**options)


def io_env_runner(config: ExecutorConfig, env_json: str) -> Any:
    """An actor running io attempts in one runtime env, owned by the io executor that asks
    (it dies with it). Not restarted: its owner starts another for the next attempt."""
    return (
        ray.remote(IoEnvRunner)
        .options(num_cpus=0, max_restarts=0, max_task_retries=0, runtime_env=json.loads(env_json))
        .remote(config)
    )


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
        attempts_per_shared_task=settings.cpu_attempts_per_task,
        namespace=settings.namespace,
        io_sync_timeout_s=settings.io_sync_timeout_s,
    )


def stop_unconfigured_executors(settings: Settings) -> None:
    """io executors left from a start with more of them: stopped, so that no attempt runs
    on there unseen (the coordinator records their attempts as lost and runs them again)."""
    wanted = {executor_name(e) for e in ["cpu", *io_executor_ids(settings)]}
    for name in executor_actor_names(settings.namespace):
        if name not in wanted:
            log.warning("stopping executor %s: no longer configured", name)
            with contextlib.suppress(ValueError):
                ray.kill(ray.get_actor(name, namespace=settings.namespace), no_restart=True)


def executor_actors(
    settings: Settings, runtime_env: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Get or create the detached executor actors: the cpu one and the io ones, by id
    ("cpu", "io", "io.1", ...); new ones in `runtime_env` if given, as for the coordinator."""
    config = executor_config(settings)
    stop_unconfigured_executors(settings)
    common = dict(DETACHED, namespace=settings.namespace)
    if runtime_env is not None:
        common["runtime_env"] = runtime_env
    # several io executors go to different nodes where they can: SPREAD
    io_options = dict(common, scheduling_strategy="SPREAD")
    if ray.cluster_resources().get("io", 0) >= 1:
        io_options["resources"] = {"io": 1}
    io_actor = ray.remote(IoExecutor)
    cpu_actor = ray.remote(CpuExecutor).options(name=executor_name("cpu"), **common)
    executors: dict[str, Any] = {"cpu": cpu_actor.remote(config, cpu_attempts_task)}
    for executor in io_executor_ids(settings):
        options = dict(io_options, name=executor_name(executor))
        executors[executor] = io_actor.options(**options).remote(config, io_env_runner)
    return executors


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


async def step_executors(settings: Settings) -> dict[str, StepExecutor]:
    """The coordinator's executors by id, each an actor reached through its handle and
    checked to run this wfray first (one found by name may be left from another release)."""
    handles = executor_actors(settings)
    where = f"in Ray namespace {settings.namespace!r}"
    who = {executor: f"the executor {executor_name(executor)} {where}" for executor in handles}
    await check_actors_async(handles, who, "this coordinator")
    return {executor: ActorExecutor(handle) for executor, handle in handles.items()}


# -- the HTTP API --------------------------------------------------------------------------------


def api_deployment(api_class: type[Any]) -> Any:
    """The Serve deployment of the HTTP API: `api_class` builds the FastAPI app in its
    replica (`__serve_build_asgi_app__`), after the replica imported the user's modules."""
    from ray import serve  # Serve pulls in the web stack: only where the API is served

    return serve.deployment(
        name="WfrayApi",
        # The replica waits on the coordinator; it needs no CPU of its own (2-core machines).
        ray_actor_options={"num_cpus": 0},
        # Serve's default (5) would let a few followed log streams hold every slot; requests
        # here mostly wait on the coordinator, so many can be in flight at once.
        max_ongoing_requests=64,
    )(serve.ingress()(api_class))
