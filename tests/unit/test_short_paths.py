"""The short paths of an unloaded run, and that they lose nothing and do nothing twice.

A client-made run id skips the store lookup; submit-and-wait is one call; under light load a
worker reports its outcome to the coordinator itself while its executor keeps the durable
copy, which rides along with the next drain instead of ending one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import pytest
from ray import exceptions as rex

from tests.fixtures import unit_flows
from tests.unit.test_coordinator_inline import _fresh_counters, run  # noqa: F401
from tests.unit.test_coordinator_inline import coordinator as inline_coordinator
from wfray.adapters.memory.executor import InlineExecutor
from wfray.adapters.memory.store import InMemoryRunStore
from wfray.adapters.ray import client as client_module
from wfray.adapters.ray.client import RayClient
from wfray.application.client_commands import Submit
from wfray.application.messages import Outcome, RunView, SubmitRequest, SubmitResult
from wfray.application.wire import seal
from wfray.config import load_settings
from wfray.coordinator import dispatcher
from wfray.coordinator.coordinator import Coordinator
from wfray.domain.records import RunRecord
from wfray.domain.status import AttemptStatus, RunStatus
from wfray.domain.versions import CURRENT
from wfray.sdk.definition import Workflow
from wfray.worker.outbox import Outbox

T = TypeVar("T")
pytestmark = pytest.mark.timeout(60)


class CountingStore(InMemoryRunStore):
    """Counts the run ids intake looks up."""

    def __init__(self) -> None:
        super().__init__()
        self.looked_up: list[str] = []
        self.viewed: list[str] = []  # runs whose views only were read

    def find_runs(self, run_ids: Sequence[str]) -> dict[str, RunRecord]:
        self.looked_up.extend(run_ids)
        return super().find_runs(run_ids)

    def find_views(self, run_ids: Sequence[str]) -> dict[str, RunView]:
        self.viewed.extend(run_ids)
        return super().find_views(run_ids)


@asynccontextmanager
async def coordinator(
    store: InMemoryRunStore, executor: InlineExecutor | None = None
) -> AsyncIterator[Coordinator]:
    pools = None if executor is None else {"cpu": executor, "io": executor}
    async with inline_coordinator(store, pools) as c:
        yield c


def request(run_id: str, flow: Workflow = unit_flows.single, **options: Any) -> SubmitRequest:
    return SubmitRequest(run_id, flow.name, "", json.dumps(None), **options)


# -- fresh run ids ---------------------------------------------------------------------------------


def test_a_fresh_run_id_is_not_looked_up_and_a_resent_one_is() -> None:
    async def scenario() -> tuple[list[SubmitResult], list[SubmitResult], CountingStore]:
        store = CountingStore()
        async with coordinator(store) as c:
            first = await c.submit([request("new-1", fresh_id=True)])
            await c.wait(["new-1"], 5)
            resent = await c.submit([request("new-1", fresh_id=False)])
        return first, resent, store

    first, resent, store = run(scenario)
    assert first == [SubmitResult("new-1", True)]
    assert resent == [SubmitResult("new-1", False)]
    assert store.looked_up == ["new-1"]  # only the resend asked the store
    assert len(store.get_attempts("new-1")) == 1


def test_a_wait_for_a_run_no_longer_in_memory_reads_its_view_not_its_row() -> None:
    """Its input may be large, and a deep backlog's runs wait in the store."""

    async def scenario() -> tuple[list[RunView], CountingStore, bool]:
        store = CountingStore()
        async with coordinator(store) as c:
            await c.submit([request("gone-1", fresh_id=True)])
            await c.wait(["gone-1"], 5)
            held = "gone-1" in c.state.runs
            store.looked_up.clear()
            views = await c.wait(["gone-1"], 5)
        return views, store, held

    views, store, held = run(scenario)
    assert not held  # finished, so let go of: the second wait asks the store
    assert [(v.run_id, v.status) for v in views] == [("gone-1", RunStatus.COMPLETED)]
    assert store.viewed == ["gone-1"] and store.looked_up == []


def test_a_fresh_id_that_is_already_active_still_makes_no_second_run() -> None:
    """A resend that overtook its first send: the first, marked fresh, comes second."""

    async def scenario() -> tuple[list[SubmitResult], CountingStore]:
        store = CountingStore()
        gate = unit_flows.gate("hold")
        async with coordinator(store) as c:
            await c.submit([request("twice", unit_flows.held)])
            late = await c.submit([request("twice", unit_flows.held, fresh_id=True)])
            gate.set()
            await c.wait(["twice"], 5)
        return late, store

    unit_flows.reset()
    late, store = run(scenario)
    assert late == [SubmitResult("twice", False)]
    assert len(store.get_attempts("twice")) == 1


# -- submit and wait in one call -------------------------------------------------------------------


def test_submit_and_wait_answers_with_the_finished_run() -> None:
    async def scenario() -> tuple[list[SubmitResult], list[Any]]:
        async with coordinator(InMemoryRunStore()) as c:
            return await c.submit_and_wait([request("one-call", fresh_id=True)], 5)

    results, views = run(scenario)
    assert results == [SubmitResult("one-call", True)]
    assert [(v.run_id, v.status, v.result_json) for v in views] == [
        ("one-call", RunStatus.COMPLETED, "1")
    ]


