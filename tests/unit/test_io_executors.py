"""Several io executors (WFRAY_IO_EXECUTORS): each io attempt goes to the least busy one,
records which it went to, and a crash of one loses only the attempts it ran."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.unit.test_coordinator_inline import (
    _fresh_counters,  # noqa: F401
    attempts,
    coordinator,
    finish,
    nap_requests,
    run,
    started,
    until,
)
from wfray.adapters.memory.executor import InlineExecutor
from wfray.adapters.memory.store import InMemoryRunStore
from wfray.config import load_settings
from wfray.coordinator.reconciler import pool_of
from wfray.domain.errors import DefinitionError
from wfray.domain.status import AttemptStatus, RunStatus


def test_an_executors_pool_is_its_id_up_to_the_dot() -> None:
    assert [pool_of(e) for e in ("cpu", "io", "io.1", "io.12")] == ["cpu", "io", "io", "io"]


def test_io_attempts_are_spread_over_the_io_executors_and_say_where_they_ran() -> None:
    async def scenario() -> tuple[InMemoryRunStore, list[str], list[int]]:
        store = InMemoryRunStore()
        cpu, first, second = InlineExecutor(), InlineExecutor(), InlineExecutor()
        requests = nap_requests(*[0.3] * 6)
        ids = [r.run_id for r in requests]
        async with coordinator(store, {"cpu": cpu, "io": first, "io.1": second}) as c:
            await c.submit(requests)
            await until(lambda: all(started("nap", rid) == 1 for rid in ids))
            running = [len(first.running), len(second.running)]
            views = await finish(c, *ids)
        assert all(v.status is RunStatus.COMPLETED for v in views.values())
        return store, ids, running

    store, ids, running = run(scenario)
    assert running == [3, 3]
    where = Counter(attempts(store, rid, "nap")[0].executor for rid in ids)
    assert where == {"io": 3, "io.1": 3}
    assert {attempts(store, rid, "wake")[0].executor for rid in ids} == {"cpu"}


async def _io_executor_goes(second_stays: bool, nap_s: float) -> tuple[InMemoryRunStore, list[str]]:
    """Four naps spread over "io" and "io.1"; once all started, "io.1" crashes, either
    under the same coordinator or while a new one starts without it; all runs finish."""
    store = InMemoryRunStore()
    cpu, first, second = InlineExecutor(), InlineExecutor(), InlineExecutor()
    requests = nap_requests(*[nap_s] * 4)
    ids = [r.run_id for r in requests]
    async with coordinator(store, {"cpu": cpu, "io": first, "io.1": second}) as c:
        await c.submit(requests)
        await until(lambda: all(started("nap", rid) == 1 for rid in ids))
        if second_stays:
            second.crash()
            views = await finish(c, *ids)
    if not second_stays:
        second.crash()  # what the host does to an executor no longer configured
        async with coordinator(store, {"cpu": cpu, "io": first}) as c:
            views = await finish(c, *ids)
    assert all(v.status is RunStatus.COMPLETED for v in views.values()), views
    return store, ids


def test_a_crashed_io_executor_loses_only_its_own_attempts() -> None:
    async def scenario() -> tuple[InMemoryRunStore, list[str]]:
        return await _io_executor_goes(second_stays=True, nap_s=0.5)

    store, ids = run(scenario, timeout_s=30)
    histories = {rid: [(a.executor, a.status) for a in attempts(store, rid, "nap")] for rid in ids}
    lost = [h for h in histories.values() if h[0] == ("io.1", AttemptStatus.LOST)]
    kept = [h for h in histories.values() if h[0][0] == "io"]
    assert len(lost) == 2 and len(kept) == 2, histories
    assert all(h == [("io", AttemptStatus.SUCCEEDED)] for h in kept)
    assert all(len(h) == 2 and h[1][1] is AttemptStatus.SUCCEEDED for h in lost)
    # rerun on the executor that stayed up, not on the one that just came back
    assert all(h[1][0] == "io" for h in lost), histories


def test_the_number_of_io_executors_comes_from_the_environment_and_must_be_positive() -> None:
    assert load_settings({"WFRAY_IO_EXECUTORS": "3"}, data_dir="/tmp/x").io_executors == 3
    assert load_settings({}, data_dir="/tmp/x").io_executors == 1
    with pytest.raises(DefinitionError, match="WFRAY_IO_EXECUTORS must be at least 1, got 0"):
        load_settings({"WFRAY_IO_EXECUTORS": "0"}, data_dir="/tmp/x")


def test_attempts_on_an_executor_no_longer_configured_are_lost_and_run_again() -> None:
    async def scenario() -> tuple[InMemoryRunStore, list[str]]:
        return await _io_executor_goes(second_stays=False, nap_s=0.3)

    store, ids = run(scenario, timeout_s=30)
    firsts = [attempts(store, rid, "nap")[0] for rid in ids]
    lost = [a for a in firsts if a.status is AttemptStatus.LOST]
    assert [a.executor for a in lost] == ["io.1", "io.1"]
    assert all("'io.1' is no longer configured" in (a.error_message or "") for a in lost)
    for rid in ids:
        assert attempts(store, rid, "nap")[-1].status is AttemptStatus.SUCCEEDED
