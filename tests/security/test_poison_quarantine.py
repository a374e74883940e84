"""An outcome still undelivered at two consecutive coordinator starts is quarantined.

The coordinator that took it at its start went down before it committed (here: its loop
never turned, as when applying the outcome kills the process). The next start finds the
same outcome again: it is recorded as a failure of its attempt with that reason, kept in
the quarantine table, counted in a metric, and the run goes on by its retry policy.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.security._poison_support import coordinator, gate, held, run
from wfray.adapters.memory.executor import InlineExecutor
from wfray.application.coordinator import Coordinator, CoordinatorSettings
from wfray.application.messages import SubmitRequest
from wfray.application.quarantine import QUARANTINED, TWO_STARTS
from wfray.domain.status import AttemptStatus, RunStatus

pytestmark = pytest.mark.timeout(120)


def test_undelivered_at_two_starts_is_quarantined_and_the_run_goes_on(store: Any) -> None:
    name = f"q-{id(store)}"
    executor = InlineExecutor()
    request = SubmitRequest("held-1", held.name, held.schema.version, json.dumps({"gate": name}))

    async def scenario() -> None:
        async with coordinator(store, executor) as first:
            await first.submit([request])
            while not executor.running:
                await asyncio.sleep(0.01)  # polling the executor, not a fixed wait
        gate(name).set()  # the attempt ends while no coordinator runs
        while len(executor.outbox) == 0:
            await asyncio.sleep(0.01)
        # a second coordinator starts and goes down before its loop applies the outcome
        second = Coordinator(
            store, {"cpu": executor, "io": executor}, _Clock(), CoordinatorSettings()
        )
        await second.reconciler.recover()
        assert second.guard.poisoned == {}
        async with coordinator(store, executor) as third:
            views = await third.wait(["held-1"], 30)
            assert views[0].status is RunStatus.COMPLETED
            counted = third.metrics.snapshot()["outcomes_quarantined_total"]  # type: ignore[attr-defined]
            assert counted == [({"reason": QUARANTINED}, 1.0)]

    run(scenario)
    attempts = store.get_attempts("held-1")
    assert [a.status for a in attempts] == [AttemptStatus.FAILED, AttemptStatus.SUCCEEDED]
    assert TWO_STARTS in (attempts[0].error_message or "")
    (aside,) = store.set_aside_outcomes()
    assert aside.key == ("held-1", "wait_for_gate", -1, 1)
    assert aside.status == QUARANTINED and TWO_STARTS in aside.reason


class _Clock:
    def now(self) -> Any:
        from datetime import UTC, datetime

        return datetime.now(UTC)
