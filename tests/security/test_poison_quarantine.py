"""An outcome that coordinators went down while applying is quarantined; one whose
coordinators went down before they began applying it (an operator's kill, a lost node) is
not: that is no evidence against the outcome.

A coordinator that took an outcome at its start and began applying it (it said so in the
store) went down before it committed: here it is abandoned after `guard.applying`, as when
applying the outcome kills the process. At the start after the third such death the outcome
is recorded as a failure of its attempt with that reason, kept in the quarantine table,
counted in a metric, and the run goes on by its retry policy.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.security._poison_support import coordinator, gate, held, run
from wfray.adapters.memory.executor import InlineExecutor
from wfray.application.messages import SubmitRequest
from wfray.application.quarantine import QUARANTINED, died_applying
from wfray.coordinator.coordinator import Coordinator, CoordinatorSettings
from wfray.domain.status import AttemptStatus, RunStatus

pytestmark = pytest.mark.timeout(120)
DEATHS = CoordinatorSettings().quarantine_after_deaths


async def _outcome_held_while_no_coordinator_runs(
    store: Any, executor: InlineExecutor, run_id: str
) -> None:
    name = f"q-{id(store)}-{run_id}"
    request = SubmitRequest(run_id, held.name, held.schema.version, json.dumps({"gate": name}))
    async with coordinator(store, executor) as first:
        await first.submit([request])
        while not executor.running:
            await asyncio.sleep(0.01)  # polling the executor, not a fixed wait
    gate(name).set()  # the attempt ends while no coordinator runs
    while len(executor.outbox) == 0:
        await asyncio.sleep(0.01)


async def _start_and_go_down(store: Any, executor: InlineExecutor, *, applying: bool) -> Any:
    """A coordinator recovers, then goes down: while applying what it found, or before."""
    c = Coordinator(store, {"cpu": executor, "io": executor}, _Clock(), CoordinatorSettings())
    await c.reconciler.recover()
    await c.guard.quarantine_repeats()
    if applying:
        await c.guard.applying(c.outcomes)
    return c


def test_an_outcome_applied_at_three_fatal_starts_is_quarantined_and_the_run_goes_on(
    store: Any,
) -> None:
    executor = InlineExecutor()

    async def scenario() -> None:
        await _outcome_held_while_no_coordinator_runs(store, executor, "held-1")
        for _ in range(DEATHS):
            gone = await _start_and_go_down(store, executor, applying=True)
            assert gone.guard.poisoned == {}
        async with coordinator(store, executor) as last:
            views = await last.wait(["held-1"], 30)
            assert views[0].status is RunStatus.COMPLETED
            counted = last.metrics.snapshot()["outcomes_quarantined_total"]  # type: ignore[attr-defined]
            assert counted == [({"reason": QUARANTINED}, 1.0)]

    run(scenario)
    attempts = store.get_attempts("held-1")
    assert [a.status for a in attempts] == [AttemptStatus.FAILED, AttemptStatus.SUCCEEDED]
    assert died_applying(DEATHS) in (attempts[0].error_message or "")
    (aside,) = store.quarantined_outcomes()
    assert aside.key == ("held-1", "wait_for_gate", -1, 1)
    assert aside.status == QUARANTINED and died_applying(DEATHS) in aside.reason


def test_coordinators_killed_before_they_apply_an_outcome_never_quarantine_it(
    store: Any,
) -> None:
    """What an operator's repeated kills look like: every start finds the outcome, none gets
    as far as applying it; the first coordinator that does applies it as it was."""
    executor = InlineExecutor()

    async def scenario() -> None:
        await _outcome_held_while_no_coordinator_runs(store, executor, "held-2")
        for _ in range(DEATHS + 2):
            gone = await _start_and_go_down(store, executor, applying=False)
            assert gone.guard.poisoned == {}
        # one death while applying is not enough either
        await _start_and_go_down(store, executor, applying=True)
        async with coordinator(store, executor) as last:
            views = await last.wait(["held-2"], 30)
            assert views[0].status is RunStatus.COMPLETED
            snapshot = last.metrics.snapshot()  # type: ignore[attr-defined]
            assert snapshot.get("outcomes_quarantined_total", []) == []

    run(scenario)
    attempts = store.get_attempts("held-2")
    assert [a.status for a in attempts] == [AttemptStatus.SUCCEEDED]
    assert store.quarantined_outcomes() == []


class _Clock:
    def now(self) -> Any:
        from datetime import UTC, datetime

        return datetime.now(UTC)
