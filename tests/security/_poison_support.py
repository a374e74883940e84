"""Workflows that try to poison the store, and an in-process coordinator to run them.

A poisoned attempt is the first one of its task: it fails (or returns) with a value that the
database cannot store as it is. The retry that follows is clean, so a run that survives the
poison ends `completed`: "none lost, none stuck" is "every run completed".
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel

from wfray.domain.policy import RetryPolicy
from wfray.sdk.context import StepContext
from wfray.sdk.definition import Workflow

T = TypeVar("T")

NOW = RetryPolicy(max_attempts=3, initial_delay_s=0)

# What a first attempt leaves behind, by kind.
KINDS = (
    "nul_error",  # an exception message with a NUL byte
    "surrogate_error",  # ... with a lone surrogate
    "long_error",  # ... of 5 million characters
    "nul_log",  # a log line with a NUL byte
    "surrogate_log",  # a log line with a lone surrogate
    "nan_result",  # a result holding NaN (JSON has no NaN)
    "inf_result",  # ... holding infinity
    "object_result",  # a result that is no JSON at all
    "surrogate_result",  # a result string with a lone surrogate
)


class Poison(BaseModel):
    kind: str


class NotJson:
    pass


poison = Workflow("poison", input=Poison, retry=NOW)


@poison.step
def spoil(input: Poison, ctx: StepContext) -> Any:
    first = ctx.attempt == 1
    kind = input.kind
    if first and kind == "nul_error":
        raise ValueError("bad\x00byte")
    if first and kind == "surrogate_error":
        raise ValueError("bad \ud800 surrogate")
    if first and kind == "long_error":
        raise ValueError("x" * 5_000_000)
    if first and kind == "nul_log":
        ctx.logger.warning("a line with a \x00 NUL")
    if first and kind == "surrogate_log":
        ctx.logger.warning("a line with a \udfff surrogate")
    if first and kind == "nan_result":
        return {"value": math.nan}
    if first and kind == "inf_result":
        return [1.0, math.inf]
    if first and kind == "object_result":
        return NotJson()
    if first and kind == "surrogate_result":
        return "half a pair: \ud83d"
    return {"value": 1.0, "attempt": ctx.attempt}


class Count(BaseModel):
    n: int


plain = Workflow("plain", input=Count, retry=NOW)


@plain.step
def echo(input: Count) -> int:
    return input.n


class Pid(BaseModel):
    pid: int


ALL = (poison, plain)
log = logging.getLogger("tests.poison")


class WallClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def run(scenario: Callable[[], Coroutine[Any, Any, T]], timeout_s: float = 60) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(scenario(), timeout_s)

    return asyncio.run(bounded())


@asynccontextmanager
async def coordinator(store: Any, executor: Any = None, **settings: Any) -> AsyncIterator[Any]:
    """A Coordinator over `store`, with one inline executor for both pools."""
    from wfray.adapters.memory.executor import InlineExecutor
    from wfray.coordinator.coordinator import Coordinator, CoordinatorSettings

    shared = executor or InlineExecutor()
    c = Coordinator(
        store, {"cpu": shared, "io": shared}, WallClock(), CoordinatorSettings(**settings)
    )
    await c.start()
    try:
        await c.register([flow.schema for flow in ALL])
        yield c
    finally:
        await c.stop()


def rogue_executor(target: str) -> Any:
    """An inline executor whose worker reports, for the first attempt of run `target`, a pid
    no integer column holds (2**70). The gate screens text and JSON, not this: the commit
    fails, and the guard must find that row among the others and fail only its attempt."""
    from wfray.adapters.memory.executor import InlineExecutor
    from wfray.application.messages import Dispatch
    from wfray.domain.records import WorkerIdentity

    class Rogue(InlineExecutor):
        def worker_for(self, dispatch: Dispatch) -> WorkerIdentity:
            if dispatch.run_id == target and dispatch.attempt == 1:
                return WorkerIdentity(node_id="rogue", worker_id="rogue", host="x", pid=2**70)
            return self.worker

    return Rogue()


def alive(c: Any) -> bool:
    """The loop still turns: it did not die on a commit (the Ray host would restart it)."""
    task = c._loop_task
    return task is not None and not task.done()


class Hold(BaseModel):
    gate: str


_gates: dict[str, Any] = {}


def gate(name: str) -> Any:
    import threading

    return _gates.setdefault(name, threading.Event())


held = Workflow("held", input=Hold, retry=NOW)


@held.step
def wait_for_gate(input: Hold, ctx: StepContext) -> int:
    if ctx.attempt == 1:
        gate(input.gate).wait(30)
    return ctx.attempt


ALL = (poison, plain, held)
