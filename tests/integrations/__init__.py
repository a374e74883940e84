"""Tests of the built-in tasks; `run_inline` runs one through the real coordinator."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from wfray.adapters.memory.executor import InlineExecutor
from wfray.adapters.memory.store import InMemoryRunStore
from wfray.application.messages import RunView, SubmitRequest
from wfray.coordinator.coordinator import Coordinator, CoordinatorSettings
from wfray.domain.records import AttemptRecord


class _WallClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def run_inline(
    task_fn: Callable[..., Any], payload: dict[str, Any], timeout_s: float = 20.0
) -> tuple[RunView, list[AttemptRecord]]:
    """Submit a task by name with a JSON input, as a client would, and wait for its end.

    The step runner then parses the JSON into the task's parameter types and serialises its
    result, which calling the function directly does not exercise.
    """
    flow = task_fn.__wfray_workflow__  # type: ignore[attr-defined]

    async def scenario() -> tuple[RunView, list[AttemptRecord]]:
        store = InMemoryRunStore()
        pool = InlineExecutor()
        coordinator = Coordinator(
            store, {"cpu": pool, "io": pool}, _WallClock(), CoordinatorSettings()
        )
        await coordinator.start()
        try:
            await coordinator.register([flow.schema])
            request = SubmitRequest("run-1", flow.name, "", json.dumps(payload))
            await coordinator.submit([request])
            (view,) = await coordinator.wait(["run-1"], timeout_s=timeout_s)
            return view, list(store.get_attempts("run-1"))
        finally:
            await coordinator.stop()

    async def bounded() -> tuple[RunView, list[AttemptRecord]]:
        return await asyncio.wait_for(scenario(), timeout_s + 5)

    return asyncio.run(bounded())
