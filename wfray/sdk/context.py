"""What a step sees of its run, and the capture of its log lines."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import TypeAdapter

from wfray.application.ports import StepServices
from wfray.application.storable import clean_text
from wfray.application.views import ChildPlacement, ChildStart
from wfray.domain.claims import check_key, check_ttl
from wfray.domain.errors import NonRetryableError, WfrayError
from wfray.domain.ids import child_run_id
from wfray.domain.masking import mask_text
from wfray.domain.records import LogRecord
from wfray.sdk.runtime import ChildRuns, Claim, OnChildFailure, gather_children
from wfray.sdk.secrets import resolved_values

_current: contextvars.ContextVar[AttemptLog | None] = contextvars.ContextVar(
    "wfray_attempt_log", default=None
)


@dataclass(slots=True)
class AttemptLog:
    """The log lines of one attempt, bounded so a chatty step cannot exhaust memory."""

    run_id: str
    step: str
    map_index: int
    attempt: int
    limit: int = 1000
    max_chars: int = 16 * 1024  # a longer line is cut, saying how much was cut
    lines: list[LogRecord] = field(default_factory=list)
    dropped: int = 0
    kept: int = 0  # lines accepted so far, streamed or not: the limit counts them all
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # held while streamed lines are on their way: the outcome waits for them (lines before
    # the outcome are stored no later than the outcome itself)
    delivery: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> list[LogRecord]:
        """The lines logged since the last take (for streaming while the attempt runs)."""
        with self._lock:
            taken, self.lines = self.lines, []
            return taken

    def put_back(self, lines: list[LogRecord]) -> None:
        with self._lock:
            self.lines[:0] = lines

    def add(self, record: logging.LogRecord) -> None:
        with self._lock:
            if self.kept >= self.limit:
                self.dropped += 1
                return
            self.kept += 1
            self._append(record)

    def _append(self, record: logging.LogRecord) -> None:
        self.lines.append(
            LogRecord(
                run_id=self.run_id,
                step=self.step,
                map_index=self.map_index,
                attempt=self.attempt,
                ts=datetime.fromtimestamp(record.created, UTC),
                level=record.levelname,
                logger=record.name,
                # credentials and resolved secrets never leave the worker in a log line
                message=clean_text(mask_text(_format(record), resolved_values()), self.max_chars),
            )
        )

    def finish(self) -> list[LogRecord]:
        with self._lock:
            return self._finish()

    def _finish(self) -> list[LogRecord]:
        if self.dropped:
            self.lines.append(
                LogRecord(
                    run_id=self.run_id,
                    step=self.step,
                    map_index=self.map_index,
                    attempt=self.attempt,
                    ts=datetime.now(UTC),
                    level="WARNING",
                    logger="wfray",
                    message=f"log truncated: {self.dropped} more lines dropped "
                    f"(limit {self.limit} per attempt)",
                )
            )
            self.dropped = 0
        return self.lines


def _format(record: logging.LogRecord) -> str:
    message = record.getMessage()
    if record.exc_info:
        message += "\n" + logging.Formatter().formatException(record.exc_info)
    return message


class _CaptureHandler(logging.Handler):
    """One root handler per process; it files each record under the attempt running it."""

    def emit(self, record: logging.LogRecord) -> None:
        log = _current.get()
        if log is not None:
            log.add(record)


_handler = _CaptureHandler()


def install_capture() -> None:
    root = logging.getLogger()
    if _handler not in root.handlers:
        root.addHandler(_handler)


def bind(log: AttemptLog) -> contextvars.Token[AttemptLog | None]:
    install_capture()
    return _current.set(log)


def unbind(token: contextvars.Token[AttemptLog | None]) -> None:
    _current.reset(token)


@dataclass(frozen=True, slots=True)
class StepContext:
    """Handed to a step that has a `ctx` parameter.

    Attributes:
        run_id: the run this attempt belongs to.
        workflow: the workflow's name.
        step: the step's name.
        map_index: the item index of a fanned-out step, -1 otherwise.
        attempt: 1 for the first attempt, then 2, 3, ...
        idempotency_key: stable across attempts; pass it to external systems.
        logger: records logged here are stored with the attempt.

    Methods: `heartbeat(progress)` (a step with `heartbeat_timeout_s` must call it that
    often), `publish(name, payload, id=...)` (start the workflows subscribed to an event),
    `run_children(workflow, inputs)` (one child run per input, waited for),
    `claim(key, ttl=...)` and `claimed(key)` (side effects once across runs).
    """

    run_id: str
    workflow: str
    step: str
    map_index: int
    attempt: int
    idempotency_key: str
    logger: logging.Logger
    services: StepServices | None = None
    heartbeat_every_s: float = 0.5
    # calls made so far in this attempt: [publish, run_children, last heartbeat time]
    _calls: list[float] = field(default_factory=lambda: [0, 0, 0.0])
    _progress: list[str] = field(default_factory=list)  # the last progress, as JSON

    @property
    def attempt_key(self) -> tuple[str, str, int, int]:
        return (self.run_id, self.step, self.map_index, self.attempt)

    def _services(self, what: str) -> StepServices:
        if self.services is None:
            raise WfrayError(f"ctx.{what} needs a running wfray (this step runs outside one)")
        return self.services

    def _waiting_services(self, what: str) -> StepServices:
        """For the calls that wait for wfray: refused on an event loop's thread, where the
        wait would stall every other coroutine of the io executor, not just this step."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return self._services(what)
        raise NonRetryableError(
            f"ctx.{what}() waits for wfray, which would block this async step's event loop "
            f"(and every other io step sharing it): use `await ctx.{what}_async(...)`"
        )

    def heartbeat(self, progress: Any = None) -> None:
        """Say the step is alive; `progress` (JSON-able) is stored on the task.

        Cheap to call often: beats closer together than `heartbeat_every_s` are dropped.
        """
        services = self._services("heartbeat")
        text = None if progress is None else TypeAdapter(Any).dump_json(progress).decode()
        if text is not None:
            self._progress[:] = [text]  # the outcome carries the last one, whatever happens
        now = time.monotonic()
        if now - self._calls[2] < self.heartbeat_every_s:
            return
        self._calls[2] = now
        services.heartbeat(self.attempt_key, text)

    @property
    def last_progress(self) -> str | None:
        return self._progress[0] if self._progress else None

    def next_number(self, counter: str) -> int:
        """The next value of a counter owned by wfray's store (e.g. invoice numbers).

        Never the same value twice, across runs, attempts and coordinators; a value taken
        by an attempt that then failed is not reused (gaps are allowed, repeats are not).
        """
        return self._waiting_services("next_number").next_value(counter)

    async def next_number_async(self, counter: str) -> int:
        """`next_number` for async steps: waits in a thread, not on the event loop."""
        self._services("next_number")
        return await asyncio.to_thread(self.next_number, counter)

    def claim(self, key: str, *, ttl: float | timedelta = 600.0) -> Claim:
        """Claim `key` before a side effect, for this step (its retries and reruns too).

        The first step to claim a key gets it (`claim.acquired`); a later attempt of the
        same step gets it back (`claim.regained`); any other step learns who holds it and
        whether the holder is "running", "retrying", "done" (with `claim.result`) or
        "died". A dead holder's claim (its step ended without marking it done, or its
        `ttl`, in seconds or a timedelta, passed) goes to the next claimant, with
        `claim.taken_over_from` set: check the external system before repeating the
        effect. Mark it `claim.done(result_ref)` once the effect happened.
        """
        seconds = check_ttl(ttl).total_seconds()
        services = self._waiting_services("claim")
        return Claim(
            services.claim(check_key(key), self.attempt_key, seconds), services, self.attempt_key
        )

    async def claim_async(self, key: str, *, ttl: float | timedelta = 600.0) -> Claim:
        """`claim` for async steps: waits in a thread, not on the event loop."""
        self._services("claim")
        return await asyncio.to_thread(self.claim, key, ttl=ttl)

    def claimed(self, key: str) -> Claim | None:
        """The claim on `key` and its holder's state, without taking it (None: unclaimed).
        A racing step can skip a side effect another run did, or reuse its result."""
        services = self._waiting_services("claimed")
        view = services.claimed(check_key(key), self.attempt_key)
        return None if view is None else Claim(view, services, self.attempt_key)

    async def claimed_async(self, key: str) -> Claim | None:
        """`claimed` for async steps: waits in a thread, not on the event loop."""
        self._services("claimed")
        return await asyncio.to_thread(self.claimed, key)

    def publish(self, name: str, payload: Any = None, *, id: str | None = None) -> list[str]:
        """Publish an internal event; returns the ids of the runs it started.

        Without an `id`, one derived from this step and the call's order is used, so a
        retried attempt publishing the same events starts nothing twice.
        """
        self._calls[0] += 1
        event_id = id or f"{self.idempotency_key}:{int(self._calls[0])}"
        return self._waiting_services("publish").publish(name, payload, event_id)

    async def publish_async(
        self, name: str, payload: Any = None, *, id: str | None = None
    ) -> list[str]:
        """`publish` for async steps: waits in a thread, not on the event loop."""
        self._services("publish")
        return await asyncio.to_thread(self.publish, name, payload, id=id)

    def run_children(
        self,
        workflow: Any,
        inputs: Sequence[Any],
        *,
        on_failure: OnChildFailure = "fail",
        timeout_s: float = 3600.0,
        queue: str = "default",
        priority: int = 0,
        concurrency_keys: Sequence[str | None] | None = None,
    ) -> ChildRuns:
        """Start one run of `workflow` per input as children of this run and wait for them.

        Each child has its own retries and compensation. `on_failure="fail"` (default)
        fails this step for good if a child did not succeed (the parent is then
        compensated); "continue" returns every child, the failed ones listed with their
        errors. A retry of this step finds the same children instead of starting new ones.
        The children wait in `queue` with `priority`; `concurrency_keys`, one per input,
        put each child under its queue's per-key limit (at most N running per customer,
        say, whichever parent started them).
        """
        services = self._waiting_services("run_children")
        if concurrency_keys is not None and len(concurrency_keys) != len(inputs):
            raise NonRetryableError(
                f"run_children: {len(concurrency_keys)} concurrency keys for "
                f"{len(inputs)} inputs; give one per input (None for no key)"
            )
        placement = ChildPlacement(
            queue, priority, None if concurrency_keys is None else tuple(concurrency_keys)
        )
        self._calls[1] += 1
        call = int(self._calls[1])
        name = str(getattr(workflow, "name", None) or getattr(workflow, "__name__", workflow))
        run_ids = [child_run_id(self.attempt_key, call, name, i) for i in range(len(inputs))]
        tag = self._child_tag(call)
        services.start_runs(
            ChildStart(workflow, list(inputs), run_ids, self.run_id, tag, placement)
        )
        statuses = services.wait_runs(run_ids, timeout_s)
        return gather_children(name, run_ids, statuses, on_failure)

    async def run_children_async(
        self,
        workflow: Any,
        inputs: Sequence[Any],
        *,
        on_failure: OnChildFailure = "fail",
        timeout_s: float = 3600.0,
        queue: str = "default",
        priority: int = 0,
        concurrency_keys: Sequence[str | None] | None = None,
    ) -> ChildRuns:
        """`run_children` for async steps: waits in a thread, not on the event loop."""
        self._services("run_children")
        return await asyncio.to_thread(
            self.run_children,
            workflow,
            inputs,
            on_failure=on_failure,
            timeout_s=timeout_s,
            queue=queue,
            priority=priority,
            concurrency_keys=concurrency_keys,
        )

    def _child_tag(self, call: int) -> str:
        where = self.step if self.map_index < 0 else f"{self.step}[{self.map_index}]"
        return f"{where}#{call}"
