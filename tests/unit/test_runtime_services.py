"""Heartbeats, internal events and child runs, end to end in one process (no Ray)."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.fixtures import unit_flows
from tests.unit.test_coordinator_inline import coordinator, finish, request, run
from wfray.adapters.memory.executor import InlineExecutor
from wfray.adapters.memory.services import InlineStepServices
from wfray.adapters.memory.store import InMemoryRunStore
from wfray.coordinator.heartbeats import HEARTBEAT_LOST
from wfray.domain.ids import event_run_id
from wfray.domain.queueing import QueueConfig
from wfray.domain.reads import LogQuery, RunFilter
from wfray.domain.status import AttemptStatus, RunStatus
from wfray.sdk.events import validated_inputs
from wfray.worker.step_runner import RunnerSettings

pytestmark = pytest.mark.timeout(60)


def pools(services: InlineStepServices) -> dict[str, InlineExecutor]:
    shared = InlineExecutor(services=services)
    return {"cpu": shared, "io": shared}


def test_heartbeats_store_the_last_progress() -> None:
    async def scenario() -> None:
        services = InlineStepServices()
        store = InMemoryRunStore()
        async with coordinator(store, pools(services)) as c:
            services.bind(c)
            await c.submit([request("beats", unit_flows.beating, {"count": 6, "gap_s": 0.05})])
            views = await finish(c, "beats")
            assert views["beats"].status is RunStatus.COMPLETED
        (task,) = store.get_tasks(["beats"])
        assert json.loads(task.progress_json or "null") == {"done": 6, "of": 6}
        assert task.heartbeat_at is not None
        assert [a.status for a in store.get_attempts("beats")] == [AttemptStatus.SUCCEEDED]

    run(scenario)


def test_a_step_that_stops_heartbeating_is_lost_and_retried() -> None:
    async def scenario() -> None:
        services = InlineStepServices()
        store = InMemoryRunStore()
        async with coordinator(store, pools(services)) as c:
            services.bind(c)
            await c.submit([request("silent", unit_flows.beating, {"count": 2, "gap_s": 0.8})])
            views = await finish(c, "silent")
            assert views["silent"].status is RunStatus.COMPLETED
        first, second = store.get_attempts("silent")
        assert first.status is AttemptStatus.LOST
        assert first.error_type == HEARTBEAT_LOST
        assert "no heartbeat for 0.3s" in (first.error_message or "")
        assert second.status is AttemptStatus.SUCCEEDED
        (task,) = store.get_tasks(["silent"])
        assert task.lost == 1
        # the silent attempt's late beats do not overwrite the successful attempt's progress
        assert json.loads(task.progress_json or "null") == {"done": 2, "of": 2}

    run(scenario, timeout_s=20)


def test_an_event_starts_each_subscribed_workflow_once_per_event_id() -> None:
    async def scenario() -> None:
        store = InMemoryRunStore()
        async with coordinator(store) as c:

            async def publish(order: int, event_id: str) -> list[str]:
                inputs = validated_inputs("order.delivered", {"order": order}, unit_flows.ALL)
                return await c.publish("order.delivered", "{}", event_id, inputs=inputs)

            first = await publish(7, "evt-1")
            again = await publish(7, "evt-1")
            other = await publish(8, "evt-2")
            assert sorted(first) == sorted(again)  # the same event id starts nothing new
            assert len(first) == 2 and len(set(first) | set(other)) == 4
            assert await c.publish("nobody.listens", "{}", "evt-3") == []
            views = await finish(c, *first, *other)
        results = sorted(json.loads(v.result_json or "null") for v in views.values())
        assert results == ["a:7", "a:8", "b:7", "b:8"]
        run_a = store.find_runs([event_run_id("unit_on_delivered_a", "order.delivered", "evt-1")])
        (record,) = run_a.values()
        assert (record.trigger, record.trigger_id) == ("event", "order.delivered:evt-1")

    run(scenario)


def test_a_step_publishes_events_once_even_when_run_twice() -> None:
    async def scenario() -> None:
        services = InlineStepServices()
        store = InMemoryRunStore()
        async with coordinator(store, pools(services)) as c:
            services.bind(c)
            await c.submit([request("pub", unit_flows.publisher, {"order": 3})])
            views = await finish(c, "pub")
            started_ids = json.loads(views["pub"].result_json or "[]")
            assert len(started_ids) == 2
            await finish(c, *started_ids)
            # a second publication from the same step (a retried attempt) is a no-op
            again = await asyncio.to_thread(
                services.publish, "order.delivered", {"order": 3}, "pub:announce:-1:1"
            )
            assert sorted(again) == sorted(started_ids)
        subscribed = [r for r in store.list_runs(RunFilter(limit=50)) if r.trigger == "event"]
        assert len(subscribed) == 2

    run(scenario)


def test_one_failing_child_is_compensated_while_the_others_complete() -> None:
    unit_flows.undone.clear()

    async def scenario() -> None:
        services = InlineStepServices()
        store = InMemoryRunStore()
        async with coordinator(store, pools(services)) as c:
            services.bind(c)
            names = ["ada", "bob", "cy", "dee", "eve"]
            payload = {"names": names, "failing": ["cy"], "on_failure": "continue"}
            await c.submit([request("bill", unit_flows.billing, payload)])
            views = await finish(c, "bill")
            assert views["bill"].status is RunStatus.COMPLETED
            result = json.loads(views["bill"].result_json or "{}")
            assert result["sent"] == [f"sent:invoice:{n}" for n in names if n != "cy"]
            assert result["failed"] == ["2:compensated"]
        children = store.child_runs(["bill"])
        assert len(children) == 5
        assert all(ch.parent_run_id == "bill" and ch.trigger == "parent" for ch in children)
        statuses = sorted(ch.status.value for ch in children)
        assert statuses == ["compensated"] + ["completed"] * 4
        assert unit_flows.undone == ["invoice:cy"]  # only the failed child was undone

    run(scenario, timeout_s=30)


def test_a_failing_child_fails_the_parent_when_its_policy_says_so() -> None:
    async def scenario() -> None:
        services = InlineStepServices()
        store = InMemoryRunStore()
        async with coordinator(store, pools(services)) as c:
            services.bind(c)
            payload = {"names": ["ada", "bob"], "failing": ["bob"], "on_failure": "fail"}
            await c.submit([request("strict", unit_flows.billing, payload)])
            views = await finish(c, "strict")
            assert views["strict"].status is RunStatus.FAILED
            assert "1 of 2 child runs of 'unit_invoice_child' did not succeed" in (
                views["strict"].error or ""
            )

    run(scenario, timeout_s=30)


def test_cancelling_a_parent_cancels_its_children() -> None:
    async def scenario() -> None:
        store = InMemoryRunStore()
        async with coordinator(store) as c:
            who = {"who": "x"}
            await c.submit([request("parent", unit_flows.halfway, who)])
            await c.submit(
                [
                    request("kid", unit_flows.halfway, who, parent_run_id="parent"),
                    request("grandkid", unit_flows.halfway, who, parent_run_id="kid"),
                ]
            )
            (answer,) = await c.cancel(["parent"], "operator said so")
            assert answer.applied
            views = await finish(c, "parent", "kid", "grandkid")
        assert all(v.status.finished for v in views.values())
        assert {v.status for v in views.values()} <= {RunStatus.CANCELLED, RunStatus.COMPENSATED}

    run(scenario, timeout_s=20)


def test_a_running_step_streams_its_log_lines_before_it_ends() -> None:
    async def scenario() -> None:
        services = InlineStepServices()
        store = InMemoryRunStore()
        shared = InlineExecutor(
            services=services, settings=RunnerSettings(log_flush_interval_s=0.1)
        )
        async with coordinator(store, {"cpu": shared, "io": shared}) as c:
            services.bind(c)
            await c.submit([request("story", unit_flows.streaming, None)])
            while len(store.get_logs(LogQuery("story"))) < 3:
                await asyncio.sleep(0.05)
            (task,) = store.get_tasks(["story"])
            assert task.status.value == "running"  # the lines arrived while it runs
            unit_flows.release("narrated")
            views = await finish(c, "story")
            assert views["story"].status is RunStatus.COMPLETED
        messages = [line.message for line in store.get_logs(LogQuery("story"))]
        assert messages == ["chapter 0", "chapter 1", "chapter 2"]  # each exactly once

    run(scenario, timeout_s=20)


def test_steps_take_numbers_from_a_counter_owned_by_the_store() -> None:
    async def scenario() -> None:
        services = InlineStepServices()
        store = InMemoryRunStore()
        async with coordinator(store, pools(services)) as c:
            services.bind(c)
            await c.submit([request(f"n{i}", unit_flows.numbered, {"count": 3}) for i in range(4)])
            views = await finish(c, *[f"n{i}" for i in range(4)])
        numbers = [n for v in views.values() for n in json.loads(v.result_json or "[]")]
        assert sorted(numbers) == list(range(1, 13))  # 4 runs x 3 numbers, none twice

    run(scenario)


def test_the_coordinator_counts_runs_attempts_and_retries() -> None:
    async def scenario() -> dict[str, list[tuple[dict[str, str], float]]]:
        async with coordinator() as c:
            await c.submit([request(f"w{i}", unit_flows.flaky) for i in range(2)])
            await finish(c, "w0", "w1")
            stats = c.stats()
        metrics = stats["metrics"]
        assert isinstance(metrics, dict)
        return metrics

    metrics = run(scenario)

    def total(name: str, **tags: str) -> float:
        return sum(
            v for t, v in metrics.get(name, []) if all(t.get(k) == w for k, w in tags.items())
        )

    assert total("runs_total", workflow="unit_flaky", status="completed") == 2
    assert total("attempts_total", step="wobble", status="failed") == 4
    assert total("attempts_total", step="wobble", status="succeeded") == 2
    assert total("retries_total", workflow="unit_flaky", step="wobble") == 4


def test_an_async_step_asks_wfray_without_blocking_its_event_loop() -> None:
    """Numbers, child runs and events from an async step, while the coordinator runs on the
    same event loop: a blocking wait there would never end."""

    async def scenario() -> None:
        services = InlineStepServices()
        store = InMemoryRunStore()
        async with coordinator(store, pools(services)) as c:
            services.bind(c)
            await c.submit([request("abill", unit_flows.async_billing, {"names": ["ada", "bo"]})])
            views = await finish(c, "abill")
            assert views["abill"].status is RunStatus.COMPLETED, views["abill"].error
            result = json.loads(views["abill"].result_json or "{}")
            assert result["number"] == 1
            assert result["sent"] == ["sent:invoice:ada", "sent:invoice:bo"]
            assert len(result["events"]) == 2
            await finish(c, *result["events"])
        assert len(store.child_runs(["abill"])) == 2

    run(scenario, timeout_s=30)


def test_an_async_step_that_would_block_its_event_loop_fails_at_once_saying_why() -> None:
    async def scenario() -> None:
        services = InlineStepServices()
        store = InMemoryRunStore()
        async with coordinator(store, pools(services)) as c:
            services.bind(c)
            await c.submit([request("blocks", unit_flows.blocking_in_async)])
            views = await finish(c, "blocks")
        assert views["blocks"].status is RunStatus.FAILED
        (attempt,) = store.get_attempts("blocks")  # not retried: a retry would fail the same
        assert attempt.error_type is not None and "NonRetryableError" in attempt.error_type
        assert "await ctx.next_number_async(...)" in (attempt.error_message or "")

    run(scenario, timeout_s=30)


def test_child_runs_keep_to_their_queues_per_key_limit() -> None:
    """Two children share a key under a per-key limit of one: they run one after the other,
    while the child with another key runs beside the first."""

    async def scenario() -> tuple[InMemoryRunStore, list[str]]:
        services = InlineStepServices()
        store = InMemoryRunStore()
        queues = (QueueConfig(name="keyed", per_key_limit=1),)
        async with coordinator(store, pools(services), queues=queues) as c:
            services.bind(c)
            keys = ["customer:a", "customer:a", "customer:b"]
            await c.submit([request("keyed", unit_flows.keyed_parent, {"keys": keys})])
            views = await finish(c, "keyed")
            assert views["keyed"].status is RunStatus.COMPLETED, views["keyed"].error
            return store, json.loads(views["keyed"].result_json or "[]")

    store, child_ids = run(scenario, timeout_s=30)
    runs = store.find_runs(child_ids)
    assert [(runs[i].queue, runs[i].concurrency_key) for i in child_ids] == [
        ("keyed", "customer:a"),
        ("keyed", "customer:a"),
        ("keyed", "customer:b"),
    ]
    spans = []
    for child in child_ids:
        (attempt,) = store.get_attempts(child)
        assert attempt.started_at is not None
        spans.append((attempt.started_at, attempt.finished_at))
    (a1, a1_end), (a2, a2_end), (b, b_end) = spans
    assert a1_end <= a2 or a2_end <= a1  # the same key: never at once
    assert b < max(a1_end, a2_end) and min(a1, a2) < b_end  # another key: beside them


def test_concurrency_keys_must_match_the_inputs_one_to_one() -> None:
    async def scenario() -> None:
        services = InlineStepServices()
        store = InMemoryRunStore()
        async with coordinator(store, pools(services)) as c:
            services.bind(c)
            await c.submit([request("mismatch", unit_flows.mismatched_keys)])
            views = await finish(c, "mismatch")
        assert views["mismatch"].status is RunStatus.FAILED
        assert "1 concurrency keys for 2 inputs" in (views["mismatch"].error or "")
        assert store.child_runs(["mismatch"]) == []

    run(scenario, timeout_s=30)
