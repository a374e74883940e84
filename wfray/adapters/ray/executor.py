"""Executor actors: they launch the attempts of one pool, own them, and keep their outcomes.

Detached, so a coordinator restart kills no running step (under Ray's ownership model a
task dies with the process that submitted it). The cpu executor runs each attempt as a Ray
task holding a CPU; the io executor (io_executor.py) runs attempts as coroutines inside
itself, sync code in threads, many at a time. What both share is here too.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import math
import os
import pickle
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import ray
from ray import exceptions as rex

from wfray.adapters.blob import blob_store
from wfray.application.messages import UNREADABLE_ENV, Dispatch, Outcome
from wfray.application.wire import Sealed, SealedBatch, SealedSnapshot, open_dispatch, seal
from wfray.config import masked_repr
from wfray.coordinator.shared_tasks import ATTEMPTS_PER_SHARED_TASK, into_shared_tasks
from wfray.domain.records import AttemptKey, WorkerIdentity
from wfray.domain.status import AttemptStatus
from wfray.domain.versions import CURRENT
from wfray.worker.outbox import Outbox
from wfray.worker.step_runner import (
    RunnerSettings,
    run_attempt,
)

if TYPE_CHECKING:
    from wfray.adapters.ray.services import RayStepServices
from wfray.adapters.ray.envelopes import (
    Envelope,
    RunEnv,
    _by_name,
    _ended,
    _split_by_name,
    admitted,
    env_failed,
    package_failed,
    stopped,
    unreadable_env,
)
from wfray.adapters.ray.packages import PackageGuard

log = logging.getLogger("wfray.executor")
CANCEL_GRACE_S = 1.0
# A timed cpu attempt's clock starts when its worker begins it, not at launch: a worker that
# takes long to start on a busy node must not eat the step's time. If the start is never
# heard of (the message lost), the attempt is stopped this much after its timeout instead.
UNHEARD_START_GRACE_S = 120.0


@dataclass(frozen=True, slots=True)
class ExecutorConfig:
    blob_root: str | None = None
    runner: RunnerSettings = field(default_factory=RunnerSettings)
    io_concurrency: int = 64
    attempts_per_shared_task: int = ATTEMPTS_PER_SHARED_TASK
    namespace: str = "wfray"
    io_sync_timeout_s: float | None = None  # for sync io steps that set no timeout

    def __repr__(self) -> str:
        return masked_repr(self)  # blob_root may be an object store URI with a secret key


def collect_garbage_rarely() -> None:
    """For the long-lived actors on every step's path: the cyclic collector walked the
    coordinator's heap often enough to cost about 5% of its CPU under load (measured),
    while nearly everything they allocate dies young by reference counting alone."""
    gc.freeze()  # what start-up allocated stays: never scan it again
    gc.set_threshold(50_000, 20, 10)


@functools.cache
def step_services(namespace: str, blob_root: str | None) -> RayStepServices:
    """What steps in this process may ask of wfray (heartbeats, events, child runs)."""
    from wfray.adapters.ray.services import RayStepServices  # it needs the client: no cycle

    return RayStepServices(namespace, blob_root)


@functools.cache
def worker_identity() -> WorkerIdentity:
    """Who runs attempts here: fixed for the life of a worker process."""
    ctx = ray.get_runtime_context()
    return WorkerIdentity(
        node_id=ctx.get_node_id(),
        worker_id=ctx.get_worker_id(),
        host=socket.gethostname(),
        pid=os.getpid(),
    )


def config_prefix(config: ExecutorConfig) -> bytes:
    """The executor's config, sealed and length-prefixed, to go in front of each dispatch:
    one argument per task instead of two (each argument costs Ray about 0.1 ms of CPU)."""
    sealed = pickle.dumps(config)
    return len(sealed).to_bytes(4, "big") + sealed


def _opened_input(task_input: bytes) -> tuple[ExecutorConfig, list[Dispatch]]:
    size = int.from_bytes(task_input[:4], "big")
    sealed: list[Sealed] = pickle.loads(task_input[4 + size :])
    return _config(task_input[4 : 4 + size]), [open_dispatch(d) for d in sealed]


@functools.lru_cache(maxsize=8)
def _config(sealed: bytes) -> ExecutorConfig:
    config: ExecutorConfig = pickle.loads(sealed)
    return config


def run_cpu_attempts(task_input: bytes, executor: Any = None) -> list[Sealed]:
    """Attempts in a Ray worker process, one after the other (several only in a shared task:
    coordinator/shared_tasks.py): the executor's config and the sealed dispatches in, one
    sealed outcome per dispatch out. An attempt with a timeout comes alone, with the
    executor's handle: it hears when the attempt begins, and starts the clock then."""
    config, dispatches = _opened_input(task_input)
    if executor is not None:
        executor.attempt_started.remote(dispatches[0].attempt_key)
    blobs = blob_store(config.blob_root) if config.blob_root else None
    services = step_services(config.namespace, config.blob_root)
    outcomes = []
    for dispatch in dispatches:
        try:
            ended = run_attempt(dispatch, blobs, worker_identity(), config.runner, services)
        except Exception as exc:  # this attempt failed, not the task its siblings share
            message = f"the attempt failed outside its step: {type(exc).__name__}: {exc}"
            ended = Outcome.ended(
                dispatch.attempt_key, AttemptStatus.FAILED, "wfray.AttemptError", message
            )
        outcome = seal(ended)
        if dispatch.report_directly:
            services.report(dispatch.pool, outcome)
        outcomes.append(outcome)
    return outcomes


