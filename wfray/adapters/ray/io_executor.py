"""The io executor: runs io attempts as coroutines inside this actor, sync step code in a
bounded thread pool, many at a time; keeps their outcomes until the coordinator
acknowledges them (executor.py has what both executors share).

Attempts of a run with a runtime env of its own (domain/code_env.py) run in an env runner:
an actor this executor starts in that env when its first attempt comes, shares between the
runs of that env, and stops once idle. The runner dies with the executor that owns it, and
its attempts with it, as the executor's own would (they are judged lost and run again).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import ray

from wfray.adapters.blob import blob_store
from wfray.adapters.ray.envelopes import (
    Envelope,
    RunEnv,
    admitted,
    env_failed,
    is_env_failure,
    package_failed,
    stopped,
    unreadable_env,
)
from wfray.adapters.ray.executor import ExecutorConfig, step_services, worker_identity
from wfray.adapters.ray.packages import PackageGuard
from wfray.application.messages import UNREADABLE_ENV, Dispatch, Outcome
from wfray.application.wire import Sealed, SealedBatch, SealedSnapshot, open_dispatch, seal
from wfray.domain.errors import StepImportError
from wfray.domain.records import AttemptKey, WorkerIdentity
from wfray.domain.status import AttemptStatus
from wfray.domain.versions import CURRENT
from wfray.sdk.step_code import load_function
from wfray.worker.outbox import Outbox
from wfray.worker.step_runner import run_attempt_async

log = logging.getLogger("wfray.executor")

# Starts an env runner: (the executor's config, the env's runtime_env as JSON) -> its actor
# handle. Made in actors.py, where wfray applies ray.remote.
EnvRunners = Callable[[ExecutorConfig, str], Any]
RUNNER_IDLE_S = 300.0  # an env runner with nothing to run this long is stopped


class IoEnvRunner:
    """Runs io attempts in the runtime env it was started in, for the io executor that
    owns it (which holds the outcomes, the slots and the timeouts)."""

    def __init__(self, config: ExecutorConfig) -> None:
        self.config = config
        self.blobs = blob_store(config.blob_root) if config.blob_root else None
        self.threads = ThreadPoolExecutor(max_workers=config.io_concurrency)
        self.identity: WorkerIdentity | None = None

    async def run(self, sealed: Sealed) -> Sealed:
        asyncio.get_running_loop().set_default_executor(self.threads)
        if self.identity is None:
            self.identity = worker_identity()
        outcome = await run_attempt_async(
            open_dispatch(sealed),
            self.blobs,
            self.identity,
            self.config.runner,
            step_services(self.config.namespace, self.config.blob_root),
        )
        return seal(outcome)


class IoExecutor:
    """Runs io attempts as coroutines in this actor; sync steps in a bounded thread pool."""

    def __init__(self, config: ExecutorConfig, env_runners: EnvRunners | None = None) -> None:
        self.config = config
        self.env_runners = env_runners
        self.runners: dict[str, Any] = {}  # env hash -> its runner's handle
        self.runner_use: dict[str, tuple[int, float]] = {}  # env hash -> (running, last used)
        self.outbox = Outbox()
        self.running: dict[AttemptKey, asyncio.Task[None]] = {}
        self.timed_out: set[AttemptKey] = set()
        self.blobs = blob_store(config.blob_root) if config.blob_root else None
        self.identity: WorkerIdentity | None = None
        self.threads = ThreadPoolExecutor(max_workers=config.io_concurrency)
        self.slots: asyncio.Semaphore | None = None
        self.packages = PackageGuard(config.blob_root)

    async def dispatch(self, envelopes: list[Envelope], epoch: int) -> None:
        if not admitted(self.outbox, envelopes, epoch):
            return
        loop = asyncio.get_running_loop()
        loop.set_default_executor(self.threads)
        if self.slots is None:
            self.slots = asyncio.Semaphore(self.config.io_concurrency)
        if self.identity is None:
            self.identity = worker_identity()
        self._stop_idle_runners()
        for e in envelopes:
            if e.env is not None and e.env[1] == UNREADABLE_ENV:
                self.outbox.put(unreadable_env(e.key))
                continue
            d = open_dispatch(e.dispatch)
            self.running[e.key] = loop.create_task(self._run(d, e))
            timeout_s = self._timeout_s(d)
            if timeout_s is not None:
                loop.call_later(timeout_s, self._time_out, e.key)

    def _timeout_s(self, d: Dispatch) -> float | None:
        """The step's own timeout; else, for sync code, the default: a sync step holds one
        of the io threads while it runs, and one stuck on a slow server would hold it for
        ever (its thread runs on after the timeout, but its slot and attempt are freed)."""
        if d.timeout_s is not None or self.config.io_sync_timeout_s is None:
            return d.timeout_s
        if d.runtime_env_json is not None:
            # its code lives in its env, not here: not imported to be looked at
            return self.config.io_sync_timeout_s
        try:
            is_async = inspect.iscoroutinefunction(load_function(d.fn))
        except StepImportError:
            is_async = False  # the attempt fails at once anyway
        return None if is_async else self.config.io_sync_timeout_s

    def _time_out(self, key: AttemptKey) -> None:
        task = self.running.get(key)
        if task is not None:
            self.timed_out.add(key)
            task.cancel()  # sync code in a thread cannot be interrupted: its outcome is dropped

    async def cancel(self, attempts: list[AttemptKey]) -> None:
        """Coroutines stop at their next await; sync steps in threads run on to their end
        (Python cannot interrupt a thread), and their outcome is dropped."""
        for key in attempts:
            task = self.running.get(key)
            if task is not None:
                task.cancel()

    async def _run(self, d: Dispatch, e: Envelope) -> None:
        assert self.slots is not None and self.identity is not None
        try:
            async with self.slots:
                if e.env is not None:
                    self.outbox.put(await self._run_in_env(e, e.env))
                    return
                outcome = await run_attempt_async(
                    d,
                    self.blobs,
                    self.identity,
                    self.config.runner,
                    step_services(self.config.namespace, self.config.blob_root),
                )
        except asyncio.CancelledError:
            key = d.attempt_key
            timeout_s = self._timeout_s(d)
            default = d.timeout_s is None and timeout_s is not None
            self.outbox.put(stopped(key, key in self.timed_out, timeout_s, default))
            return
        finally:
            self.running.pop(d.attempt_key, None)
            self.timed_out.discard(d.attempt_key)
        self.outbox.put(seal(outcome))

    async def _run_in_env(self, e: Envelope, env: RunEnv) -> Sealed:
        """The attempt's outcome from the runner of its env (started if need be); a runner
        whose env Ray cannot build fails the attempt with Ray's error, and is forgotten so
        that a later attempt tries again."""
        env_hash, env_json = env
        problem = await self.packages.ensure(env_json)  # a runner, or a new worker of it, may
        if problem is not None:  # need to build the env again from its packages
            return package_failed(e.key, problem)
        runner = self.runners.get(env_hash)
        if runner is None:
            if self.env_runners is None:
                raise RuntimeError("this io executor cannot start runners for runtime envs")
            try:
                runner = self.env_runners(self.config, env_json)
            except (ValueError, TypeError, ray.exceptions.RayError) as exc:
                self.packages.forget(env_json)
                return env_failed(e.key, exc)  # a runtime env Ray refuses to take
            self.runners[env_hash] = runner
            log.info("started an io runner for runtime env %s", env_hash[:12])
        running, _ = self.runner_use.get(env_hash, (0, 0.0))
        self.runner_use[env_hash] = (running + 1, time.monotonic())
        ref = runner.run.remote(e.dispatch)
        try:
            sealed: Sealed = await ref
            return sealed
        except asyncio.CancelledError:
            ray.cancel(ref)
            raise
        except Exception as exc:
            self._forget_runner(env_hash, runner)
            if is_env_failure(exc):
                self.packages.forget(env_json)
                return env_failed(e.key, exc)
            kind, message = f"ray.{type(exc).__name__}", str(exc)[:2000]
            return seal(Outcome.ended(e.key, AttemptStatus.LOST, kind, message))
        finally:
            running, _ = self.runner_use.get(env_hash, (1, 0.0))
            self.runner_use[env_hash] = (running - 1, time.monotonic())

    def _forget_runner(self, env_hash: str, runner: Any) -> None:
        if self.runners.get(env_hash) is runner:
            del self.runners[env_hash]

    def _stop_idle_runners(self) -> None:
        now = time.monotonic()
        for env_hash, (running, used_at) in list(self.runner_use.items()):
            if running <= 0 and now - used_at > RUNNER_IDLE_S:
                del self.runner_use[env_hash]
                runner = self.runners.pop(env_hash, None)
                if runner is not None:
                    log.info("stopping the idle io runner of runtime env %s", env_hash[:12])
                    ray.kill(runner, no_restart=True)

    async def stats(self) -> dict[str, int]:
        return {
            "running": len(self.running),
            "unacked": len(self.outbox),
            "env_runners": len(self.runners),
        }

    async def drain(self, ack: int, wait_s: float, epoch: int) -> SealedBatch:
        return await self.outbox.drain(ack, wait_s, epoch)

    async def snapshot(self, ack: int, epoch: int) -> SealedSnapshot:
        return self.outbox.snapshot(ack, list(self.running), epoch)

    async def adopt(self, outcomes: list[Sealed]) -> None:
        self.outbox.adopt(outcomes)

    def versions(self) -> dict[str, str]:
        """This executor's wfray and schema versions: the coordinator checks them first."""
        return CURRENT.as_dict()

    async def pid(self) -> int:
        return os.getpid()
