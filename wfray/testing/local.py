"""LocalWfray: wfray in this process, for tests. The client's calls, the real coordinator,
the in-memory store, inline executors and a FakeClock; no Ray.

The engine runs on an event loop in a thread of its own; the calls here are sync, like the
real client's. Time moves only when the test advances the clock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pydantic import TypeAdapter

from wfray.application.definition import Workflow, WorkflowRef, resolve_workflow, subscribers
from wfray.application.events import unique_keys, validated_inputs
from wfray.application.messages import CommandResult, RunView
from wfray.application.queries import RunDetail
from wfray.application.scheduler import ScheduleInfo
from wfray.application.schedules import build_spec, declared
from wfray.client.handle import result_adapter
from wfray.client.submission import SubmitOptions, build_requests, raise_refusal
from wfray.config import Settings, load_settings
from wfray.domain.errors import RunFailedError, WfrayError
from wfray.domain.policy import RetryPolicy
from wfray.domain.records import LogRecord, RunRecord
from wfray.domain.schedule import ScheduleSpec
from wfray.domain.status import RunStatus
from wfray.testing import asserts
from wfray.testing.clock import FakeClock
from wfray.testing.engine import LocalEngine, Quiet
from wfray.testing.handle import LocalRunHandle, unfinished
from wfray.testing.loop import EngineLoop

T = TypeVar("T")


class LocalWfray(asserts.Assertions):
    """wfray in this process with a fake clock. Use it as a context manager.

    Args:
        clock: the FakeClock to run on (default: a new one at the current time).
        settings: wfray Settings (queues, default retry, limits); the environment is not
            read, and the database settings are ignored (the store is in memory).
        settle_timeout_s: real seconds a step may run before `advance()` or a wait gives
            up on the engine becoming idle.
        **overrides: Settings fields, as `wfray.load_settings` takes them.
    """

    def __init__(
        self,
        clock: FakeClock | None = None,
        settings: Settings | None = None,
        *,
        settle_timeout_s: float = 30.0,
        **overrides: Any,
    ) -> None:
        self.clock = clock or FakeClock()
        self.settings = settings or load_settings(env={}, **overrides)
        self.settle_timeout_s = settle_timeout_s
        self.engine = LocalEngine(self.settings, self.clock)
        self._registered: set[tuple[str, str]] = set()
        self._declared: set[ScheduleSpec] = set()
        self._engine_loop = EngineLoop()
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> LocalWfray:
        if self._engine_loop.running or self._closed:
            raise RuntimeError("a local wfray starts once: make a new one")
        self.clock.attach(self._drive)  # first: a clock already in use fails before a thread
        self._engine_loop.start()
        try:
            self._call(self.engine.start())
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop the engine. Steps still running are abandoned (sync code in a thread runs
        on to its end, as in the real io pool)."""
        if not self._engine_loop.running:
            return
        self._closed = True
        self.clock.detach()
        try:
            self._call(_shut_down(self.engine), self.settle_timeout_s)
        finally:
            self._engine_loop.stop(self.settle_timeout_s)

    shutdown = close

    def __enter__(self) -> LocalWfray:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def advance(self, by: float | timedelta) -> datetime:
        """`self.clock.advance(by)`: seconds or a timedelta; returns the new time."""
        return self.clock.advance(by)

    def settle(self) -> None:
        """Let the engine do everything it can at the current time, then return: submitted
        runs run as far as they get without the clock moving (retries due later wait)."""
        self._call(self.engine.settle(self.settle_timeout_s), None)

    def _drive(self, target: datetime) -> None:
        self._call(self.engine.advance_to(target, self.settle_timeout_s), None)

    def _call(self, coroutine: Coroutine[Any, Any, T], timeout_s: float | None = 60.0) -> T:
        return self._engine_loop.call(coroutine, timeout_s)

    # -- workflows -----------------------------------------------------------------------------

    def workflow(self, ref: WorkflowRef) -> Workflow:
        return resolve_workflow(ref)

    def register(self, *workflows: WorkflowRef) -> None:
        schemas = []
        for ref in workflows:
            schema = self.workflow(ref).schema
            if (schema.name, schema.version) not in self._registered:
                schemas.append(schema)
        if schemas:
            self._call(self.engine.coordinator.register(schemas))
            self._registered.update((s.name, s.version) for s in schemas)
        specs = [
            spec
            for ref in workflows
            for spec in declared(self.workflow(ref).name)
            if spec not in self._declared
        ]
        if specs:
            self._call(self.engine.scheduler.declare(specs))
            self._declared.update(specs)

    # -- submitting ----------------------------------------------------------------------------

    def submit(
        self,
        workflow: WorkflowRef,
        input: Any = None,
        *,
        idempotency_key: str | None = None,
        priority: int = 0,
        queue: str = "default",
        concurrency_key: str | None = None,
        run_id: str | None = None,
        retry: RetryPolicy | None = None,
        deadline_s: float | None = None,
    ) -> LocalRunHandle:
        """Start one run. The same idempotency key returns the same run."""
        return self.submit_many(
            workflow,
            [input],
            idempotency_keys=[idempotency_key],
            concurrency_keys=[concurrency_key],
            run_ids=[run_id] if run_id else None,
            priority=priority,
            queue=queue,
            retry=retry,
            deadline_s=deadline_s,
        )[0]

    def enqueue(self, fn: Callable[..., Any], /, **kwargs: Any) -> LocalRunHandle:
        """Enqueue a plain @wfray.task with keyword arguments."""
        return self.submit(fn, kwargs)

    def submit_many(
        self,
        workflow: WorkflowRef,
        inputs: Sequence[Any],
        *,
        idempotency_keys: Sequence[str | None] | None = None,
        priority: int = 0,
        queue: str = "default",
        concurrency_keys: Sequence[str | None] | None = None,
        run_ids: Sequence[str] | None = None,
        retry: RetryPolicy | None = None,
        deadline_s: float | None = None,
        chunk: int = 5000,
        parent_run_id: str | None = None,
        trigger: str = "client",
        trigger_id: str | None = None,
    ) -> list[LocalRunHandle]:
        """Start many runs; each input is validated before anything is stored."""
        flow = self.workflow(workflow)
        self.register(flow)
        options = SubmitOptions(
            priority=priority,
            queue=queue,
            retry=retry,
            deadline_s=deadline_s,
            parent_run_id=parent_run_id,
            trigger=trigger,
            trigger_id=trigger_id,
        )
        requests = build_requests(
            flow,
            inputs,
            options,
            idempotency_keys=idempotency_keys,
            concurrency_keys=concurrency_keys,
            run_ids=run_ids,
        )
        results = []
        for start in range(0, len(requests), chunk):
            results += self._call(self.engine.coordinator.submit(requests[start : start + chunk]))
        handles = [LocalRunHandle(self, r.run_id, flow) for r in results if r.error is None]
        raise_refusal(results, handles)
        return handles

    def execute(
        self,
        workflow: WorkflowRef,
        input: Any = None,
        *,
        timeout: float = 60.0,
        idempotency_key: str | None = None,
        priority: int = 0,
        queue: str = "default",
        concurrency_key: str | None = None,
        run_id: str | None = None,
        retry: RetryPolicy | None = None,
        deadline_s: float | None = None,
    ) -> Any:
        """Submit a run and return its result (see LocalRunHandle.result)."""
        flow = self.workflow(workflow)
        handle = self.submit(
            flow,
            input,
            idempotency_key=idempotency_key,
            priority=priority,
            queue=queue,
            concurrency_key=concurrency_key,
            run_id=run_id,
            retry=retry,
            deadline_s=deadline_s,
        )
        return self.result_of(handle.run_id, flow, timeout)

    # -- waiting and reading -------------------------------------------------------------------

    def wait(self, run_ids: Iterable[str], timeout: float = 60.0) -> list[RunView]:
        """Wait for runs to finish; returns their views (unfinished ones as they are). Returns
        early, unfinished, when nothing can happen until the fake clock moves."""
        return self._quiet(list(run_ids), timeout).views

    def _quiet(self, run_ids: list[str], timeout: float) -> Quiet:
        return self._call(self.engine.wait(run_ids, timeout), timeout + 30)

    def result_of(self, run_id: str, flow: Workflow | None, timeout: float = 60.0) -> Any:
        """A run's result as its final step's return type (see LocalRunHandle.result)."""
        quiet = self._quiet([run_id], timeout)
        if not quiet.views:
            raise WfrayError(f"no run with id {run_id!r}")
        view = quiet.views[0]
        if not view.status.finished:
            raise unfinished(view, quiet, timeout, self.clock.now())
        if view.status is not RunStatus.COMPLETED:
            raise RunFailedError(
                f"run {run_id} {view.status.value}: {view.error}",
                run_id=run_id,
                status=view.status.value,
            )
        return self.decode(view, flow)

    def decode(self, view: RunView, flow: Workflow | None) -> Any:
        """A finished run's result as a value of its final step's return type."""
        if view.result_json is None:
            return None  # no blob store here: every result is stored as JSON
        return result_adapter(flow).validate_json(view.result_json)

    def status(self, run_id: str) -> RunStatus:
        views = self._call(self.engine.coordinator.views([run_id]))
        if not views:
            raise WfrayError(f"no run with id {run_id!r}")
        return views[0].status

    def cancel(self, run_id: str, reason: str = "", compensate: bool = True) -> CommandResult:
        """Cancel a run, then compensate what it completed unless `compensate` is False."""
        (answer,) = self._call(self.engine.coordinator.cancel([run_id], reason, compensate))
        return answer

    def publish(
        self, name: str, payload: Any = None, *, id: str, source: str = "client"
    ) -> list[str]:
        """Publish an event: every subscribed workflow starts once per event `id`."""
        local = subscribers(name)
        inputs = validated_inputs(name, payload, local)
        keys = unique_keys(name, inputs, local)
        self.register(*local)
        payload_json = TypeAdapter(Any).dump_json(payload).decode()
        coordinator = self.engine.coordinator
        return self._call(coordinator.publish(name, payload_json, id, source, inputs, keys))

    def next_value(self, counter: str, count: int = 1) -> int:
        return self._call(self.engine.coordinator.next_value(counter, count))

    def dead_letter(self, workflow: str | None = None, limit: int = 100) -> list[RunRecord]:
        return self.list_runs(workflow, "compensation_failed", limit)

    def retry_compensation(self, run_ids: Sequence[str]) -> list[CommandResult]:
        return self._call(self.engine.coordinator.retry_compensation(list(run_ids)))

    def resume(self, run_ids: Sequence[str]) -> list[CommandResult]:
        return self._call(self.engine.coordinator.resume(list(run_ids)))

    def resume_failed(
        self,
        workflow: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 1000,
    ) -> list[CommandResult]:
        failed = self.list_runs(workflow, "failed", limit, created_after, created_before)
        return self.resume([run.run_id for run in failed]) if failed else []

    def run(self, run_id: str) -> LocalRunHandle:
        return LocalRunHandle(self, run_id, None)

    def detail(self, run_id: str) -> RunDetail:
        return self.engine.queries.run_detail(run_id)

    def list_runs(
        self,
        workflow: str | None = None,
        status: str | None = None,
        limit: int = 100,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        position: tuple[datetime, str] | None = None,
    ) -> list[RunRecord]:
        return self.engine.queries.list_runs(
            workflow, status, limit, created_after, created_before, position
        )

    def logs(
        self,
        run_id: str,
        step: str | None = None,
        after_id: int | None = None,
        limit: int | None = None,
    ) -> list[LogRecord]:
        return self.engine.queries.logs(run_id, step, after_id, limit)

    def stats(self) -> dict[str, Any]:
        return self._call(_stats(self.engine))

    # -- schedules -----------------------------------------------------------------------------

    def create_schedule(
        self, schedule: ScheduleSpec | WorkflowRef, /, **options: Any
    ) -> ScheduleSpec:
        """Create or update a cron schedule; its ticks fire as the fake clock passes them."""
        if isinstance(schedule, ScheduleSpec):
            if options:
                raise TypeError("pass either a Schedule or a workflow with options, not both")
            spec = schedule
        else:
            spec = build_spec(schedule, **options)
            self.register(schedule)
        self._call(self.engine.scheduler.upsert(spec))
        return spec

    def delete_schedule(self, name: str) -> None:
        self._call(self.engine.scheduler.delete(name))

    def pause_schedule(self, name: str) -> None:
        self._call(self.engine.scheduler.pause(name))

    def resume_schedule(self, name: str) -> None:
        self._call(self.engine.scheduler.resume(name))

    def trigger_schedule(self, name: str) -> LocalRunHandle:
        result = self._call(self.engine.scheduler.trigger(name))
        raise_refusal([result], [])
        return LocalRunHandle(self, result.run_id, None)

    def list_schedules(self, next_count: int = 3) -> list[ScheduleInfo]:
        return self._call(self.engine.scheduler.list_schedules(next_count))


@contextlib.contextmanager
def local_wfray(
    clock: FakeClock | None = None, settings: Settings | None = None, **options: Any
) -> Iterator[LocalWfray]:
    """A started LocalWfray for the `with` block (see LocalWfray for the arguments)."""
    with LocalWfray(clock, settings, **options) as local:
        yield local


async def _stats(engine: LocalEngine) -> dict[str, Any]:
    return engine.coordinator.stats()


async def _shut_down(engine: LocalEngine) -> None:
    await engine.stop()
    current = asyncio.current_task()
    rest = [task for task in asyncio.all_tasks() if task is not current]
    for task in rest:
        task.cancel()
    await asyncio.gather(*rest, return_exceptions=True)