# The Ray task that runs `run_cpu_attempts` for a resource shape (num_cpus, resources) under
# a task name, in a runtime env (its JSON, or None): made in actors.py, where wfray applies
# ray.remote, and handed to the cpu executor.
CpuTasks = Callable[[float, tuple[tuple[str, float], ...], str, str | None], Any]


class CpuExecutor:
    """Owns cpu attempts as Ray tasks: one attempt per task, or, when many arrive at once,
    a few attempts of short steps in a shared task (coordinator/shared_tasks.py).

    Completions arrive as callbacks on Ray's threads; they are collected and handed to the
    event loop in bursts, so a thousand finishing tasks cost a few loop wake-ups, not a
    thousand coroutines.
    """

    def __init__(self, config: ExecutorConfig, cpu_tasks: CpuTasks) -> None:
        collect_garbage_rarely()
        self.config = config
        self.cpu_tasks = cpu_tasks
        self.prefix = config_prefix(config)
        self.outbox = Outbox()
        self.running: dict[AttemptKey, Any] = {}
        self.timed_out: set[AttemptKey] = set()
        # timed attempts: their timeout, and the timer that stops them (see attempt_started)
        self.timeouts: dict[AttemptKey, float] = {}
        self.timers: dict[AttemptKey, asyncio.TimerHandle] = {}
        # attempts cancelled in a shared task: the task runs on, their outcome is dropped
        self.dropped: set[AttemptKey] = set()
        self.in_shared_tasks: set[AttemptKey] = set()
        self._finished: list[tuple[tuple[Envelope, ...], Future[Any]]] = []
        self._lock = threading.Lock()
        self._flush_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cpus = (0.0, -math.inf)  # the cluster's CPUs, and when they were counted
        self.launched_tasks = 0
        self.launched_attempts = 0
        self.packages = PackageGuard(config.blob_root)
        # attempts waiting for their env's packages to be checked, and those of them a
        # cancel reached meanwhile (they are not launched)
        self.checking: set[AttemptKey] = set()
        self.cancelled_early: set[AttemptKey] = set()

    async def dispatch(self, envelopes: list[Envelope], epoch: int) -> None:
        if not admitted(self.outbox, envelopes, epoch):
            return
        self._loop = asyncio.get_running_loop()
        envelopes = await self._with_packages(envelopes)
        shareable: dict[tuple[float, tuple[tuple[str, float], ...], RunEnv | None], list[Envelope]]
        shareable = {}
        for e in envelopes:
            if e.env is not None and e.env[1] == UNREADABLE_ENV:
                self.outbox.put(unreadable_env(e.key))
            elif e.shareable:
                shareable.setdefault((e.num_cpus, e.resources, e.env), []).append(e)
            else:
                self._launch((e,))
        for group in shareable.values():
            group.sort(key=_by_name)  # mostly one step per task, so that it bears its name
            most = self.config.attempts_per_shared_task
            for shared in into_shared_tasks(group, self._cluster_cpus(), most):
                for same_step in _split_by_name(shared):
                    self._launch(same_step)

    async def _with_packages(self, envelopes: list[Envelope]) -> list[Envelope]:
        """The envelopes whose env's packages Ray has (put back if need be); the others'
        attempts fail here, saying which package is gone."""
        problems: dict[str, str | None] = {}
        keys = {e.key for e in envelopes}
        self.checking |= keys
        try:
            for env_json in {e.env[1] for e in envelopes if e.env and e.env[1] != UNREADABLE_ENV}:
                problems[env_json] = await self.packages.ensure(env_json)
        finally:
            self.checking -= keys
        kept = []
        for e in envelopes:
            problem = problems.get(e.env[1]) if e.env else None
            if e.key in self.cancelled_early:
                self.cancelled_early.discard(e.key)
                self.outbox.put(stopped(e.key, False, None))
            elif problem is None:
                kept.append(e)
            else:
                self.outbox.put(package_failed(e.key, problem))
        return kept

    def _launch(self, task_attempts: tuple[Envelope, ...]) -> None:
        first = task_attempts[0]
        task_input = self.prefix + pickle.dumps([e.dispatch for e in task_attempts])
        env_json = None if first.env is None else first.env[1]
        try:
            remote = self.cpu_tasks(first.num_cpus, first.resources, first.task_name, env_json)
            if len(task_attempts) == 1 and first.timeout_s is not None:
                ref = remote.remote(task_input, ray.get_runtime_context().current_actor)
            else:
                ref = remote.remote(task_input)
        except (ValueError, TypeError, rex.RayError) as exc:
            if env_json is None:
                raise
            # a runtime env Ray refuses to take: these attempts fail, the batch goes on
            for e in task_attempts:
                self.outbox.put(env_failed(e.key, exc))
            return
        for e in task_attempts:
            self.running[e.key] = ref
        self.launched_tasks += 1
        self.launched_attempts += len(task_attempts)
        if len(task_attempts) > 1:
            self.in_shared_tasks.update(e.key for e in task_attempts)
        elif first.timeout_s is not None:  # never shared: shared_tasks.py
            assert self._loop is not None
            self.timeouts[first.key] = first.timeout_s
            grace = first.timeout_s + UNHEARD_START_GRACE_S
            self.timers[first.key] = self._loop.call_later(grace, self._time_out, first.key)
        ref.future().add_done_callback(functools.partial(self._done, task_attempts))

    async def attempt_started(self, key: AttemptKey) -> None:
        """A timed attempt's worker began it: its timeout counts from now."""
        timer = self.timers.pop(key, None)
        if timer is None or key not in self.running:
            return
        timer.cancel()
        timeout_s = self.timeouts.get(key)
        if timeout_s is not None:
            self.timers[key] = asyncio.get_running_loop().call_later(timeout_s, self._time_out, key)

    def _cluster_cpus(self) -> float:
        """Counted again every few seconds: the autoscaler adds and removes nodes."""
        cpus, counted_at = self._cpus
        now = time.monotonic()
        if now - counted_at > 5.0:
            cpus = float(ray.cluster_resources().get("CPU", 1.0))
            self._cpus = (cpus, now)
        return cpus

    def _time_out(self, key: AttemptKey) -> None:
        ref = self.running.get(key)
        if ref is not None:
            self.timed_out.add(key)
            ray.cancel(ref, force=True)  # a plain cancel does not interrupt running code

    async def cancel(self, attempts: list[AttemptKey]) -> None:
        """Cancel politely, then by force after a grace second (running Python code does not
        notice a plain cancel). An attempt in a shared task is left to end (its step is
        short) and its outcome dropped: stopping the task would stop them too."""
        loop = asyncio.get_running_loop()
        for key in attempts:
            ref = self.running.get(key)
            if ref is None:
                if key in self.checking:  # not launched yet: it will not be
                    self.cancelled_early.add(key)
                continue
            if key in self.in_shared_tasks:
                self.dropped.add(key)
            else:
                ray.cancel(ref, force=False)
                loop.call_later(CANCEL_GRACE_S, self._force, key)

    def _force(self, key: AttemptKey) -> None:
        ref = self.running.get(key)
        if ref is not None:
            ray.cancel(ref, force=True)

    def _done(self, task_attempts: tuple[Envelope, ...], future: Future[Any]) -> None:
        """On a Ray thread: queue the completion, wake the loop once per burst."""
        with self._lock:
            self._finished.append((task_attempts, future))
            if self._flush_scheduled:
                return
            self._flush_scheduled = True
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._flush)

    def _flush(self) -> None:
        with self._lock:
            finished, self._finished = self._finished, []
            self._flush_scheduled = False
        for task_attempts, future in finished:
            for e, (outcome, from_worker) in zip(
                task_attempts, self._outcomes(task_attempts, future), strict=True
            ):
                if e.key in self.dropped:
                    outcome, from_worker = stopped(e.key, False, None), False
                # the worker reported an outcome of its own making to the coordinator already
                self.outbox.put(outcome, wake=not (from_worker and e.report_directly))
                self.running.pop(e.key, None)
                self.timed_out.discard(e.key)
                self.timeouts.pop(e.key, None)
                timer = self.timers.pop(e.key, None)
                if timer is not None:
                    timer.cancel()
                self.dropped.discard(e.key)
                self.in_shared_tasks.discard(e.key)

    def _outcomes(
        self, task_attempts: tuple[Envelope, ...], future: Future[Any]
    ) -> list[tuple[Sealed, bool]]:
        """The sealed outcomes, and whether the worker made them (rather than this executor)."""
        try:
            outcomes: list[Sealed] = future.result()
            return [(outcome, True) for outcome in outcomes]
        except (rex.TaskCancelledError, CancelledError):
            return [
                (stopped(e.key, e.key in self.timed_out, e.timeout_s), False) for e in task_attempts
            ]
        except rex.RuntimeEnvSetupError as exc:  # this run's env, not the worker, failed
            if task_attempts[0].env is not None:
                self.packages.forget(task_attempts[0].env[1])
            return [(env_failed(e.key, exc), False) for e in task_attempts]
        except Exception as exc:  # the wrapper catches user errors: this is Ray's own failure
            kind, message = f"ray.{type(exc).__name__}", str(exc)[:2000]
            return [
                (_ended(e.key, AttemptStatus.LOST, kind, message), False) for e in task_attempts
            ]

    async def drain(self, ack: int, wait_s: float, epoch: int) -> SealedBatch:
        return await self.outbox.drain(ack, wait_s, epoch)

    async def snapshot(self, ack: int, epoch: int) -> SealedSnapshot:
        return self.outbox.snapshot(ack, [*self.running, *self.checking], epoch)

    async def adopt(self, outcomes: list[Sealed]) -> None:
        self.outbox.adopt(outcomes)

    async def stats(self) -> dict[str, int]:
        return {
            "running": len(self.running),
            "unacked": len(self.outbox),
            "dropping": len(self.dropped),
            "tasks": self.launched_tasks,
            "attempts": self.launched_attempts,
        }

    def versions(self) -> dict[str, str]:
        """This executor's wfray and schema versions: the coordinator checks them first."""
        return CURRENT.as_dict()

    async def pid(self) -> int:
        return os.getpid()
