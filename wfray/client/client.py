"""The Python client: submit runs, wait for them, read their history.

Every call goes through a transport (transport.py) that retries while the coordinator
restarts, and every submission carries run ids the client chose, so a retried submission
never creates a second run. Ray-free: `wfray.connect()` gives one over Ray
(adapters/ray/client.py), `wfray.testing` one over its in-process engine.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter

from wfray.application.client_commands import (
    Cancel,
    Command,
    DeclareSchedules,
    Publish,
    R,
    RecordEnv,
    Register,
    Resume,
    RetryCompensation,
    Submit,
    SubmitAndWait,
    Wait,
)
from wfray.application.messages import CommandResult, RunView, SubmitRequest, SubmitResult
from wfray.client.handle import RunHandle, decode_result, settled
from wfray.client.read_calls import ReadCalls
from wfray.client.schedule_calls import ScheduleCalls
from wfray.client.submission import (
    SubmitOptions,
    build_requests,
    not_fresh,
    one_request,
    raise_refusal,
)
from wfray.client.transport import Transport
from wfray.config import Settings
from wfray.domain.audit import Origin
from wfray.domain.code_env import CodeEnv, recorded_env
from wfray.domain.errors import WfrayError
from wfray.domain.policy import RetryPolicy
from wfray.domain.schedule import ScheduleSpec
from wfray.sdk.definition import Workflow, WorkflowRef, resolve_workflow
from wfray.sdk.events import unique_keys, validated_inputs
from wfray.sdk.schedules import declared

SUBMIT_CHUNK = 5000  # runs per coordinator call


class Client(ScheduleCalls, ReadCalls):
    """wfray's calls (submit, wait, read, schedules) over a transport to a coordinator: Ray's
    actor for `wfray.connect()`, the test kit's engine for `wfray.testing`."""

    def __init__(self, settings: Settings, transport: Transport) -> None:
        self.settings = settings
        self.transport = transport
        self._registered: set[tuple[str, str, str | None]] = set()  # and the env recorded
        self._declared: set[ScheduleSpec] = set()  # code-declared schedules already upserted
        self._recorded_envs: set[str] = set()  # runtime env hashes the coordinator stores
        # Who this client's operator actions are recorded as (the audit trail); set it to
        # name the person or service, or pass `origin=` to one call.
        self.origin = Origin("client", "client", socket.gethostname())

    def call(
        self,
        command: Command[R],
        *,
        timeout_s: float = 60.0,
        before_resend: Callable[[], None] | None = None,
    ) -> R:
        """Send the coordinator a command and return its answer (transport.py)."""
        return self.transport.call(command, timeout_s=timeout_s, before_resend=before_resend)

    def _handle(self, run_id: str, flow: Workflow | None) -> RunHandle:
        return RunHandle(self, run_id, flow)

    # -- workflows -----------------------------------------------------------------------------

    def workflow(self, ref: WorkflowRef) -> Workflow:
        return resolve_workflow(ref)

    def register(
        self, *workflows: WorkflowRef, runtime_env: Mapping[str, Any] | None = None
    ) -> None:
        """Store the workflows' schemas, their declared schedules and their event
        subscriptions; the runs those start run in `runtime_env` (default: this client's
        own, the submitting job's on Ray), as runs submitted here do."""
        flows = [self.workflow(ref) for ref in workflows]
        subscribes = any(flow.schema.events for flow in flows)
        specs = [spec for f in flows for spec in declared(f.name) if spec not in self._declared]
        env_hash = self.env_hash(runtime_env) if subscribes or specs else None
        schemas = [
            f.schema
            for f in flows
            if (f.schema.name, f.schema.version, env_hash) not in self._registered
        ]
        if schemas:
            self.call(Register(schemas, env_hash))
            self._registered.update((s.name, s.version, env_hash) for s in schemas)
        if specs:
            self.call(DeclareSchedules([s.with_(env_hash=s.env_hash or env_hash) for s in specs]))
            self._declared.update(specs)

    # -- the code's environment ------------------------------------------------------------------

    def default_env(self) -> CodeEnv | None:
        """The runtime env runs record when none is given: the submitting job's own
        (adapters/ray/client.py); none in-process."""
        return None

    def prepare_env(self, runtime_env: Mapping[str, Any]) -> CodeEnv:
        """An explicitly given runtime env as recorded: validated; packages must be URIs
        here (the client over Ray uploads local directories first)."""
        return recorded_env(runtime_env, require_uris=True)

    def env_hash(self, runtime_env: Mapping[str, Any] | None = None) -> str | None:
        """The hash runs record for `runtime_env` (None: the default), stored at the
        coordinator once per client and environment."""
        env = self.default_env() if runtime_env is None else self.prepare_env(runtime_env)
        if env is None:
            return None
        if env.hash not in self._recorded_envs:
            self.call(RecordEnv(env))
            self._recorded_envs.add(env.hash)
        return env.hash

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
        runtime_env: Mapping[str, Any] | None = None,
    ) -> RunHandle:
        """Start one run. The same idempotency key returns the same run.

        `retry` overrides the retry policy of every step of this run; `deadline_s` its
        workflow's deadline (past it, the run fails and is compensated); `runtime_env` the
        Ray runtime env its steps run in (default: this job's own; see the README).
        """
        options = SubmitOptions(
            priority=priority,
            queue=queue,
            retry=retry,
            deadline_s=deadline_s,
            env_hash=self.env_hash(runtime_env),
        )
        flow = self._register_flow(workflow)
        requests = one_request(flow, input, options, idempotency_key, concurrency_key, run_id)
        return self._submit(flow, requests)[0]

    def enqueue(self, fn: Callable[..., Any], /, **kwargs: Any) -> RunHandle:
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
        chunk: int = SUBMIT_CHUNK,
        parent_run_id: str | None = None,
        trigger: str = "client",
        trigger_id: str | None = None,
        runtime_env: Mapping[str, Any] | None = None,
    ) -> list[RunHandle]:
        """Start many runs in few calls; each input is validated before anything is sent.
        Children (trigger "parent") run in their parent's runtime env, whatever is sent."""
        options = SubmitOptions(
            priority=priority,
            queue=queue,
            retry=retry,
            deadline_s=deadline_s,
            parent_run_id=parent_run_id,
            trigger=trigger,
            trigger_id=trigger_id,
            env_hash=None if trigger == "parent" else self.env_hash(runtime_env),
        )
        flow = self._register_flow(workflow)
        requests = build_requests(
            flow,
            inputs,
            options,
            idempotency_keys=idempotency_keys,
            concurrency_keys=concurrency_keys,
            run_ids=run_ids,
        )
        return self._submit(flow, requests, chunk)

    def _register_flow(self, workflow: WorkflowRef) -> Workflow:
        flow = self.workflow(workflow)
        self.register(flow)
        return flow

    def _submit(
        self, flow: Workflow, requests: list[SubmitRequest], chunk: int = SUBMIT_CHUNK
    ) -> list[RunHandle]:
        results: list[SubmitResult] = []
        for start in range(0, len(requests), chunk):
            part = requests[start : start + chunk]
            answered = self.call(Submit(part), before_resend=not_fresh(part))
            results.extend(answered)
        handles = [self._handle(r.run_id, flow) for r in results if r.error is None]
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
        runtime_env: Mapping[str, Any] | None = None,
    ) -> Any:
        """Run a workflow and return its result: submit and wait in one coordinator call,
        the shortest path from a request to its answer.

        Raises RunFailedError if the run failed, WaitTimeoutError if it is still running
        after `timeout` seconds (it goes on: `client.run(run_id)` finds it).
        """
        options = SubmitOptions(
            priority=priority,
            queue=queue,
            retry=retry,
            deadline_s=deadline_s,
            env_hash=self.env_hash(runtime_env),
        )
        flow = self._register_flow(workflow)
        requests = one_request(flow, input, options, idempotency_key, concurrency_key, run_id)
        return self._execute(flow, requests, timeout)

    def _execute(self, flow: Workflow, requests: list[SubmitRequest], timeout: float) -> Any:
        """Submit one run and wait for its result in one coordinator call."""
        results, views = self.call(
            SubmitAndWait(requests, timeout),
            timeout_s=timeout + 30,
            before_resend=not_fresh(requests),
        )
        raise_refusal(results, [])
        if not views:
            raise WfrayError(f"no run with id {results[0].run_id!r}")
        return self.decode(settled(views[0], timeout), flow)

    # -- waiting and reading -------------------------------------------------------------------

    def wait(self, run_ids: Iterable[str], timeout: float = 60.0) -> list[RunView]:
        """Wait for runs to finish; returns their views (unfinished ones as they are)."""
        ids = list(run_ids)
        deadline = time.monotonic() + timeout
        views: dict[str, RunView] = {}
        while True:
            waiting = [rid for rid in ids if rid not in views or not views[rid].status.finished]
            left = deadline - time.monotonic()
            if not waiting or left <= 0:
                break
            for view in self.call(Wait(waiting, min(left, 30.0)), timeout_s=left + 30):
                views[view.run_id] = view
        return [views[rid] for rid in ids if rid in views]

    def cancel(
        self,
        run_id: str,
        reason: str = "",
        compensate: bool = True,
        *,
        origin: Origin | None = None,
    ) -> CommandResult:
        """Cancel a run, then compensate what it completed unless `compensate` is False.

        A run that already finished is left as it is (`applied` False). A cpu step stops
        within about a second (by force if need be), an io coroutine at its next await;
        sync code running in the io pool's threads cannot be interrupted and runs to its end.
        """
        (answer,) = self.call(Cancel([run_id], reason, compensate, origin or self.origin))
        return answer

    def publish(
        self, name: str, payload: Any = None, *, id: str, source: str = "client"
    ) -> list[str]:
        """Publish an internal event: every workflow subscribed to `name` starts once per
        event `id` (publishing the same id again starts nothing). Returns the run ids."""
        local = self._local_subscribers(name)
        inputs = validated_inputs(name, payload, local)  # refused here: nothing was sent
        keys = unique_keys(name, inputs, local)
        self.register(*local)  # ours are known to wfray before it
        payload_json = TypeAdapter(Any).dump_json(payload).decode()
        return self.call(Publish(name, payload_json, id, source, inputs, keys))

    def _local_subscribers(self, name: str) -> list[Workflow]:
        from wfray.sdk.definition import subscribers

        return subscribers(name)

    def retry_compensation(
        self, run_ids: Sequence[str], *, origin: Origin | None = None
    ) -> list[CommandResult]:
        """Try the failed compensations of these runs again."""
        return self.call(RetryCompensation(list(run_ids), origin or self.origin))

    def resume(
        self, run_ids: Sequence[str], *, origin: Origin | None = None
    ) -> list[CommandResult]:
        """Resume failed or cancelled runs from the steps that did not complete: completed
        steps are not run again, and new attempts continue the attempt numbering."""
        return self.call(Resume(list(run_ids), origin or self.origin))

    def resume_failed(
        self,
        workflow: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 1000,
        *,
        origin: Origin | None = None,
    ) -> list[CommandResult]:
        """Resume, in bulk, the failed runs of a workflow created in a time range."""
        failed = self.list_runs(workflow, "failed", limit, created_after, created_before)
        return self.resume([run.run_id for run in failed], origin=origin) if failed else []

    def decode(self, view: RunView, flow: Workflow | None) -> Any:
        """A finished run's result as a value of its final step's return type."""
        return decode_result(view, flow, self.settings.blob_root)
