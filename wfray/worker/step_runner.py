"""Runs one attempt of one step where the step lives (a Ray worker or an io executor).

It imports the step by path, turns the JSON arguments back into typed values, calls it with
its log lines captured, and turns the result (or the error) into an Outcome. Large results
go to the blob store from here, so they never pass through the coordinator.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import logging
import traceback
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pydantic_core
from pydantic import TypeAdapter

from wfray.application.arg_text import arg_text, has_field, reads_collected
from wfray.application.messages import Dispatch, Outcome
from wfray.application.moments import Moment, reached
from wfray.application.ports import BlobStore, StepServices
from wfray.domain.errors import (
    BlobWriteError,
    NonRetryableError,
    ResultNotSerializableError,
    ResultNotStorableError,
    ResultTooLargeError,
    RetryLater,
)
from wfray.domain.ids import blob_key
from wfray.domain.masking import mask_text
from wfray.domain.records import WorkerIdentity
from wfray.domain.status import AttemptStatus
from wfray.domain.workflow import CONTEXT
from wfray.sdk.context import AttemptLog, StepContext, bind, unbind
from wfray.sdk.secrets import bind_secret_dir, resolved_values, unbind_secret_dir
from wfray.sdk.step_code import load_function
from wfray.worker.log_stream import streamer_for


@dataclass(frozen=True, slots=True)
class RunnerSettings:
    blob_threshold_bytes: int = 256 * 1024
    max_result_bytes: int | None = None  # a larger result fails its attempt (None: no limit)
    log_limit: int = 1000
    max_log_line_chars: int = 8_192
    log_flush_interval_s: float = 2.0  # running attempts send their lines this often
    secret_dir: str | None = None  # the folder secrets by name resolve from (Settings)


DEFAULT_SETTINGS = RunnerSettings()


def _not_stored(step: str, why: str) -> str:
    return f"the outcome could not be stored: the result of step {step!r} {why}"


@dataclass(frozen=True, slots=True)
class _Signature:
    params: dict[str, TypeAdapter[Any]]
    result: TypeAdapter[Any]
    is_async: bool
    wants_ctx: bool


@functools.cache
def _signature(fn: Callable[..., Any]) -> _Signature:
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable annotations: fall back to plain JSON values
        hints = {}
    names = inspect.signature(fn).parameters
    params = {name: TypeAdapter(hints.get(name, Any)) for name in names if name != CONTEXT}
    return _Signature(
        params,
        TypeAdapter(hints.get("return", Any)),
        inspect.iscoroutinefunction(fn),
        CONTEXT in names,
    )


class PreparedAttempt:
    """The call of one attempt, split so sync and async callers share everything else."""

    def __init__(
        self,
        dispatch: Dispatch,
        blobs: BlobStore | None,
        settings: RunnerSettings,
        services: StepServices | None = None,
    ) -> None:
        self.dispatch = dispatch
        self.services = services
        self.blobs = blobs
        self.settings = settings
        self.started_at = datetime.now(UTC)
        self.log = AttemptLog(
            dispatch.run_id,
            dispatch.step,
            dispatch.map_index,
            dispatch.attempt,
            limit=settings.log_limit,
            max_chars=settings.max_log_line_chars,
        )
        self.fn: Callable[..., Any] | None = None
        self.kwargs: dict[str, Any] = {}

    def prepare(self) -> None:
        d = self.dispatch
        self.fn = load_function(d.fn)
        signature = _signature(self.fn)
        for name, spec in d.args.items():
            if "field" in spec and not has_field(spec):
                continue  # the input leaves it out: the parameter's default applies
            adapter = signature.params.get(name)
            text = arg_text(spec, self.blobs, self.services)
            self.kwargs[name] = adapter.validate_json(text) if adapter else json.loads(text)
        if signature.wants_ctx:
            self.kwargs[CONTEXT] = StepContext(
                run_id=d.run_id,
                workflow=d.workflow,
                step=d.step,
                map_index=d.map_index,
                attempt=d.attempt,
                idempotency_key=d.idempotency_key,
                logger=logging.getLogger(f"{STEP_LOGGER}.{d.workflow}.{d.step}"),
                services=self.services,
                heartbeat_every_s=_beat_interval(d.heartbeat_timeout_s),
            )

    def reached(self, moment: Moment) -> None:
        d = self.dispatch
        reached(moment, workflows=(d.workflow,), steps=(d.step,), kinds=(d.kind,))

    def begin(self) -> None:
        """The step's function is about to run. A step that must beat beats once now: its
        watch began at dispatch with room for a slow worker start (coordinator/heartbeats.py),
        and from this beat on it has its own timeout."""
        self.reached(Moment.STEP_STARTED)
        d = self.dispatch
        if d.heartbeat_timeout_s is not None and d.kind == "step" and self.services is not None:
            self.services.heartbeat(d.attempt_key, None)

    @property
    def reads_collected(self) -> bool:
        """Do its arguments call the step services? (not from an event loop's own thread:
        the services may answer from that loop)"""
        return any(reads_collected(spec) for spec in self.dispatch.args.values())

    @property
    def is_async(self) -> bool:
        return self.fn is not None and _signature(self.fn).is_async

    def success(self, value: Any, worker: WorkerIdentity) -> Outcome:
        assert self.fn is not None
        d = self.dispatch
        try:
            data = _signature(self.fn).result.dump_json(value)
            _refuse_non_finite(data, value, d.step)
        except ResultNotStorableError as exc:
            return self.failure(exc, worker)
        except Exception as exc:
            if "surrogates not allowed" in str(exc):
                why = "holds a lone surrogate, which UTF-8 cannot encode"
                return self.failure(ResultNotStorableError(_not_stored(d.step, why)), worker)
            return self.failure(
                ResultNotSerializableError(
                    f"step {d.step!r} returned a {type(value).__name__} that cannot be "
                    f"serialised to JSON ({exc}); return JSON-able data or a pydantic model"
                ),
                worker,
            )
        items = len(value) if isinstance(value, list | tuple) else None
        limit = self.settings.max_result_bytes
        if limit is not None and len(data) > limit:
            too_large = ResultTooLargeError(
                f"the result of step {d.step!r} is {len(data)} bytes of JSON, over the limit "
                f"of {limit} bytes (WFRAY_MAX_RESULT_BYTES); return less, or raise the limit"
            )
            return self.failure(too_large, worker)
        result_json: str | None = None
        result_ref: str | None = None
        if len(data) > self.settings.blob_threshold_bytes and self.blobs is not None:
            try:
                parts = None if items is None else _split(data)
            except Exception as exc:
                why = f"cannot be split into its items ({type(exc).__name__}: {exc})"
                return self.failure(ResultNotStorableError(_not_stored(d.step, why)), worker)
            try:
                key = blob_key(d.run_id, d.step, d.map_index, d.attempt)
                # a list is written once with its item offsets: a mapped item reads only its own
                if parts is None:
                    result_ref = self.blobs.put(key, data)
                else:
                    result_ref = self.blobs.put_list(key, parts)
            except Exception as exc:  # a failure of this attempt, not of its Ray task
                error = BlobWriteError(
                    f"the result of step {d.step!r} ({len(data)} bytes) could not be written "
                    f"to the blob store: {type(exc).__name__}: {exc}"
                )
                return self.failure(error, worker)
        else:
            result_json = data.decode()
        return self._outcome(
            AttemptStatus.SUCCEEDED,
            worker,
            result_json=result_json,
            result_ref=result_ref,
            result_items=items,
        )

    def failure(self, exc: BaseException, worker: WorkerIdentity) -> Outcome:
        kind = type(exc)
        retry_after = exc.delay_s if isinstance(exc, RetryLater) else None
        try:  # an exception's own __str__ may raise: that must not end the Ray task
            message = str(exc) or kind.__name__
            trace: str | None = "".join(traceback.format_exception(exc))
        except Exception as broken:
            message = f"{kind.__name__} (its message could not be read: {broken!r})"
            trace = None
        # credentials and resolved secrets never leave the worker in an error
        secrets = resolved_values()
        return self._outcome(
            AttemptStatus.FAILED,
            worker,
            error_type=f"{kind.__module__}.{kind.__qualname__}",
            error_message=mask_text(message, secrets),
            traceback=None if trace is None else mask_text(trace, secrets),
            retryable=not isinstance(exc, NonRetryableError),
            retry_after_s=retry_after,
        )

    def _progress(self) -> str | None:
        ctx = self.kwargs.get(CONTEXT)
        return ctx.last_progress if isinstance(ctx, StepContext) else None

    def stream_logs(self) -> None:
        if self.services is not None and self.settings.log_flush_interval_s > 0:
            streamer_for(self.services, self.settings.log_flush_interval_s).track(self.log)

    def _outcome(self, status: AttemptStatus, worker: WorkerIdentity, **fields: Any) -> Outcome:
        if self.services is not None:
            streamer_for(self.services, self.settings.log_flush_interval_s).untrack(self.log)
        d = self.dispatch
        return Outcome(
            run_id=d.run_id,
            step=d.step,
            map_index=d.map_index,
            attempt=d.attempt,
            status=status,
            started_at=self.started_at,
            finished_at=datetime.now(UTC),
            worker=worker,
            logs=self.log.finish(),
            progress_json=self._progress(),
            **fields,
        )


def _split(data: bytes) -> list[bytes] | None:
    """The items of a serialised list, each as its own JSON (None: not a list after all)."""
    values = json.loads(data)
    if not isinstance(values, list):
        return None
    return [pydantic_core.to_json(v) for v in values]


def _refuse_non_finite(data: bytes, value: Any, step: str) -> None:
    """JSON has no NaN or infinity, and pydantic writes them as null: a result that held one
    would come back altered. Checked only when a null was written (rarely)."""
    if b"null" not in data:
        return

    def refuse(constant: str) -> Any:
        why = f"holds {constant}, which JSON cannot represent"
        raise ResultNotStorableError(_not_stored(step, why))

    text = pydantic_core.to_json(value, inf_nan_mode="constants", serialize_unknown=True)
    json.loads(text, parse_constant=refuse)


def _beat_interval(timeout_s: float | None) -> float:
    """Beat a few times per timeout window, never more than twice a second."""
    return 0.5 if timeout_s is None else max(0.05, min(0.5, timeout_s / 4))


STEP_LOGGER = "wfray.step"
# steps log at INFO and up whatever the worker's root level is, so their lines are captured
logging.getLogger(STEP_LOGGER).setLevel(logging.INFO)


def run_attempt(
    dispatch: Dispatch,
    blobs: BlobStore | None,
    worker: WorkerIdentity,
    settings: RunnerSettings = DEFAULT_SETTINGS,
    services: StepServices | None = None,
) -> Outcome:
    """Run one attempt synchronously (async steps get their own event loop)."""
    attempt = PreparedAttempt(dispatch, blobs, settings, services)
    with _bound(attempt, settings):
        try:
            attempt.prepare()
            assert attempt.fn is not None
            attempt.begin()
            value = attempt.fn(**attempt.kwargs)
            if inspect.isawaitable(value):
                import asyncio

                value = asyncio.run(_await(value))
            attempt.reached(Moment.STEP_RETURNED)
        except Exception as exc:
            return attempt.failure(exc, worker)
    return attempt.success(value, worker)


@contextlib.contextmanager
def _bound(attempt: PreparedAttempt, settings: RunnerSettings) -> Iterator[None]:
    """While the step runs: its log lines and secrets are the attempt's, its logs stream."""
    token = bind(attempt.log)
    secret_dir = bind_secret_dir(settings.secret_dir)
    attempt.stream_logs()
    try:
        yield
    finally:
        unbind_secret_dir(secret_dir)
        unbind(token)


async def _await(value: Any) -> Any:
    return await value


async def run_attempt_async(
    dispatch: Dispatch,
    blobs: BlobStore | None,
    worker: WorkerIdentity,
    settings: RunnerSettings = DEFAULT_SETTINGS,
    services: StepServices | None = None,
) -> Outcome:
    """Run one attempt in an event loop: coroutines directly, sync code in a thread."""
    import asyncio

    attempt = PreparedAttempt(dispatch, blobs, settings, services)
    with _bound(attempt, settings):
        try:
            if attempt.reads_collected:
                await asyncio.to_thread(attempt.prepare)
            else:
                attempt.prepare()
            assert attempt.fn is not None
            attempt.begin()
            if attempt.is_async:
                value = await attempt.fn(**attempt.kwargs)
            else:
                # to_thread copies the context, so the thread's log lines land in this attempt
                value = await asyncio.to_thread(attempt.fn, **attempt.kwargs)
            attempt.reached(Moment.STEP_RETURNED)
        except Exception as exc:
            return attempt.failure(exc, worker)
    return attempt.success(value, worker)