def test_submit_and_wait_on_a_refused_submission_waits_for_nothing() -> None:
    async def scenario() -> tuple[list[SubmitResult], list[Any]]:
        async with coordinator(InMemoryRunStore()) as c:
            bad = SubmitRequest("nope", "no_such_workflow", "", "null")
            return await c.submit_and_wait([bad], 5)

    results, views = run(scenario)
    assert results[0].error_code == "unknown_workflow"
    assert views == []


# -- outcomes reported directly --------------------------------------------------------------------


def test_a_directly_reported_outcome_is_applied_once() -> None:
    async def scenario() -> tuple[Any, InMemoryRunStore, list[Outcome]]:
        store = InMemoryRunStore()
        executor = InlineExecutor()
        reported: list[Outcome] = []
        async with coordinator(store, executor) as c:

            def report(pool: str, outcome: Outcome) -> None:
                reported.append(outcome)
                c.report(pool, outcome)

            executor.reporter = report
            (view,) = await c.wait([(await c.submit([request("direct")]))[0].run_id], 5)
            # the executor's copy arrives with a later drain: it must change nothing
            await asyncio.sleep(0.05)
            c.outcomes.extend(("cpu", o) for o in list(reported))
            c.wake.set()
            await asyncio.sleep(0.05)
        return view, store, reported

    view, store, reported = run(scenario)
    assert view.status is RunStatus.COMPLETED
    assert len(reported) == 1
    assert [(a.attempt, a.status) for a in store.get_attempts("direct")] == [
        (1, AttemptStatus.SUCCEEDED)
    ]


def test_workers_report_directly_only_under_light_load() -> None:
    """Past LIGHT_LOAD running attempts, outcomes take the executor's batched path."""

    async def scenario() -> list[bool]:
        store = InMemoryRunStore()
        executor = InlineExecutor()
        seen: list[bool] = []
        original = executor.dispatch

        async def recording(dispatches: list[Any], epoch: int) -> None:
            seen.extend(d.report_directly for d in dispatches)
            await original(dispatches, epoch)

        executor.dispatch = recording  # type: ignore[method-assign]
        gate = unit_flows.gate("hold")
        async with coordinator(store, executor) as c:
            count = dispatcher.LIGHT_LOAD + 10
            ids = [f"load-{i}" for i in range(count)]
            await c.submit([request(rid, unit_flows.held) for rid in ids])
            gate.set()
            await c.wait(ids, 5)
        return seen

    unit_flows.reset()
    seen = run(scenario)
    assert seen == [True] * dispatcher.LIGHT_LOAD + [False] * 10


def test_an_outcome_put_without_waking_rides_along_with_the_next_drain() -> None:
    async def scenario() -> tuple[list[int], float, list[int]]:
        outbox = Outbox()
        quiet = Outcome.ended(("r", "s", -1, 1), AttemptStatus.SUCCEEDED, "", "")
        loud = Outcome.ended(("r", "s", -1, 2), AttemptStatus.SUCCEEDED, "", "")
        outbox.put(seal(quiet), wake=False)
        began = asyncio.get_running_loop().time()
        drained = (await outbox.drain(0, 0.2)).opened()  # nothing woke it: a full period
        waited = asyncio.get_running_loop().time() - began
        outbox.put(seal(loud))
        again = (await outbox.drain(drained.outcomes[-1].seq, 5)).opened()
        return [o.attempt for o in drained.outcomes], waited, [o.attempt for o in again.outcomes]

    quiet, waited, loud = run(scenario)
    assert quiet == [1]
    assert waited >= 0.19
    assert loud == [2]


# -- the client ------------------------------------------------------------------------------------


def fake_client(
    monkeypatch: pytest.MonkeyPatch, lose_first: bool
) -> tuple[RayClient, list[list[bool]]]:
    """A client whose coordinator records the fresh marks it receives; its first answer
    can be lost (as after a coordinator restart)."""
    sent: list[list[bool]] = []

    class Method:
        def remote(self, command: Submit) -> list[SubmitResult]:
            sent.append([r.fresh_id for r in command.requests])
            if lose_first and len(sent) == 1:
                raise rex.GetTimeoutError("answer lost")
            return [SubmitResult(r.run_id, True) for r in command.requests]

    class Versions:
        def remote(self) -> dict[str, str]:
            return CURRENT.as_dict()  # this wfray: checked before the first command

    class Handle:
        handle = Method()
        versions = Versions()

    monkeypatch.setattr(client_module.ray, "get", lambda ref, timeout: ref)
    client = RayClient(load_settings(namespace="unit"), handle=Handle())
    schema = unit_flows.single.schema
    client._registered.add((schema.name, schema.version, None))  # no env: none on a bare client
    return client, sent


def test_a_resent_submission_is_no_longer_marked_fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first send may have been carried out although its answer was lost."""
    client, sent = fake_client(monkeypatch, lose_first=True)
    client.submit_many(unit_flows.single, [None, None])
    assert sent == [[True, True], [False, False]]


def test_run_ids_given_by_the_caller_are_never_marked_fresh(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, sent = fake_client(monkeypatch, lose_first=False)
    client.submit_many(unit_flows.single, [None], run_ids=["mine"])
    assert sent == [[False]]
