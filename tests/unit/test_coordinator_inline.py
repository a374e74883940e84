"""The coordinator end to end without Ray: InMemoryRunStore plus InlineExecutor.

Every scenario runs inside `asyncio.run` under a timeout, so a coordinator bug fails the test
instead of hanging the suite.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest

from tests.fixtures import unit_flows
from tests.fixtures.unit_flows import calls
from wfray.adapters.memory.executor import InlineExecutor
from wfray.adapters.memory.store import InMemoryRunStore
from wfray.application.messages import RunView, SubmitRequest, SubmitResult
from wfray.coordinator.coordinator import Coordinator, CoordinatorSettings
from wfray.domain.policy import RetryPolicy
from wfray.domain.reads import LogQuery, RunFilter
from wfray.domain.records import AttemptRecord
from wfray.domain.status import AttemptStatus, RunStatus, TaskStatus
from wfray.sdk.definition import Workflow

T = TypeVar("T")

pytestmark = pytest.mark.timeout(60)


class WallClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@pytest.fixture(autouse=True)
def _fresh_counters() -> Iterator[None]:
    unit_flows.reset()
    yield
    unit_flows.reset()


def run(scenario: Callable[[], Coroutine[Any, Any, T]], timeout_s: float = 10) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(scenario(), timeout_s)

    return asyncio.run(bounded())


def shared_pools() -> dict[str, InlineExecutor]:
    shared = InlineExecutor()
    return {"cpu": shared, "io": shared}


def separate_pools() -> dict[str, InlineExecutor]:
    return {"cpu": InlineExecutor(), "io": InlineExecutor()}


@asynccontextmanager
async def coordinator(
    store: InMemoryRunStore | None = None,
    executors: dict[str, InlineExecutor] | None = None,
    **settings: Any,
) -> AsyncIterator[Coordinator]:
    c = Coordinator(
        store or InMemoryRunStore(),
        dict(executors or shared_pools()),
        WallClock(),
        CoordinatorSettings(**settings),
    )
    await c.start()
    try:
        await c.register([flow.schema for flow in unit_flows.ALL])
        yield c
    finally:
        await c.stop()


def request(run_id: str, flow: Workflow, payload: Any = None, **options: Any) -> SubmitRequest:
    return SubmitRequest(run_id, flow.name, "", json.dumps(payload), **options)


async def finish(c: Coordinator, *run_ids: str) -> dict[str, RunView]:
    views = {view.run_id: view for view in await c.wait(run_ids, timeout_s=5)}
    assert all(views[rid].status.finished for rid in run_ids), views
    return views


async def until(predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {predicate.__name__}")
        await asyncio.sleep(0.005)


def attempts(store: InMemoryRunStore, run_id: str, step: str) -> list[AttemptRecord]:
    found = [a for a in store.get_attempts(run_id) if a.step == step]
    return sorted(found, key=lambda a: (a.map_index, a.attempt))


def summary(found: list[AttemptRecord]) -> list[tuple[int, AttemptStatus, str | None]]:
    return [(a.attempt, a.status, a.error_type) for a in found]


def started(step: str, run_id: str, map_index: int = -1) -> int:
    return calls[f"start:{step}:{run_id}:{map_index}"]


# -- running workflows -------------------------------------------------------------------------


@pytest.mark.parametrize("pools", [shared_pools, separate_pools])
@pytest.mark.parametrize("count", [0, 1, 7])
def test_fan_out_and_fan_in_complete_with_the_right_result(
    pools: Callable[[], dict[str, InlineExecutor]], count: int
) -> None:
    async def scenario() -> tuple[SubmitResult, RunView, InMemoryRunStore]:
        store = InMemoryRunStore()
        async with coordinator(store, pools()) as c:
            [submitted] = await c.submit([request("fan", unit_flows.fanout, {"count": count})])
            return submitted, (await finish(c, "fan"))["fan"], store

    submitted, view, store = run(scenario)
    assert submitted == SubmitResult("fan", created=True)
    assert view.status is RunStatus.COMPLETED, view.error
    doubled = [2 * i for i in range(count)]
    assert json.loads(view.result_json or "null") == {"gather": doubled, "total": sum(doubled)}
    items = attempts(store, "fan", "double")
    assert [(a.map_index, a.attempt, a.status) for a in items] == [
        (i, 1, AttemptStatus.SUCCEEDED) for i in range(count)
    ]
    assert all(started("double", "fan", i) == 1 for i in range(count))
    tasks = store.get_tasks(["fan"])
    assert all(t.status is TaskStatus.COMPLETED for t in tasks)


def test_a_step_failing_twice_then_succeeding_leaves_three_attempts() -> None:
    async def scenario() -> tuple[RunView, InMemoryRunStore]:
        store = InMemoryRunStore()
        async with coordinator(store) as c:
            await c.submit([request("flaky", unit_flows.flaky)])
            return (await finish(c, "flaky"))["flaky"], store

    view, store = run(scenario)
    assert view.status is RunStatus.COMPLETED
    assert view.result_json == '"steady"'
    tries = attempts(store, "flaky", "wobble")
    assert [(a.attempt, a.status, a.error_type, a.error_message) for a in tries] == [
        (1, AttemptStatus.FAILED, "builtins.RuntimeError", "wobble failed on attempt 1"),
        (2, AttemptStatus.FAILED, "builtins.RuntimeError", "wobble failed on attempt 2"),
        (3, AttemptStatus.SUCCEEDED, None, None),
    ]
    assert "RuntimeError: wobble failed on attempt 1" in (tries[0].traceback or "")
    [task] = store.get_tasks(["flaky"])
    assert (task.status, task.attempts, task.failures) == (TaskStatus.COMPLETED, 3, 2)


def test_a_non_retryable_error_fails_the_run_at_once_naming_the_step() -> None:
    async def scenario() -> tuple[RunView, InMemoryRunStore]:
        store = InMemoryRunStore()
        async with coordinator(store) as c:
            await c.submit([request("fatal", unit_flows.fatal)])
            return (await finish(c, "fatal"))["fatal"], store

    view, store = run(scenario)
    assert view.status is RunStatus.FAILED
    assert view.error == (
        "step 'charge' failed: wfray.domain.errors.NonRetryableError: card declined for order 42"
    )
    assert summary(attempts(store, "fatal", "charge")) == [
        (1, AttemptStatus.FAILED, "wfray.domain.errors.NonRetryableError")
    ]
    assert started("charge", "fatal") == 1
    status = {t.step: t.status for t in store.get_tasks(["fatal"])}
    assert status == {
        "prepare": TaskStatus.COMPLETED,
        "charge": TaskStatus.FAILED,
        "receipt": TaskStatus.CANCELLED,
    }


def test_an_unserialisable_result_fails_without_retry_naming_the_step() -> None:
    async def scenario() -> tuple[RunView, InMemoryRunStore]:
        store = InMemoryRunStore()
        async with coordinator(store) as c:
            await c.submit([request("opaque", unit_flows.opaque)])
            return (await finish(c, "opaque"))["opaque"], store

    view, store = run(scenario)
    assert view.status is RunStatus.FAILED
    [attempt] = attempts(store, "opaque", "shapeless")
    assert attempt.error_type == "wfray.domain.errors.ResultNotSerializableError"
    assert (attempt.error_message or "").startswith(
        "step 'shapeless' returned a object that cannot be serialised to JSON"
    )
    assert (view.error or "").startswith("step 'shapeless' failed: ")
    assert started("shapeless", "opaque") == 1


def test_log_lines_are_stored_with_their_attempt() -> None:
    async def scenario() -> InMemoryRunStore:
        store = InMemoryRunStore()
        async with coordinator(store) as c:
            await c.submit([request("talk", unit_flows.chatty)])
            await finish(c, "talk")
        return store

    store = run(scenario)
    lines = [
        (x.step, x.map_index, x.attempt, x.level, x.logger, x.message)
        for x in store.get_logs(LogQuery("talk"))
    ]
    logger = "wfray.step.unit_chatty.talk"
    assert lines == [
        ("talk", -1, 1, "INFO", logger, "talking to ninox"),
        ("talk", -1, 1, "WARNING", logger, "careful with attempt 1"),
    ]
    assert store.get_logs(LogQuery("talk", step="other")) == []


# -- submissions -------------------------------------------------------------------------------


def test_submitting_an_unknown_workflow_is_answered_with_an_error_code() -> None:
    async def scenario() -> list[SubmitResult]:
        async with coordinator() as c:
            return await c.submit(
                [
                    SubmitRequest("r1", "no_such_flow", "", "null"),
                    SubmitRequest("r2", "unit_single", "0123456789abcdef", "null"),
                    request("r3", unit_flows.single),
                ]
            )

    unknown, unknown_version, fine = run(scenario)
    assert (unknown.run_id, unknown.created, unknown.error_code) == (
        "r1",
        False,
        "unknown_workflow",
    )
    assert unknown.error == "unknown workflow 'no_such_flow'; register it before submitting"
    assert unknown_version.error_code == "unknown_workflow"
    assert "'unit_single' version '0123456789abcdef'" in (unknown_version.error or "")
    assert fine == SubmitResult("r3", created=True)


def test_the_same_run_id_twice_makes_one_run() -> None:
    async def scenario() -> tuple[list[SubmitResult], list[SubmitResult], InMemoryRunStore]:
        store = InMemoryRunStore()
        async with coordinator(store) as c:
            same_batch = await c.submit(
                [request("once", unit_flows.single), request("once", unit_flows.single)]
            )
            await finish(c, "once")
            next_batch = await c.submit([request("once", unit_flows.single)])
        return same_batch, next_batch, store

    same_batch, next_batch, store = run(scenario)
    assert same_batch == [SubmitResult("once", True), SubmitResult("once", False)]
    assert next_batch == [SubmitResult("once", False)]
    assert [r.run_id for r in store.list_runs(RunFilter())] == ["once"]
    assert len(store.get_attempts("once")) == 1


def test_one_idempotency_key_with_two_run_ids_makes_one_run() -> None:
    async def scenario() -> tuple[list[SubmitResult], list[SubmitResult], InMemoryRunStore]:
        store = InMemoryRunStore()
        async with coordinator(store) as c:
            same_batch = await c.submit(
                [
                    request("first", unit_flows.single, idempotency_key="order-9"),
                    request("second", unit_flows.single, idempotency_key="order-9"),
                ]
            )
            next_batch = await c.submit(
                [request("third", unit_flows.single, idempotency_key="order-9")]
            )
            await finish(c, "first")
        return same_batch, next_batch, store

    same_batch, next_batch, store = run(scenario)
    assert same_batch == [SubmitResult("first", True), SubmitResult("first", False)]
    assert next_batch == [SubmitResult("first", False)]
    assert [r.run_id for r in store.list_runs(RunFilter())] == ["first"]


def test_a_full_backlog_refuses_submissions_until_it_drains() -> None:
    async def scenario() -> tuple[list[SubmitResult], list[SubmitResult]]:
        async with coordinator(max_backlog=2) as c:
            crowded = await c.submit([request(f"r{i}", unit_flows.single) for i in range(4)])
            await finish(c, "r0", "r1")
            later = await c.submit([request("r2", unit_flows.single)])
            await finish(c, "r2")
        return crowded, later

    crowded, later = run(scenario)
    assert [(r.run_id, r.created, r.error_code) for r in crowded] == [
        ("r0", True, None),
        ("r1", True, None),
        ("r2", False, "backlog_full"),
        ("r3", False, "backlog_full"),
    ]
    assert crowded[2].retry_after_s == 1.0
    assert "limit 2" in (crowded[2].error or "")
    assert later == [SubmitResult("r2", True)]


# -- failures while other work waits -----------------------------------------------------------


@pytest.mark.parametrize("memory_cap", [10_000, 2])
def test_a_failed_fan_out_cancels_its_waiting_items_and_the_coordinator_carries_on(
    memory_cap: int,
) -> None:
    # one cpu slot: item 0 fails while items 1-5 wait for the slot, in memory or (past the
    # memory cap, a paged fan-out) not yet created; none of them may stay counted in the
    # backlog
    async def scenario() -> tuple[RunView, dict[str, RunView], int, InMemoryRunStore]:
        store = InMemoryRunStore()
        limits: dict[str, Any] = {"pool_windows": {"cpu": 1, "io": 1}, "memory_cap": memory_cap}
        async with coordinator(store, max_backlog=4, **limits) as c:
            await c.submit([request("ff", unit_flows.failfast)])
            failed = (await finish(c, "ff"))["ff"]
            later = await c.submit([request(f"later{i}", unit_flows.single) for i in range(4)])
            assert [r.error_code for r in later] == [None] * 4
            views = await finish(c, *(r.run_id for r in later))
            return failed, views, c.state.queued_count, store

    failed, later, queued, store = run(scenario)
    assert failed.status is RunStatus.FAILED
    assert (failed.error or "").startswith("step 'check' failed: ")
    assert {view.status for view in later.values()} == {RunStatus.COMPLETED}
    assert queued == store.count_queued() == 0
    assert [i for i in range(6) if started("check", "ff", i)] == [0]
    items = {t.map_index: t.status for t in store.get_tasks(["ff"]) if t.step == "check"}
    if memory_cap == 2:  # a paged fan-out (6 items over a cap of 2): the rest never created
        assert 2 <= len(items) - 1 < 6, items
    assert items == {-1: TaskStatus.FAILED, 0: TaskStatus.FAILED} | {
        i: TaskStatus.CANCELLED for i in range(1, len(items) - 1)
    }


def test_a_fan_out_over_a_result_that_is_not_a_list_fails_the_run() -> None:
    async def scenario() -> tuple[RunView, RunView]:
        async with coordinator() as c:
            await c.submit([request("odd", unit_flows.notalist)])
            odd = (await finish(c, "odd"))["odd"]
            await c.submit([request("next", unit_flows.single)])
            return odd, (await finish(c, "next"))["next"]

    odd, following = run(scenario)
    assert odd.status is RunStatus.FAILED
    assert (
        odd.error == "step 'per_key' maps over 'lookup', whose result is a JSON object, not a list"
    )
    assert following.status is RunStatus.COMPLETED


def test_no_retry_is_dispatched_for_a_run_that_already_failed() -> None:
    # item 0 fails for good and item 1 fails retryably in the same loop turn
    async def scenario() -> tuple[RunView, InMemoryRunStore]:
        store = InMemoryRunStore()
        async with coordinator(store) as c:
            await c.submit([request("race", unit_flows.race)])
            view = (await finish(c, "race"))["race"]
            await asyncio.sleep(0.1)  # a wrongful retry would start by now
            return view, store

    view, store = run(scenario)
    assert view.status is RunStatus.FAILED
    assert (view.error or "").startswith("step 'clash' failed: ")
    assert started("clash", "race", 0) == 1
    assert started("clash", "race", 1) == 1
    assert [a.attempt for a in attempts(store, "race", "clash")] == [1, 1]


# -- restarts ----------------------------------------------------------------------------------


def nap_requests(*seconds: float) -> list[SubmitRequest]:
    return [request(f"nap{i}", unit_flows.slow, {"seconds": s}) for i, s in enumerate(seconds)]


def test_after_a_crash_a_new_coordinator_retries_the_lost_attempts() -> None:
    async def scenario() -> tuple[dict[str, RunView], InMemoryRunStore]:
        store = InMemoryRunStore()
        first = InlineExecutor()
        requests = nap_requests(0.3, 0.3, 0.3)
        ids = [r.run_id for r in requests]
        async with coordinator(store, {"cpu": first, "io": first}) as c:
            await c.submit(requests)
            await until(lambda: all(started("nap", rid) == 1 for rid in ids))
        first.crash()  # the executor dies with the attempts it ran
        async with coordinator(store) as c:
            return await finish(c, *ids), store

    views, store = run(scenario)
    for run_id, view in views.items():
        assert view.status is RunStatus.COMPLETED, view.error
        assert view.result_json == '"rested!"'
        tries = attempts(store, run_id, "nap")
        assert summary(tries) == [
            (1, AttemptStatus.LOST, "wfray.AttemptLost"),
            (2, AttemptStatus.SUCCEEDED, None),
        ]
        assert "attempt lost: executor 'io'" in (tries[0].error_message or "")
        assert (started("nap", run_id), calls[f"end:nap:{run_id}:-1"]) == (2, 1)
        assert started("wake", run_id) == 1
        [nap] = [t for t in store.get_tasks([run_id]) if t.step == "nap"]
        assert (nap.attempts, nap.lost, nap.failures) == (2, 1, 0)


def test_after_a_coordinator_restart_running_attempts_are_adopted_not_rerun() -> None:
    # the executor survives: its attempts run on and its unacknowledged outcomes (some of
    # them already applied by the first coordinator) reach the second one
    async def scenario() -> tuple[dict[str, RunView], InMemoryRunStore, int]:
        store = InMemoryRunStore()
        survivor = InlineExecutor()
        pools = {"cpu": survivor, "io": survivor}
        requests = nap_requests(0.0, 0.0, 0.4, 0.4)
        ids = [r.run_id for r in requests]
        # a long drain wait: acks reach the executor only with its next drain
        async with coordinator(store, pools, drain_wait_s=30) as c:
            await c.submit(requests)
            await until(
                lambda: (
                    started("wake", "nap0") + started("wake", "nap1") == 2
                    and started("nap", "nap2") + started("nap", "nap3") == 2
                )
            )
            await finish(c, "nap0", "nap1")
        unacknowledged = len(survivor.outbox)
        async with coordinator(store, pools) as c:
            return await finish(c, *ids), store, unacknowledged

    views, store, unacknowledged = run(scenario)
    assert unacknowledged > 0  # the replay this test is about did happen
    for run_id, view in views.items():
        assert view.status is RunStatus.COMPLETED, view.error
        assert view.result_json == '"rested!"'
        for step in ("nap", "wake"):
            assert summary(attempts(store, run_id, step)) == [(1, AttemptStatus.SUCCEEDED, None)]
            assert started(step, run_id) == 1
        assert calls[f"end:nap:{run_id}:-1"] == 1


def test_a_step_still_running_when_its_run_fails_has_its_end_recorded() -> None:
    async def scenario() -> None:
        store = InMemoryRunStore()
        async with coordinator(store) as c:
            await c.submit([request("split", unit_flows.split_fate)])
            views = await finish(c, "split")
            assert views["split"].status is RunStatus.FAILED

            def lingering_done() -> bool:
                return [t.status for t in store.get_tasks(["split"]) if t.step == "lingering"] == [
                    TaskStatus.COMPLETED
                ]

            def dropped_from_memory() -> bool:  # once nothing of it runs, after the commit
                return "split" not in c.state.runs

            await until(lingering_done)
            (attempt,) = attempts(store, "split", "lingering")
            assert attempt.status is AttemptStatus.SUCCEEDED
            await until(dropped_from_memory)

    run(scenario)


def test_cancelling_a_run_stops_its_running_attempt_and_cancels_what_waits() -> None:
    async def scenario() -> None:
        store = InMemoryRunStore()
        async with coordinator(store) as c:
            await c.submit([request("patient", unit_flows.patient)])
            await until(lambda: started("wait_long", "patient") == 1)
            (answer,) = await c.cancel(["patient"], "operator said stop")
            assert (answer.applied, answer.status) == (True, "cancelled")
            views = await finish(c, "patient")
            assert views["patient"].status is RunStatus.CANCELLED
            assert views["patient"].error == "operator said stop"

            def stopped() -> bool:
                return [a.status for a in attempts(store, "patient", "wait_long")] == [
                    AttemptStatus.CANCELLED
                ]

            await until(stopped)
            statuses = {t.step: t.status for t in store.get_tasks(["patient"])}
            assert statuses == {
                "wait_long": TaskStatus.CANCELLED,
                "after_wait": TaskStatus.CANCELLED,
            }
            (again,) = await c.cancel(["patient"])
            assert (again.applied, again.status) == (False, "cancelled")
            assert "nothing to do" in again.message
            (unknown,) = await c.cancel(["no-such-run"])
            assert not unknown.applied

    run(scenario)


def test_cancelling_a_finished_run_is_a_clear_no_op() -> None:
    async def scenario() -> None:
        async with coordinator() as c:
            await c.submit([request("done", unit_flows.single)])
            await finish(c, "done")
            (answer,) = await c.cancel(["done"])
            assert (answer.applied, answer.status) == (False, "completed")
            assert answer.message == "run already completed: nothing to do"

    run(scenario)


@pytest.mark.parametrize(
    ("override", "expected_attempts"),
    [(None, 2), (RetryPolicy(max_attempts=4, initial_delay_s=0), 4)],
    ids=["workflow-default", "submission-override"],
)
def test_a_retry_policy_given_at_submission_overrides_the_workflows(
    override: RetryPolicy | None, expected_attempts: int
) -> None:
    async def scenario() -> None:
        store = InMemoryRunStore()
        async with coordinator(store) as c:
            retry_json = None if override is None else override.model_dump_json()
            await c.submit([request("stub", unit_flows.stubborn, retry_json=retry_json)])
            views = await finish(c, "stub")
            assert views["stub"].status is RunStatus.FAILED
            assert len(attempts(store, "stub", "refuse")) == expected_attempts

    run(scenario)


def test_a_failed_run_resumes_from_its_failed_step_continuing_the_attempt_numbers() -> None:
    async def scenario() -> None:
        store = InMemoryRunStore()
        unit_flows.OUTAGE["on"] = True
        async with coordinator(store) as c:
            await c.submit([request(rid, unit_flows.recoverable) for rid in ("r1", "r2")])
            views = await finish(c, "r1", "r2")
            assert {v.status for v in views.values()} == {RunStatus.FAILED}
            (not_yet,) = await c.resume(["no-such-run"])
            assert not not_yet.applied

            unit_flows.OUTAGE["on"] = False
            answers = await c.resume(["r1", "r2"])
            assert [(a.applied, a.status) for a in answers] == [(True, "running")] * 2
            views = await finish(c, "r1", "r2")
            assert {v.result_json for v in views.values()} == {"3"}

            assert summary(attempts(store, "r1", "second")) == [
                (1, AttemptStatus.FAILED, "builtins.ConnectionError"),
                (2, AttemptStatus.FAILED, "builtins.ConnectionError"),
                (3, AttemptStatus.SUCCEEDED, None),
            ]
            assert started("first", "r1") == 1  # completed steps did not run again
            assert started("third", "r1") == 1
            (again,) = await c.resume(["r1"])
            assert (again.applied, again.status) == (False, "completed")
            assert "only a failed or cancelled run" in again.message

    try:
        run(scenario)
    finally:
        unit_flows.OUTAGE["on"] = True


def test_a_permanent_failure_in_step_4_compensates_steps_3_2_1_in_that_order() -> None:
    async def scenario() -> None:
        store = InMemoryRunStore()
        unit_flows.UNDONE.clear()
        async with coordinator(store) as c:
            await c.submit([request("saga", unit_flows.saga_flow)])
            views = await finish(c, "saga")
            assert views["saga"].status is RunStatus.COMPENSATED
            assert "payment was refused" in (views["saga"].error or "")
            assert unit_flows.UNDONE == ["s3:3", "s2:2", "s1:1:s1"]
            statuses = {t.step: t.status for t in store.get_tasks(["saga"])}
            assert statuses == {
                "s1": TaskStatus.COMPENSATED,
                "s2": TaskStatus.COMPENSATED,
                "s3": TaskStatus.COMPENSATED,
                "s4": TaskStatus.FAILED,
                "s5": TaskStatus.CANCELLED,
            }
            undo = [a for a in store.get_attempts("saga") if a.kind == "compensation"]
            assert {(a.step, a.status) for a in undo} == {
                (step, AttemptStatus.SUCCEEDED) for step in ("s1", "s2", "s3")
            }
            assert all(a.attempt == 2 for a in undo)  # numbering goes on from the step's own

    run(scenario)


def test_a_failed_compensation_lands_on_the_dead_letter_list_and_can_be_retried() -> None:
    async def scenario() -> None:
        store = InMemoryRunStore()
        unit_flows.UNDONE.clear()
        unit_flows.UNDO_BROKEN["s2"] = True
        async with coordinator(store) as c:
            await c.submit([request("dead", unit_flows.saga_flow)])
            views = await finish(c, "dead")
            assert views["dead"].status is RunStatus.COMPENSATION_FAILED
            assert unit_flows.UNDONE == ["s3:3"]  # s1 waits behind the failed s2
            dead_letter = store.list_runs(RunFilter(status=RunStatus.COMPENSATION_FAILED))
            assert [r.run_id for r in dead_letter] == ["dead"]
            tries = [a for a in attempts(store, "dead", "s2") if a.kind == "compensation"]
            assert [a.status for a in tries] == [AttemptStatus.FAILED] * 2

            unit_flows.UNDO_BROKEN["s2"] = False
            (answer,) = await c.retry_compensation(["dead"])
            assert (answer.applied, answer.status) == (True, "compensating")
            views = await finish(c, "dead")
            assert views["dead"].status is RunStatus.COMPENSATED
            assert unit_flows.UNDONE == ["s3:3", "s2:2", "s1:1:s1"]
            (again,) = await c.retry_compensation(["dead"])
            assert not again.applied

    try:
        run(scenario)
    finally:
        unit_flows.UNDO_BROKEN["s2"] = False


def test_independent_branches_are_undone_before_their_common_parent() -> None:
    async def scenario() -> None:
        unit_flows.UNDONE.clear()
        async with coordinator() as c:
            await c.submit([request("diamond", unit_flows.diamond)])
            views = await finish(c, "diamond")
            assert views["diamond"].status is RunStatus.COMPENSATED
            assert sorted(unit_flows.UNDONE[:2]) == ["left", "right"]
            assert unit_flows.UNDONE[2] == "root"

    run(scenario)


def test_a_cancelled_run_is_compensated_unless_asked_not_to() -> None:
    async def scenario() -> None:
        unit_flows.UNDONE.clear()
        async with coordinator() as c:
            await c.submit([request(r, unit_flows.halfway, {"who": r}) for r in ("undo", "keep")])
            await until(lambda: started("pay", "undo") == 1 and started("pay", "keep") == 1)
            (undo,) = await c.cancel(["undo"])
            (keep,) = await c.cancel(["keep"], compensate=False)
            assert (undo.applied, undo.status) == (True, "compensating")
            assert (keep.applied, keep.status) == (True, "cancelled")
            views = await finish(c, "undo", "keep")
            assert views["undo"].status is RunStatus.COMPENSATED
            assert views["keep"].status is RunStatus.CANCELLED
            assert unit_flows.UNDONE == ["unbook:undo:seat-7"]

    run(scenario)


def test_a_run_past_its_deadline_fails_stops_its_steps_and_is_compensated() -> None:
    async def scenario() -> None:
        store = InMemoryRunStore()
        unit_flows.UNDONE.clear()
        async with coordinator(store) as c:
            await c.submit([request("late", unit_flows.late)])
            views = await finish(c, "late")
            assert views["late"].status is RunStatus.COMPENSATED
            assert "deadline exceeded" in (views["late"].error or "")
            assert unit_flows.UNDONE == ["unprepare"]
            (attempt,) = attempts(store, "late", "dawdle")
            assert attempt.status is AttemptStatus.CANCELLED

    run(scenario)


def test_a_deadline_survives_a_coordinator_restart() -> None:
    async def scenario() -> None:
        store = InMemoryRunStore()
        executors = shared_pools()
        async with coordinator(store, executors) as c:
            await c.submit([request("late2", unit_flows.late, deadline_s=0.6)])
            await until(lambda: started("dawdle", "late2") == 1)
        (deadline,) = [d for rid, d in store.pending_deadlines() if rid == "late2"]
        async with coordinator(store, executors) as again:
            views = await finish(again, "late2")
            assert views["late2"].status is RunStatus.COMPENSATED
            finished_at = store.find_runs(["late2"])["late2"].finished_at
            assert finished_at is not None and finished_at >= deadline

    run(scenario)
