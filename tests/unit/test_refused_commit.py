"""A commit the store refuses leaves the coordinator's memory as the store holds it.

Turns are driven one by one here (no loop task, no drainers), with a clock the test moves
and an executor that runs nothing: the test says how each attempt ends. After each turn,
memory is compared with a fresh load of the same runs from the store (the loader's own
view), and with the store's running attempts, queued count and waiting timers. The runs a
refused commit sets aside are loaded again; the others are the very objects they were.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from wfray.adapters.memory.store import InMemoryRunStore
from wfray.application.messages import (
    Dispatch,
    Drained,
    ExecutorSnapshot,
    Outcome,
    SubmitRequest,
    SubmitResult,
)
from wfray.application.metrics import MetricsBuffer
from wfray.coordinator.coordinator import Coordinator, CoordinatorSettings
from wfray.coordinator.durable import DurableStore
from wfray.coordinator.heartbeats import START_GRACE_S
from wfray.coordinator.loading import RunLoader
from wfray.coordinator.state import CoordinatorState
from wfray.coordinator.timers import TimerKind
from wfray.coordinator.turn import NOT_RECORDED
from wfray.domain.policy import RetryPolicy
from wfray.domain.records import AttemptKey, WorkerIdentity, as_row
from wfray.domain.run_state import RunState
from wfray.domain.status import AttemptStatus, RunStatus, TaskStatus
from wfray.sdk.definition import Workflow

pytestmark = pytest.mark.timeout(60)

START = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
RETRY = RetryPolicy(max_attempts=3, initial_delay_s=60, backoff=1.0, jitter=0)
flow = Workflow("refusals", retry=RETRY)


@flow.step(pool="io")
def fetch() -> int:
    return 1


@flow.step
def total(fetch: int) -> int:
    return fetch


pair = Workflow("refusals_pair", retry=RETRY)


@pair.step(pool="io")
def left() -> int:
    return 1


@pair.step(pool="io", heartbeat_timeout_s=30)
def right() -> int:
    return 2


@pair.step
def both(left: int, right: int) -> int:
    return left + right


spread = Workflow("refusals_spread", retry=RETRY)


@spread.step
def listing() -> list[int]:
    return list(range(10))


@spread.step(map="listing", pool="io")
def each(listing: int) -> int:
    return listing


@spread.step
def sum_up(each: list[int]) -> int:
    return sum(each)


FLOWS = (flow, pair, spread)


class MovedClock:
    def __init__(self) -> None:
        self.at = START

    def now(self) -> datetime:
        return self.at


class HeldExecutor:
    """Takes dispatches and runs nothing: the test decides how each attempt ends."""

    def __init__(self) -> None:
        self.dispatched: list[Dispatch] = []
        self.cancelled: list[AttemptKey] = []

    async def dispatch(self, dispatches: list[Dispatch], epoch: int = 0) -> None:
        self.dispatched.extend(dispatches)

    async def drain(self, ack: int, wait_s: float, epoch: int = 0) -> Drained:
        return Drained("held", [])

    async def snapshot(self, ack: int, epoch: int = 0) -> ExecutorSnapshot:
        return ExecutorSnapshot("held", [d.attempt_key for d in self.dispatched], [])

    async def cancel(self, attempts: list[tuple[str, str, int, int]]) -> None:
        self.cancelled.extend(attempts)

    def attempt(self, run_id: str, step: str, map_index: int = -1) -> AttemptKey:
        (key,) = [
            d.attempt_key
            for d in self.dispatched
            if (d.run_id, d.step, d.map_index) == (run_id, step, map_index)
        ]
        return key


class Driven:
    """A coordinator whose turns the test takes."""

    def __init__(self, **settings: Any) -> None:
        self.store = InMemoryRunStore()
        self.clock = MovedClock()
        self.executor = HeldExecutor()
        pools = {"cpu": self.executor, "io": self.executor}
        self.c = Coordinator(self.store, pools, self.clock, CoordinatorSettings(**settings))
        self.seq = 0

    async def start(self) -> None:
        await self.c.reconciler.recover()
        await self.c.register([f.schema for f in FLOWS])

    async def turn(self) -> None:
        self.executor.dispatched = [
            d for d in self.executor.dispatched if d.attempt_key in self.c.state.attempts
        ]
        await self.c._turn()
        await self.c.reconciler.sent()

    async def submit(self, *run_ids: str, workflow: Workflow = flow) -> list[SubmitResult]:
        version = workflow.schema.version
        requests = [SubmitRequest(run_id, workflow.name, version, "null") for run_id in run_ids]
        answer = asyncio.ensure_future(self.c.submit(requests))
        await asyncio.sleep(0)  # it reaches the intake
        await self.turn()
        return await answer

    def ends(
        self,
        key: AttemptKey,
        status: AttemptStatus,
        pid: int | None = None,
        result: object = 1,
    ) -> Outcome:
        """An outcome as the executor reports it, next in its outbox."""
        self.seq += 1
        outcome = Outcome(*key, status, self.clock.at, self.clock.at, seq=self.seq)
        outcome.worker = WorkerIdentity(node_id="n", worker_id="w", host="h", pid=pid)
        if status is AttemptStatus.SUCCEEDED:
            outcome.result_json = json.dumps(result)
            outcome.result_items = len(result) if isinstance(result, list) else None
        else:
            outcome.error_type, outcome.error_message = "ValueError", "boom"
        self.c.report("io", outcome)
        return outcome


def held_view(state: RunState) -> dict[str, Any]:
    """What memory holds of a run that the store holds too (parents_done is a cache of
    what the tasks say, filled as the engine looks; no count and a count of 0 are one)."""
    return {
        "run": as_row(state.run),
        "tasks": {key: as_row(task) for key, task in state.tasks.items()},
        "items_done": {step: done for step, done in state.items_done.items() if done},
        "paged": state.paged,
        "next_item": state.next_item,
        "collected": state.collected,
    }


async def assert_memory_is_the_store(driven: Driven) -> None:
    memory, store = driven.c.state, driven.store
    fresh = CoordinatorState(memory.settings)
    await RunLoader(fresh, DurableStore(store, 1.0)).load_runs(set(memory.runs))
    assert set(fresh.runs) == set(memory.runs)
    for run_id, state in memory.runs.items():
        assert held_view(state) == held_view(fresh.runs[run_id]), run_id
    _, _, running = store.load_active(False)
    stored = {(a.run_id, a.step, a.map_index, a.attempt): as_row(a) for a in running}
    assert {key: as_row(a) for key, a in memory.attempts.items()} == stored
    assert +memory.running_on == Counter(a.executor for a in running)
    assert memory.queued_count == store.count_queued()
    waiting = Counter(
        (TimerKind.RETRY, t.run_id, t.step, t.map_index, t.ready_at)
        for state in memory.runs.values()
        for t in state.tasks.values()
        if t.status in (TaskStatus.RETRYING, TaskStatus.COMPENSATING) and t.ready_at
    )
    timers = Counter((t.kind, t.run_id, t.step, t.map_index, t.at) for t in memory.timers)
    assert timers == waiting
    queued = {
        (run_id, *task.key)
        for run_id, state in memory.runs.items()
        for task in state.tasks.values()
        if task.status is TaskStatus.QUEUED
    }
    assert all(memory.queues.holds(key) for key in queued)  # type: ignore[arg-type]
    assert memory.queues.held == len(queued)
    slots = sum(running for _, running in memory.queues.depth().values())
    assert slots == len(memory.attempts)


def run(scenario: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(scenario, 30))


def test_a_refused_run_goes_back_to_the_store_and_the_others_keep_their_memory() -> None:
    async def scenario() -> None:
        driven = Driven()
        await driven.start()
        results = await driven.submit("good", "bad", "late")
        assert [r.created for r in results] == [True, True, True]
        await assert_memory_is_the_store(driven)
        executor, c = driven.executor, driven.c

        driven.ends(executor.attempt("late", "fetch"), AttemptStatus.FAILED)
        await driven.turn()  # "late" waits 60 s for its retry
        await assert_memory_is_the_store(driven)

        driven.clock.at += timedelta(seconds=61)  # the refused turn also fires the retry
        poisoned = driven.ends(executor.attempt("bad", "fetch"), AttemptStatus.SUCCEEDED, 2**70)
        driven.ends(executor.attempt("good", "fetch"), AttemptStatus.SUCCEEDED)
        good, epoch = c.state.runs["good"], c.reconciler.epoch
        await driven.turn()

        assert c.guard.isolations == 1 and poisoned.attempt_key in c.guard.poisoned
        await assert_memory_is_the_store(driven)
        assert c.state.runs["good"] is good  # not reloaded: its rows were committed
        assert c.reconciler.epoch == epoch  # no recovery: the executors were not asked again
        assert {d.run_id for d in executor.dispatched} == {"bad", "good", "late"}
        assert executor.attempt("good", "total") and executor.attempt("late", "fetch")[3] == 2
        assert c.state.runs["bad"].task("fetch").status is TaskStatus.RUNNING
        assert c.outcomes == [("io", poisoned)]  # applied again in the next turn
        assert c.reconciler.acks["io"] == 1  # its outbox keeps the refused one (seq 2)

        await driven.turn()  # the poisoned outcome becomes its attempt's failure
        await assert_memory_is_the_store(driven)
        fetch = c.state.runs["bad"].task("fetch")
        assert fetch.status is TaskStatus.RETRYING
        assert "the database refused it" in (fetch.error_message or "")
        (attempt,) = driven.store.get_attempts("bad")
        assert attempt.status is AttemptStatus.FAILED and attempt.pid is None
        assert c.reconciler.acks["io"] == 2  # committed now; the next outcome acks "good"'s
        # the metrics count what committed, once: the refused success of "bad" is not
        # counted, the failure it became is, and so is the retry it got
        assert counted(c, "attempts_total") == {
            ("fetch", "failed"): 2,  # "late"'s and "bad"'s
            ("fetch", "succeeded"): 1,  # "good"'s
        }
        assert counted(c, "retries_total") == {("fetch",): 2}

    run(scenario())


def counted(c: Coordinator, name: str) -> dict[tuple[str, ...], float]:
    """A counter's totals by its tags after the workflow's (step, and status if any)."""
    metrics = c.metrics
    assert isinstance(metrics, MetricsBuffer)
    return {
        tuple(value for key, value in tags if key != "workflow"): total
        for (counter, tags), total in metrics.totals.items()
        if counter == name and total
    }


def test_a_run_submitted_in_a_refused_turn_is_not_held() -> None:
    async def scenario() -> None:
        driven = Driven()
        await driven.start()
        await driven.submit("first")
        driven.ends(driven.executor.attempt("first", "fetch"), AttemptStatus.SUCCEEDED, 2**70)
        version = flow.schema.version
        request = SubmitRequest("fresh", flow.name, version, json.dumps("fine"))
        answer = asyncio.ensure_future(driven.c.submit([request]))
        await asyncio.sleep(0)
        await driven.turn()  # "first" is refused; "fresh" commits beside it

        (result,) = await answer
        assert result.created and result.error is None
        await assert_memory_is_the_store(driven)
        assert driven.store.find_runs(["fresh"])["fresh"].status is RunStatus.RUNNING
        assert driven.c.state.runs["first"].task("fetch").status is TaskStatus.RUNNING

    run(scenario())


def test_a_cancel_in_a_refused_turn_is_not_recorded_and_stops_nothing() -> None:
    async def scenario() -> None:
        driven = Driven()
        await driven.start()
        await driven.submit("p", workflow=pair)
        executor, c = driven.executor, driven.c
        left, right = executor.attempt("p", "left"), executor.attempt("p", "right")
        poisoned = driven.ends(left, AttemptStatus.SUCCEEDED, 2**70)
        cancelled = asyncio.ensure_future(c.cancel(["p"], "no longer needed"))
        await asyncio.sleep(0)
        await driven.turn()

        (answer,) = await cancelled
        assert not answer.applied and answer.message == NOT_RECORDED
        assert answer.status == "running" and executor.cancelled == []
        await assert_memory_is_the_store(driven)
        assert set(c.state.attempts) == {left, right}
        assert c.heartbeats.next_due() == START + timedelta(seconds=30 + START_GRACE_S)
        assert c.outcomes == [("io", poisoned)]

        await driven.turn()
        await assert_memory_is_the_store(driven)
        assert c.state.runs["p"].task("left").status is TaskStatus.RETRYING
        assert set(c.state.attempts) == {right}

    run(scenario())


def test_a_paged_fan_out_set_aside_is_loaded_again_with_its_counts() -> None:
    async def scenario() -> None:
        driven = Driven(memory_cap=4)
        await driven.start()
        await driven.submit("s", workflow=spread)
        executor, c = driven.executor, driven.c
        driven.ends(executor.attempt("s", "listing"), AttemptStatus.SUCCEEDED, result=[0] * 10)
        await driven.turn()  # the fan-out is paged: four items at a time
        await assert_memory_is_the_store(driven)
        assert {d.map_index for d in executor.dispatched if d.step == "each"} == {0, 1, 2, 3}

        driven.ends(executor.attempt("s", "each", 0), AttemptStatus.SUCCEEDED)
        driven.ends(executor.attempt("s", "each", 1), AttemptStatus.SUCCEEDED)
        driven.ends(executor.attempt("s", "each", 2), AttemptStatus.SUCCEEDED, 2**70)
        await driven.turn()
        assert c.guard.isolations == 1
        await assert_memory_is_the_store(driven)
        state = c.state.runs["s"]
        assert state.items_done.get("each", 0) == 0 and state.next_item == {"each": 4}

        await driven.turn()  # the items' outcomes again: two complete, one failed
        await assert_memory_is_the_store(driven)
        state = c.state.runs["s"]
        assert state.items_done["each"] == 2
        assert state.task("each", 2).status is TaskStatus.RETRYING

    run(scenario())


def test_an_attempt_fallen_silent_in_a_refused_turn_is_recorded_lost_in_the_next() -> None:
    async def scenario() -> None:
        driven = Driven()
        await driven.start()
        await driven.submit("q", workflow=pair)
        executor, c = driven.executor, driven.c
        right = executor.attempt("q", "right")
        driven.clock.at += timedelta(seconds=30 + START_GRACE_S)  # "right" never began
        driven.ends(executor.attempt("q", "left"), AttemptStatus.SUCCEEDED, 2**70)
        await driven.turn()

        await assert_memory_is_the_store(driven)
        assert executor.cancelled == [right]  # lost all the same
        assert [o.attempt_key for _, o in c.outcomes][-1] == right

        await driven.turn()
        await assert_memory_is_the_store(driven)
        lost = next(a for a in driven.store.get_attempts("q") if a.step == "right")
        assert lost.status is AttemptStatus.LOST and "(last: never)" in (lost.error_message or "")

    run(scenario())
