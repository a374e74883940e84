"""Runs unique by key: the policy's decisions (pure), the key's checks, and intake on a
coordinator without Ray (InMemoryRunStore plus InlineExecutor)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from pydantic import BaseModel

from tests.fixtures import unique_flows
from tests.fixtures.unique_flows import Week
from wfray.adapters.memory.executor import InlineExecutor
from wfray.adapters.memory.store import InMemoryRunStore
from wfray.application.messages import SubmitRequest, SubmitResult
from wfray.client.submission import build_requests
from wfray.coordinator.coordinator import Coordinator, CoordinatorSettings
from wfray.domain.errors import DefinitionError, UniqueKeyError, UniqueRunError
from wfray.domain.limits import MAX_KEY_CHARS
from wfray.domain.reads import RunFilter
from wfray.domain.status import RunStatus
from wfray.domain.uniqueness import UniqueAnswer, UniquePolicy
from wfray.sdk.definition import Workflow

pytestmark = pytest.mark.timeout(60)
NEW, EXISTING, REFUSE = UniqueAnswer.NEW, UniqueAnswer.EXISTING, UniqueAnswer.REFUSE
ACTIVE = [RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.COMPENSATING]
NOT_COMPLETED = [
    RunStatus.FAILED,
    RunStatus.CANCELLED,
    RunStatus.COMPENSATED,
    RunStatus.COMPENSATION_FAILED,
]


# -- the policy, a pure decision ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "active", "completed", "not_completed"),
    [
        (UniquePolicy(), EXISTING, NEW, NEW),
        (UniquePolicy(while_active="refuse"), REFUSE, NEW, NEW),
        (UniquePolicy(after_finished="existing"), EXISTING, EXISTING, EXISTING),
        (UniquePolicy(after_finished="refuse"), EXISTING, REFUSE, REFUSE),
        (UniquePolicy(after_finished="new_if_failed"), EXISTING, EXISTING, NEW),
        (UniquePolicy("refuse", "new_if_failed"), REFUSE, EXISTING, NEW),
    ],
)
def test_the_policy_decides_by_the_holders_status(
    policy: UniquePolicy, active: UniqueAnswer, completed: UniqueAnswer, not_completed: UniqueAnswer
) -> None:
    assert policy.decide(None) is NEW  # nobody holds the key
    assert {policy.decide(s) for s in ACTIVE} == {active}
    assert policy.decide(RunStatus.COMPLETED) is completed
    assert {policy.decide(s) for s in NOT_COMPLETED} == {not_completed}


def test_a_policy_with_an_unknown_value_names_the_field_and_the_choices() -> None:
    with pytest.raises(DefinitionError, match=r"while_active.*'reuse'.*existing, refuse"):
        UniquePolicy(while_active="reuse")  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match=r"after_finished.*new_if_failed"):
        UniquePolicy(after_finished="never")  # type: ignore[arg-type]


# -- the key: declared, computed, checked --------------------------------------------------------


def test_a_field_list_naming_a_missing_field_fails_at_definition() -> None:
    with pytest.raises(DefinitionError, match=r"'u_fields'.*Week has no field 'year'.*week"):
        Workflow("u_fields", input=Week, unique=["week", "year"], register=False)
    with pytest.raises(DefinitionError, match=r"list of input field names.*\['week'\]"):
        Workflow("u_str", input=Week, unique="week", register=False)  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match="needs an input model"):
        Workflow("u_nomodel", unique=["week"], register=False)
    with pytest.raises(DefinitionError, match="non-empty list"):
        Workflow("u_empty", input=Week, unique=[], register=False)
    with pytest.raises(DefinitionError, match="unique_policy needs a key"):
        Workflow("u_policy", input=Week, unique_policy=UniquePolicy(), register=False)
    with pytest.raises(DefinitionError, match=r"expected a wfray\.UniquePolicy"):
        Workflow(
            "u_policy",
            input=Week,
            unique=["week"],
            unique_policy="refuse",  # type: ignore[arg-type]
            register=False,
        )


def test_a_field_list_key_is_the_fields_values_as_json() -> None:
    flow = unique_flows.by_fields
    assert flow.unique_key('{"week":"2026-W49","fail":false,"note":"x"}') == '{"week":"2026-W49"}'


class Free(BaseModel):
    text: str = ""


@pytest.mark.parametrize(
    ("key_fn", "why"),
    [
        (lambda i: 1 / 0, r"key function raised ZeroDivisionError: division by zero"),
        (lambda i: 7, r"must be a string.*returned int 7"),
        (lambda i: None, r"must be a string.*returned NoneType"),
        (lambda i: "", r"is empty"),
        (lambda i: "k" * (MAX_KEY_CHARS + 1), rf"{MAX_KEY_CHARS + 1} characters long"),
        (lambda i: "a\x00b", r"NUL character"),
    ],
)
def test_a_bad_key_is_a_typed_error_naming_the_workflow_before_anything_is_sent(
    key_fn: Any, why: str
) -> None:
    flow = Workflow("u_bad_key", input=Free, unique=key_fn, register=False)
    flow.step(unique_flows.report)
    with pytest.raises(UniqueKeyError, match=rf"workflow 'u_bad_key': .*{why}") as caught:
        build_requests(flow, [{"text": "t"}])
    assert caught.value.code == "invalid_unique_key"


def test_a_workflow_without_a_key_keeps_its_version_and_a_policy_changes_it() -> None:
    plain = Workflow("u_version", input=Week, register=False)
    plain.step(unique_flows.report)
    keyed = Workflow("u_version", input=Week, unique=["week"], register=False)
    keyed.step(unique_flows.report)
    assert "unique" not in plain.schema.model_dump(exclude_none=True)
    assert keyed.schema.version != plain.schema.version
    assert keyed.schema.unique == UniquePolicy()


# -- intake, on a coordinator without Ray ---------------------------------------------------------


@asynccontextmanager
async def coordinator(store: InMemoryRunStore) -> AsyncIterator[Coordinator]:
    shared = InlineExecutor()
    c = Coordinator(store, {"cpu": shared, "io": shared}, _Clock(), CoordinatorSettings())
    await c.start()
    try:
        await c.register([flow.schema for flow in unique_flows.ALL])
        yield c
    finally:
        await c.stop()


class _Clock:
    def now(self) -> Any:
        from datetime import UTC, datetime

        return datetime.now(UTC)


def req(flow: Workflow, run_id: str, week: str = "W1", **values: Any) -> SubmitRequest:
    (made,) = build_requests(flow, [Week(week=week, **values)], run_ids=[run_id])
    return made


async def done(c: Coordinator, *run_ids: str) -> None:
    views = await c.wait(list(run_ids), timeout_s=5)
    assert all(v.status.finished for v in views), views


def scenario(body: Any) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(body(), 20)

    return asyncio.run(bounded())


def test_one_key_in_one_batch_makes_one_run_and_answers_all_with_it() -> None:
    store = InMemoryRunStore()

    async def body() -> list[SubmitResult]:
        async with coordinator(store) as c:
            flow = unique_flows.default
            results = await c.submit([req(flow, f"r{i}", note=str(i)) for i in range(5)])
            await done(c, "r0")
            return results

    results = scenario(body)
    assert results == [SubmitResult("r0", True)] + [SubmitResult("r0", False)] * 4
    assert [(r.run_id, r.unique_key) for r in store.list_runs(RunFilter())] == [("r0", "weekly:W1")]


def test_each_policy_after_the_run_finished() -> None:
    store = InMemoryRunStore()

    async def body() -> dict[str, SubmitResult]:
        got: dict[str, SubmitResult] = {}
        async with coordinator(store) as c:
            for flow in (unique_flows.default, unique_flows.once, unique_flows.refuse):
                first = f"{flow.name}-1"
                await c.submit([req(flow, first)])
                await done(c, first)
                (got[flow.name],) = await c.submit([req(flow, f"{flow.name}-2")])
        return got

    got = scenario(body)
    assert got["unit_unique_default"] == SubmitResult("unit_unique_default-2", True)
    assert got["unit_unique_once"] == SubmitResult("unit_unique_once-1", False)
    refused = got["unit_unique_refuse"]
    assert (refused.created, refused.error_code) == (False, UniqueRunError.code)
    assert refused.error is not None
    assert "run unit_unique_refuse-1 holds uniqueness key 'weekly:W1'" in refused.error
    assert "after_finished='refuse'" in refused.error
    assert store.find_runs(["unit_unique_refuse-2"]) == {}


def test_refuse_while_active_refuses_the_second_of_one_batch() -> None:
    store = InMemoryRunStore()

    async def body() -> list[SubmitResult]:
        async with coordinator(store) as c:
            flow = unique_flows.refuse
            results = await c.submit([req(flow, "a"), req(flow, "b"), req(flow, "c", week="W2")])
            await done(c, "a", "c")
            return results

    first, second, other_week = scenario(body)
    assert first == SubmitResult("a", True) and other_week == SubmitResult("c", True)
    assert second.error_code == "unique_run_exists" and second.error is not None
    assert "is queued" in second.error and "while_active='refuse'" in second.error
    assert sorted(r.run_id for r in store.list_runs(RunFilter())) == ["a", "c"]


def test_new_if_failed_starts_again_after_a_failure_only() -> None:
    store = InMemoryRunStore()

    async def body() -> list[SubmitResult]:
        async with coordinator(store) as c:
            flow = unique_flows.failed_only
            answers = []
            for run_id, fail in (("f1", True), ("f2", False), ("f3", False)):
                (answer,) = await c.submit([req(flow, run_id, fail=fail)])
                answers.append(answer)
                await done(c, answer.run_id)
            return answers

    assert scenario(body) == [
        SubmitResult("f1", True),
        SubmitResult("f2", True),  # f1 failed: a new run
        SubmitResult("f2", False),  # f2 completed: it answers
    ]
    assert store.find_runs(["f1"])["f1"].status is RunStatus.FAILED


def test_a_restarted_coordinator_reads_the_keys_holder_from_the_store() -> None:
    store = InMemoryRunStore()

    async def first() -> None:
        async with coordinator(store) as c:
            await c.submit([req(unique_flows.once, "before")])
            await done(c, "before")

    async def second() -> list[SubmitResult]:
        async with coordinator(store) as c:
            return await c.submit([req(unique_flows.once, "after", note="other")])

    scenario(first)
    assert scenario(second) == [SubmitResult("before", False)]
    assert [r.run_id for r in store.list_runs(RunFilter())] == ["before"]


def test_a_request_without_the_key_its_workflow_declares_is_refused_and_stores_nothing() -> None:
    store = InMemoryRunStore()

    async def body() -> list[SubmitResult]:
        async with coordinator(store) as c:
            keyless = req(unique_flows.default, "nokey")
            keyless.unique_key = None  # as a process that does not declare it would send
            bad = req(unique_flows.default, "nul")
            bad.unique_key = "a\x00b"
            return await c.submit([keyless, bad])

    keyless, bad = scenario(body)
    assert keyless.error_code == "invalid_unique_key" and keyless.error is not None
    assert "'unit_unique_default' declares a uniqueness key" in keyless.error
    assert bad.error_code == "invalid_input" and bad.error is not None
    assert "NUL" in bad.error
    assert store.list_runs(RunFilter()) == []


# -- schedules ----------------------------------------------------------------------------------


def test_schedule_ticks_honour_the_policy_and_a_refused_tick_is_not_retried() -> None:
    from datetime import UTC, datetime, timedelta

    from wfray.adapters.memory.schedule_store import InMemoryScheduleStore
    from wfray.coordinator.scheduler import Scheduler
    from wfray.sdk.schedules import build_spec

    t0 = datetime(2025, 5, 1, tzinfo=UTC)
    hour, late = timedelta(hours=1), timedelta(seconds=2)
    store, schedules = InMemoryRunStore(), InMemoryScheduleStore()

    class At:
        def now(self) -> datetime:
            return t0

    async def body() -> tuple[list[list[str]], list[str | None]]:
        created: list[list[str]] = []
        async with coordinator(store) as c:
            scheduler = Scheduler(schedules, c, At())
            for flow in (unique_flows.once, unique_flows.refuse):
                spec = build_spec(
                    flow, name=flow.name, cron="0 * * * *", input={"week": "W9"}, overlap="allow"
                )
                assert spec.unique_key == "weekly:W9"
                await scheduler.upsert(spec)
            for hours in (1, 2, 3):
                ids = await scheduler.tick(t0 + hours * hour + late)
                created.append(ids)
                await done(c, *ids)
            last = [schedules.get(f.name) for f in (unique_flows.once, unique_flows.refuse)]
            return created, [r.last_run_id if r else None for r in last]

    created, last = scenario(body)
    assert [len(ids) for ids in created] == [2, 0, 0]  # one run per workflow, ever
    first_once, first_refuse = sorted(created[0])
    assert last == [first_once, first_refuse]  # the holder, not the tick's own id
    for name in ("unit_unique_once", "unit_unique_refuse"):
        record = schedules.get(name)
        assert record is not None and record.last_fired == t0 + 3 * hour  # handled
    assert sorted(r.unique_key or "" for r in store.list_runs(RunFilter())) == ["weekly:W9"] * 2
