"""The coordinator's own health, without Ray: turn and commit durations (a fake stopwatch),
commit failures by kind, start causes kept in the store, ages and executor figures (a fake
clock), and what `/healthz` and the exporter read of them (coordinator/health.py).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from tests.fixtures import unit_flows
from wfray.adapters.memory.executor import InlineExecutor
from wfray.adapters.memory.store import InMemoryRunStore
from wfray.application.batch import Batch
from wfray.application.messages import Dispatch, Drained, ExecutorSnapshot, SubmitRequest
from wfray.application.metrics import MetricsBuffer
from wfray.coordinator import health
from wfray.coordinator.coordinator import Coordinator, CoordinatorSettings
from wfray.coordinator.durable import DurableStore
from wfray.domain.errors import StaleWriteError, StoreRejectedError, StoreUnavailableError
from wfray.domain.queueing import QueueConfig
from wfray.testing.clock import FakeClock

T = TypeVar("T")
START = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)

pytestmark = pytest.mark.timeout(60)


def run(scenario: Callable[[], Coroutine[Any, Any, T]], timeout_s: float = 20) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(scenario(), timeout_s)

    return asyncio.run(bounded())


class Stopwatch:
    """Moves a quarter of a second each time it is read."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 0.25
        return self.t


class HoldingExecutor:
    """Takes attempts and keeps them running; says it holds `held` outcomes."""

    def __init__(self, held: int = 0) -> None:
        self.running: list[tuple[str, str, int, int]] = []
        self.held = held

    async def dispatch(self, dispatches: list[Dispatch], epoch: int) -> None:
        self.running += [d.attempt_key for d in dispatches]

    async def drain(self, ack: int, wait_s: float, epoch: int) -> Drained:
        await asyncio.sleep(min(wait_s, 0.01))
        return Drained("holding-1", [], self.held)

    async def snapshot(self, ack: int, epoch: int) -> ExecutorSnapshot:
        return ExecutorSnapshot("holding-1", list(self.running), [])

    async def cancel(self, attempts: list[tuple[str, str, int, int]]) -> None:
        pass


def request(run_id: str, flow: Any, payload: Any = None, queue: str = "default") -> SubmitRequest:
    return SubmitRequest(run_id, flow.name, "", json.dumps(payload), queue=queue)


async def started(c: Coordinator, restarted_by_ray: bool = False) -> Coordinator:
    await c.start(restarted_by_ray)
    await c.register([flow.schema for flow in unit_flows.ALL])
    return c


def test_turns_and_their_commits_are_timed_with_the_stopwatch() -> None:
    async def scenario() -> tuple[list[float], list[float], dict[str, Any]]:
        executor = InlineExecutor()
        c = Coordinator(
            InMemoryRunStore(),
            {"cpu": executor, "io": executor},
            FakeClock(START),
            None,
            Stopwatch(),
        )
        await started(c)
        try:
            await c.submit([request("r1", unit_flows.single)])
            (view,) = await c.wait(["r1"], timeout_s=10)
            assert view.status.value == "completed"
            assert isinstance(c.metrics, MetricsBuffer)
            samples = c.metrics.samples
            turns = list(samples[("coordinator_turn_seconds", ())])
            commits = list(samples[("coordinator_commit_seconds", ())])
            return turns, commits, c.stats()
        finally:
            await c.stop()

    turns, commits, stats = run(scenario)
    # a commit reads the stopwatch twice (0.25 s); a turn twice more around it, or around
    # nothing when it had nothing to commit
    assert commits and set(commits) == {0.25}
    assert set(turns) <= {0.25, 0.75} and 0.75 in turns
    assert len(turns) == stats["turns"]
    assert stats["health"]["last_turn_s"] in (0.25, 0.75)


def test_an_outage_during_a_commit_is_counted_and_waited_out() -> None:
    class FlakyStore(InMemoryRunStore):
        failures = 2

        def commit(self, batch: Batch) -> None:
            if self.failures:
                self.failures -= 1
                raise StoreUnavailableError("the database restarts")
            super().commit(batch)

    async def scenario() -> dict[str, Any]:
        executor = InlineExecutor()
        store = FlakyStore()
        settings = CoordinatorSettings(commit_retry_max_s=0.01)
        c = Coordinator(store, {"cpu": executor, "io": executor}, FakeClock(START), settings)
        await c.start()
        c.store = store  # the start's own writes went through: fail the next commits
        store.failures = 2
        try:
            await c.register([unit_flows.single.schema])
            await c.submit([request("r1", unit_flows.single)])
            (view,) = await c.wait(["r1"], timeout_s=10)
            assert view.status.value == "completed"
            return c.stats()
        finally:
            await c.stop()

    stats = run(scenario)
    assert stats["health"]["commit_failures"] == {"unavailable": 2}
    assert ({"kind": "unavailable"}, 2.0) in stats["metrics"]["coordinator_commit_failures_total"]


