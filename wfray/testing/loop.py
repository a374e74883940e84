"""The local engine's event loop, in a daemon thread of its own, and sync calls into it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from wfray.domain.errors import WaitTimeoutError

T = TypeVar("T")
THREAD_NAME = "wfray-local-engine"


class EngineLoop:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._loop is not None

    def start(self) -> None:
        loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=_serve, args=(loop,), name=THREAD_NAME, daemon=True)
        self._thread.start()
        self._loop = loop

    def call(self, coroutine: Coroutine[Any, Any, T], timeout_s: float | None) -> T:
        """Run `coroutine` on the loop and return its result (None: no time limit)."""
        loop = self._loop
        if loop is None:
            coroutine.close()
            raise RuntimeError("the local wfray is not started (use it in a `with` block)")
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError(
                "an async step cannot call the local wfray (or advance its clock): it would "
                "wait for itself"
            )
        future = asyncio.run_coroutine_threadsafe(coroutine, loop)
        try:
            return future.result(timeout_s)
        except TimeoutError:
            future.cancel()
            raise WaitTimeoutError(
                f"the local wfray did not answer within {timeout_s:g}s of real time"
            ) from None

    def stop(self, timeout_s: float) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._loop = self._thread = None
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout_s)
        if not thread.is_alive():
            loop.close()  # its worker threads are let go, not waited for


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    loop.run_forever()
