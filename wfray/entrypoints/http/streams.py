"""Followed log streams (`GET /v1/runs/{id}/logs?follow=true`), bounded.

A stream sends the lines after a line id, as NDJSON, until the run ends or `max_s` has
passed (the client reconnects with `after=<last id>` and loses nothing); each poll reads at
most one page. One caller (token) holds at most `per_caller` streams in this API replica at
once; one more is refused with 429.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from wfray.client.client import Client
from wfray.domain.errors import TooManyStreamsError
from wfray.entrypoints.http.models import LogLineOut

POLL_S = 0.5


class StreamSlots:
    """How many streams each caller holds (thread-safe: endpoints run in threads)."""

    def __init__(self, per_caller: int) -> None:
        self.per_caller = per_caller
        self._held: Counter[str] = Counter()
        self._lock = threading.Lock()

    def take(self, caller: str) -> Callable[[], None]:
        """A slot for `caller`, or TooManyStreamsError; returns its release (idempotent)."""
        with self._lock:
            if self._held[caller] >= self.per_caller:
                raise TooManyStreamsError(
                    f"{caller!r} already follows {self._held[caller]} log streams "
                    f"(at most {self.per_caller} at once): close one, or retry later"
                )
            self._held[caller] += 1
        released = False

        def release() -> None:
            nonlocal released
            with self._lock:
                if not released:
                    released = True
                    self._held[caller] -= 1

        return release

    def held(self, caller: str) -> int:
        with self._lock:
            return self._held[caller]


@dataclass(frozen=True, slots=True)
class Follow:
    run_id: str
    step: str | None
    after: int | None
    page: int
    max_s: float


async def follow_logs(
    client: Client, follow: Follow, is_finished: Callable[[], bool], release: Callable[[], None]
) -> AsyncIterator[bytes]:
    """The lines after `follow.after`, as they come, until the run ends or time is up."""
    last = follow.after
    deadline = time.monotonic() + follow.max_s
    try:
        while True:
            # The status is read before the lines, so the last read has every line of a
            # run that had finished.
            finished = await run_in_threadpool(is_finished)
            while True:
                lines = await run_in_threadpool(
                    client.logs, follow.run_id, follow.step, last, follow.page
                )
                for line in lines:
                    yield LogLineOut.of(line).model_dump_json().encode() + b"\n"
                    last = line.id
                if len(lines) < follow.page:
                    break
            if finished or time.monotonic() >= deadline:
                return
            await asyncio.sleep(POLL_S)
    finally:
        release()