@pytest.mark.parametrize(
    ("error", "kind"),
    [(StoreRejectedError("NUL in a string"), "refused"), (StaleWriteError("moved"), "stale_write")],
)
def test_a_refused_commit_is_counted_by_kind(error: Exception, kind: str) -> None:
    class RefusingStore(InMemoryRunStore):
        def commit(self, batch: Batch) -> None:
            raise error

    async def scenario() -> MetricsBuffer:
        metrics = MetricsBuffer()
        durable = DurableStore(RefusingStore(), 0.01, metrics, Stopwatch())
        batch = Batch()
        batch.logs.append(unit_log_line())
        with pytest.raises(type(error)):
            await durable.commit(batch)
        return metrics

    metrics = run(scenario)
    assert metrics.totals[("coordinator_commit_failures_total", (("kind", kind),))] == 1
    assert metrics.samples[("coordinator_commit_seconds", ())] == [0.25]


def unit_log_line() -> Any:
    from wfray.domain.records import LogRecord

    return LogRecord("r1", "s", 0, 1, START, "INFO", "test", "line")


def test_start_causes_are_kept_in_the_store_across_starts() -> None:
    store = InMemoryRunStore()
    assert health.record_start(store, restarted_by_ray=False)[0] == "first_start"
    assert health.record_start(store, restarted_by_ray=True)[0] == "process_died"
    health.note_crash(store)  # the loop died: the next start says so, once
    assert health.record_start(store, restarted_by_ray=True)[0] == "loop_crashed"
    assert health.record_start(store, restarted_by_ray=True)[0] == "process_died"
    cause, counts = health.record_start(store, restarted_by_ray=False)
    assert cause == "redeployed"
    assert counts == {"first_start": 1, "loop_crashed": 1, "process_died": 2, "redeployed": 1}


def test_a_coordinator_start_records_its_cause_and_time() -> None:
    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        store, clock = InMemoryRunStore(), FakeClock(START)
        first = await started(Coordinator(store, {"cpu": HoldingExecutor()}, clock))
        await first.stop()
        clock.advance(60)
        again = await started(Coordinator(store, {"cpu": HoldingExecutor()}, clock), True)
        clock.advance(30)
        try:
            return first.stats(), again.stats()
        finally:
            await again.stop()

    first, again = run(scenario)
    assert first["health"]["start_cause"] == "first_start"
    assert again["health"]["start_cause"] == "process_died"
    assert again["health"]["starts"]["process_died"] == 1
    assert again["health"]["started_at"] == (START + timedelta(seconds=60)).isoformat()
    assert again["health"]["uptime_s"] == 30


def test_ages_in_flight_and_outboxes_follow_the_fake_clock() -> None:
    """One run's attempt holds the queue's only slot; the second run waits queued."""

    async def scenario() -> tuple[dict[str, Any], dict[tuple[str, Any], float]]:
        clock = FakeClock(START)
        executors = {"cpu": HoldingExecutor(held=3), "io": HoldingExecutor()}
        settings = CoordinatorSettings(queues=(QueueConfig(name="one", concurrency=1),))
        c = await started(Coordinator(InMemoryRunStore(), executors, clock, settings))
        try:
            await c.submit([request("first", unit_flows.single, queue="one")])
            clock.advance(10)
            await c.submit([request("second", unit_flows.single, queue="one")])
            while not c.reconciler.outbox_sizes.get("cpu"):
                await asyncio.sleep(0.01)  # the drainer heard from the executor
            clock.advance(110)
            await health.measure_store(c, clock.now())
            health.set_gauges(c, clock.now())
            assert isinstance(c.metrics, MetricsBuffer)
            return health.report(c, clock.now()), dict(c.metrics.gauges)
        finally:
            await c.stop()

    report, gauges = run(scenario)
    assert report["oldest_running_attempt_age_s"] == 120  # "first", dispatched at the start
    assert report["oldest_queued_run_age_s"] == 110  # "second", queued 10 s later
    assert report["attempts_in_flight"] == {"cpu": 1, "io": 0}
    assert report["outbox_outcomes"] == {"cpu": 3, "io": 0}
    assert report["queued_tasks"] == 1
    assert gauges[("oldest_queued_run_age_seconds", ())] == 110
    assert gauges[("oldest_running_attempt_age_seconds", ())] == 120
    assert gauges[("executor_attempts_in_flight", (("executor", "cpu"),))] == 1
    assert gauges[("executor_outbox_outcomes", (("executor", "cpu"),))] == 3
    assert gauges[("coordinator_starts", (("cause", "first_start"),))] == 1
    assert gauges[("coordinator_uptime_seconds", ())] == 120


def test_an_idle_coordinator_reports_zero_ages_and_a_bounded_report() -> None:
    async def scenario() -> dict[str, Any]:
        clock = FakeClock(START)
        c = await started(Coordinator(InMemoryRunStore(), {"cpu": HoldingExecutor()}, clock))
        try:
            await health.measure_store(c, clock.now())
            return health.report(c, clock.now())
        finally:
            await c.stop()

    report = run(scenario)
    assert report["oldest_queued_run_age_s"] == 0 and report["oldest_running_attempt_age_s"] == 0
    assert report["store_bytes"] is None  # memory has no size on disk
    assert len(json.dumps(report)) < 2000


def test_samples_between_exports_are_bounded() -> None:
    metrics = MetricsBuffer()
    for _ in range(20_000):
        metrics.turn_took(0.001)
    assert len(metrics.samples[("coordinator_turn_seconds", ())]) == 10_000
    _, samples = metrics.take()
    assert len(samples[("coordinator_turn_seconds", ())]) == 10_000
    assert not metrics.samples
