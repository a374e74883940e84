"""The Scheduler over the in-memory schedule store and a real in-process Coordinator.

The scheduler's instants come from a fake clock (explicit `now`); the coordinator runs the
steps for real on the InlineExecutor. Each scenario runs under a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from tests.fixtures import unit_flows
from tests.unit import test_coordinator_inline as inline
from tests.unit.test_coordinator_inline import WallClock, _fresh_counters  # noqa: F401
from wfray.adapters.memory.executor import InlineExecutor
from wfray.adapters.memory.schedule_store import InMemoryScheduleStore
from wfray.adapters.memory.store import InMemoryRunStore
from wfray.coordinator.coordinator import Coordinator
from wfray.coordinator.scheduler import Scheduler
from wfray.domain.errors import ScheduleNotFoundError, StoreUnavailableError
from wfray.domain.reads import RunFilter
from wfray.domain.records import RunRecord
from wfray.domain.schedule import (
    ScheduleRecord,
    ScheduleSpec,
    manual_run_id,
    tick_run_id,
)
from wfray.domain.status import RunStatus

T = TypeVar("T")
pytestmark = pytest.mark.timeout(60)

T0 = datetime(2025, 5, 1, 0, 0, tzinfo=UTC)  # the schedules are created at T0
HOUR = timedelta(hours=1)
LATE = timedelta(seconds=2)  # how late the scheduler's turn comes after a tick


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.value = now

    def now(self) -> datetime:
        return self.value


def run(scenario: Callable[[], Coroutine[Any, Any, T]], timeout_s: float = 20) -> T:
    return inline.run(scenario, timeout_s)


@asynccontextmanager
async def coordinator(store: InMemoryRunStore) -> AsyncIterator[Coordinator]:
    shared = InlineExecutor()
    c = Coordinator(store, {"cpu": shared, "io": shared}, WallClock())
    await c.start()
    try:
        await c.register([flow.schema for flow in unit_flows.ALL])
        yield c
    finally:
        await c.stop()


def hourly(workflow: str = "unit_single", **kw: Any) -> ScheduleSpec:
    values: dict[str, Any] = {"name": "hourly", "workflow": workflow, "cron": "0 * * * *"}
    values.update(kw)
    return ScheduleSpec(**values)


def nap(seconds: float, **kw: Any) -> ScheduleSpec:
    return hourly("unit_slow", input_json=f'{{"seconds": {seconds}}}', **kw)


def scheduled_runs(store: InMemoryRunStore) -> list[RunRecord]:
    runs = store.list_runs(RunFilter(limit=1000))
    return sorted((r for r in runs if r.trigger == "schedule"), key=lambda r: r.trigger_id or "")


def ticks_of(store: InMemoryRunStore) -> list[str]:
    return [r.trigger_id or "" for r in scheduled_runs(store)]


def tick_id(hours: int) -> str:
    return f"hourly@{(T0 + hours * HOUR).isoformat()}"


async def settle(c: Coordinator, run_ids: list[str]) -> None:
    views = await c.wait(run_ids, timeout_s=10)
    assert all(v.status.finished for v in views), views
    # and stored: what the test reads next is the store, after the coordinator stopped
    for _ in range(500):
        stored = await asyncio.to_thread(c.store.find_runs, run_ids)
        if all(r.status.finished for r in stored.values()):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"finished in memory, not in the store: {stored}")


# -- firing ----------------------------------------------------------------------------------


def test_a_due_tick_starts_one_run_with_the_tick_run_id_and_completes() -> None:
    async def scenario() -> tuple[list[str], list[str], InMemoryRunStore, InMemoryScheduleStore]:
        runs, schedules = InMemoryRunStore(), InMemoryScheduleStore()
        async with coordinator(runs) as c:
            scheduler = Scheduler(schedules, c, FakeClock(T0))
            await scheduler.upsert(hourly())
            before = await scheduler.tick(T0 + HOUR - LATE)  # not yet due
            created = await scheduler.tick(T0 + HOUR + LATE)
            again = await scheduler.tick(T0 + HOUR + 2 * LATE)  # same tick: nothing new
            await settle(c, created)
            return before + again, created, runs, schedules

    nothing, created, runs, schedules = run(scenario)
    assert nothing == []
    assert created == [tick_run_id("hourly", T0 + HOUR)]
    (record,) = scheduled_runs(runs)
    assert (record.status, record.trigger_id) == (RunStatus.COMPLETED, tick_id(1))
    stored = schedules.get("hourly")
    assert stored is not None
    assert (stored.last_fired, stored.last_run_id) == (T0 + HOUR, created[0])


def test_two_racing_schedulers_start_one_run_per_tick() -> None:
    async def scenario() -> tuple[list[list[str]], InMemoryRunStore]:
        runs, schedules = InMemoryRunStore(), InMemoryScheduleStore()
        async with coordinator(runs) as c:
            first = Scheduler(schedules, c, FakeClock(T0))
            second = Scheduler(schedules, c, FakeClock(T0))
            await first.upsert(hourly(overlap="allow"))
            created: list[list[str]] = []
            for hours in (1, 2, 3):
                now = T0 + hours * HOUR + LATE
                a, b = await asyncio.gather(first.tick(now), second.tick(now))
                created.append(a + b)
            await settle(c, [r.run_id for r in scheduled_runs(runs)])
            return created, runs

    created, runs = run(scenario)
    assert [len(ids) for ids in created] == [1, 1, 1]  # each tick created by exactly one
    assert ticks_of(runs) == [tick_id(1), tick_id(2), tick_id(3)]
    finished = [(r.run_id, r.status, r.error) for r in scheduled_runs(runs)]
    detail = [
        (t.step, t.status, t.attempts, [(a.attempt, a.status) for a in runs.get_attempts(rid)])
        for rid, _, _ in finished
        for t in runs.get_tasks([rid])
    ]
    assert all(status is RunStatus.COMPLETED for _, status, _ in finished), (finished, detail)


class CrashingAdvance(InMemoryScheduleStore):
    """Dies between the submission and the move of last_fired, once."""

    def __init__(self) -> None:
        super().__init__()
        self.crashes = 1

    def advance(self, *args: Any) -> bool:
        if self.crashes:
            self.crashes -= 1
            raise RuntimeError("scheduler process died here")
        return super().advance(*args)


def test_a_crash_before_last_fired_moves_resubmits_the_same_run_as_a_no_op() -> None:
    async def scenario() -> tuple[list[str], list[str], InMemoryRunStore, CrashingAdvance]:
        runs, schedules = InMemoryRunStore(), CrashingAdvance()
        async with coordinator(runs) as c:
            await Scheduler(schedules, c, FakeClock(T0)).upsert(hourly())
            crashed = await Scheduler(schedules, c, FakeClock(T0)).tick(T0 + HOUR + LATE)
            retried = await Scheduler(schedules, c, FakeClock(T0)).tick(T0 + HOUR + 2 * LATE)
            await settle(c, [tick_run_id("hourly", T0 + HOUR)])
            return crashed, retried, runs, schedules

    crashed, retried, runs, schedules = run(scenario)
    assert crashed == []  # the tick failed (logged) after its run was accepted
    assert retried == []  # the same run id again: not created twice
    assert ticks_of(runs) == [tick_id(1)]
    stored = schedules.get("hourly")
    assert stored is not None and stored.last_fired == T0 + HOUR


@pytest.mark.parametrize(
    ("misfire", "window_s", "after_restart"),
    [("skip", None, []), ("latest", None, [5]), ("all_within", 2.6 * 3600, [3, 4, 5])],
)
def test_a_restart_resumes_from_last_fired_under_the_misfire_policy(
    misfire: str, window_s: float | None, after_restart: list[int]
) -> None:
    async def scenario() -> InMemoryRunStore:
        runs, schedules = InMemoryRunStore(), InMemoryScheduleStore()
        spec = hourly(misfire=misfire, catchup_window_s=window_s, overlap="allow")
        async with coordinator(runs) as c:
            scheduler = Scheduler(schedules, c, FakeClock(T0))
            await scheduler.upsert(spec)
            await scheduler.tick(T0 + HOUR + LATE)
        # down from 01:00:02 to 05:30; a new coordinator and scheduler on the same stores
        async with coordinator(runs) as c:
            scheduler = Scheduler(schedules, c, FakeClock(T0 + 5.5 * HOUR))
            await scheduler.tick(T0 + 5.5 * HOUR)
            await scheduler.tick(T0 + 6 * HOUR + LATE)  # back to normal: on time
            await settle(c, [r.run_id for r in scheduled_runs(runs)])
        return runs

    runs = run(scenario)
    assert ticks_of(runs) == [tick_id(h) for h in [1, *after_restart, 6]]


# -- overlap ---------------------------------------------------------------------------------


def test_overlap_skip_drops_a_tick_while_the_previous_run_is_active() -> None:
    async def scenario() -> tuple[list[str], InMemoryRunStore, InMemoryScheduleStore]:
        runs, schedules = InMemoryRunStore(), InMemoryScheduleStore()
        async with coordinator(runs) as c:
            scheduler = Scheduler(schedules, c, FakeClock(T0))
            await scheduler.upsert(nap(0.5, overlap="skip"))
            (first,) = await scheduler.tick(T0 + HOUR + LATE)
            skipped = await scheduler.tick(T0 + 2 * HOUR + LATE)
            await settle(c, [first])
            await scheduler.tick(T0 + 3 * HOUR + LATE)
            await settle(c, [r.run_id for r in scheduled_runs(runs)])
            return skipped, runs, schedules

    skipped, runs, schedules = run(scenario)
    assert skipped == []
    assert ticks_of(runs) == [tick_id(1), tick_id(3)]
    stored = schedules.get("hourly")
    assert stored is not None and stored.last_fired == T0 + 3 * HOUR


def test_overlap_allow_runs_ticks_side_by_side() -> None:
    async def scenario() -> tuple[int, InMemoryRunStore]:
        runs, schedules = InMemoryRunStore(), InMemoryScheduleStore()
        async with coordinator(runs) as c:
            scheduler = Scheduler(schedules, c, FakeClock(T0))
            await scheduler.upsert(nap(0.5, overlap="allow"))
            await scheduler.tick(T0 + HOUR + LATE)
            await scheduler.tick(T0 + 2 * HOUR + LATE)
            views = await c.views([r.run_id for r in scheduled_runs(runs)])
            side_by_side = sum(not v.status.finished for v in views)
            await settle(c, [v.run_id for v in views])
            return side_by_side, runs

    side_by_side, runs = run(scenario)
    assert side_by_side == 2
    assert ticks_of(runs) == [tick_id(1), tick_id(2)]


def test_overlap_buffer_one_starts_one_buffered_tick_after_the_previous_run() -> None:
    async def scenario() -> tuple[list[str], list[str], InMemoryRunStore]:
        runs, schedules = InMemoryRunStore(), InMemoryScheduleStore()
        async with coordinator(runs) as c:
            scheduler = Scheduler(schedules, c, FakeClock(T0))
            await scheduler.upsert(nap(0.5, overlap="buffer_one"))
            (first,) = await scheduler.tick(T0 + HOUR + LATE)
            await scheduler.tick(T0 + 2 * HOUR + LATE)  # buffered
            await scheduler.tick(T0 + 3 * HOUR + LATE)  # one is buffered already: dropped
            while_active = ticks_of(runs)
            await settle(c, [first])
            started = await scheduler.tick(T0 + 3 * HOUR + 2 * LATE)  # no new tick due
            await settle(c, started)
            return while_active, started, runs

    while_active, started, runs = run(scenario)
    assert while_active == [tick_id(1)]
    assert started == [tick_run_id("hourly", T0 + 2 * HOUR)]
    assert ticks_of(runs) == [tick_id(1), tick_id(2)]


def test_overlap_cancel_previous_cancels_the_active_run_and_starts_the_new_one() -> None:
    async def scenario() -> tuple[dict[str, RunStatus], InMemoryRunStore]:
        runs, schedules = InMemoryRunStore(), InMemoryScheduleStore()
        async with coordinator(runs) as c:
            scheduler = Scheduler(schedules, c, FakeClock(T0))
            await scheduler.upsert(nap(0.3, overlap="cancel_previous"))
            (first,) = await scheduler.tick(T0 + HOUR + LATE)
            (second,) = await scheduler.tick(T0 + 2 * HOUR + LATE)
            await settle(c, [first, second])
            views = await c.views([first, second])
            return {v.run_id: v.status for v in views}, runs

    statuses, runs = run(scenario)
    first, second = tick_run_id("hourly", T0 + HOUR), tick_run_id("hourly", T0 + 2 * HOUR)
    assert statuses[first] in (RunStatus.CANCELLED, RunStatus.COMPENSATED)
    assert statuses[second] is RunStatus.COMPLETED
    assert ticks_of(runs) == [tick_id(1), tick_id(2)]


# -- operations ------------------------------------------------------------------------------


def test_pause_stops_ticks_resume_does_not_replay_them_trigger_starts_one_now() -> None:
    async def scenario() -> tuple[list[str], str, InMemoryRunStore]:
        runs, schedules = InMemoryRunStore(), InMemoryScheduleStore()
        async with coordinator(runs) as c:
            clock = FakeClock(T0)
            scheduler = Scheduler(schedules, c, clock)
            await scheduler.upsert(hourly(misfire="latest"))
            await scheduler.tick(T0 + HOUR + LATE)
            clock.value = T0 + HOUR + 2 * LATE
            await scheduler.pause("hourly")
            paused = await scheduler.tick(T0 + 2 * HOUR + LATE)
            paused += await scheduler.tick(T0 + 3 * HOUR + LATE)
            clock.value = T0 + 3.5 * HOUR
            await scheduler.resume("hourly")  # latest would replay 03:00: resume must not
            paused += await scheduler.tick(T0 + 3.5 * HOUR + LATE)
            result = await scheduler.trigger("hourly")
            await scheduler.tick(T0 + 4 * HOUR + LATE)
            await settle(c, [r.run_id for r in scheduled_runs(runs)])
            return paused, result.run_id, runs

    paused, triggered, runs = run(scenario)
    assert paused == []
    assert triggered == manual_run_id("hourly", T0 + 3.5 * HOUR)
    trigger_at = f"hourly@{(T0 + 3.5 * HOUR).isoformat()}"
    assert ticks_of(runs) == [tick_id(1), trigger_at, tick_id(4)]


def test_list_shows_next_fire_times_and_none_while_paused() -> None:
    async def scenario() -> tuple[list[list[datetime]], list[list[datetime]]]:
        runs, schedules = InMemoryRunStore(), InMemoryScheduleStore()
        async with coordinator(runs) as c:
            scheduler = Scheduler(schedules, c, FakeClock(T0 + 10 * timedelta(minutes=1)))
            await scheduler.upsert(hourly())
            await scheduler.upsert(hourly(name="daily", cron="30 2 * * *", tz="Europe/Berlin"))
            listed = [info.next_fire_times for info in await scheduler.list_schedules(2)]
            await scheduler.pause("hourly")
            after_pause = [info.next_fire_times for info in await scheduler.list_schedules(2)]
            return listed, after_pause

    listed, after_pause = run(scenario)
    daily = [datetime(2025, 5, 1, 0, 30, tzinfo=UTC), datetime(2025, 5, 2, 0, 30, tzinfo=UTC)]
    assert listed == [daily, [T0 + HOUR, T0 + 2 * HOUR]]  # by name: daily, hourly
    assert after_pause == [daily, []]


def test_unknown_schedules_are_named_in_the_error() -> None:
    async def scenario() -> list[str]:
        async with coordinator(InMemoryRunStore()) as c:
            scheduler = Scheduler(InMemoryScheduleStore(), c, FakeClock(T0))
            messages = []
            for operation in (scheduler.pause, scheduler.resume, scheduler.delete):
                with pytest.raises(ScheduleNotFoundError) as caught:
                    await operation("nope")
                messages.append(caught.value.message)
            with pytest.raises(ScheduleNotFoundError):
                await scheduler.trigger("nope")
            return messages

    assert run(scenario) == ["no schedule named 'nope'"] * 3


def test_a_refused_submission_keeps_the_tick_due_and_reports_the_error() -> None:
    async def scenario() -> tuple[list[str], str | None, datetime | None]:
        runs, schedules = InMemoryRunStore(), InMemoryScheduleStore()
        async with coordinator(runs) as c:
            scheduler = Scheduler(schedules, c, FakeClock(T0))
            await scheduler.upsert(hourly("not_registered"))
            created = await scheduler.tick(T0 + HOUR + LATE)
            (info,) = await scheduler.list_schedules()
            stored = schedules.get("hourly")
            return created, info.last_error, stored.last_fired if stored else None

    created, error, last_fired = run(scenario)
    assert created == []
    assert error is not None and "unknown workflow 'not_registered'" in error
    assert last_fired == T0  # the tick stays due: it fires once the workflow is registered


def test_declaring_from_code_keeps_an_operator_pause_and_delete_removes() -> None:
    async def scenario() -> tuple[bool, str, bool]:
        schedules = InMemoryScheduleStore()
        async with coordinator(InMemoryRunStore()) as c:
            scheduler = Scheduler(schedules, c, FakeClock(T0))
            await scheduler.declare([hourly()])
            await scheduler.pause("hourly")
            await scheduler.declare([hourly(cron="*/30 * * * *")])  # a new deploy
            stored = schedules.get("hourly")
            assert stored is not None
            await scheduler.delete("hourly")
            return stored.spec.paused, stored.spec.cron, schedules.get("hourly") is None

    assert run(scenario) == (True, "*/30 * * * *", True)


def test_declaring_without_an_env_keeps_the_env_a_deploy_recorded() -> None:
    async def scenario() -> list[str | None]:
        schedules = InMemoryScheduleStore()
        found = []
        async with coordinator(InMemoryRunStore()) as c:
            scheduler = Scheduler(schedules, c, FakeClock(T0))
            for env_hash in ("a" * 64, None, "b" * 64):  # a deploy, a publisher, a deploy
                await scheduler.declare([hourly().with_(env_hash=env_hash)])
                stored = schedules.get("hourly")
                assert stored is not None
                found.append(stored.spec.env_hash)
        return found

    assert run(scenario) == ["a" * 64, "a" * 64, "b" * 64]


class FlakyStore(InMemoryScheduleStore):
    """The database is down for the first `outages` loads."""

    def __init__(self, outages: int) -> None:
        super().__init__()
        self.outages = outages

    def load_all(self) -> list[ScheduleRecord]:
        if self.outages:
            self.outages -= 1
            raise StoreUnavailableError("database is unavailable (test outage)")
        return super().load_all()


def test_the_loop_survives_store_outages_and_fires_once_the_store_is_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> tuple[int, InMemoryRunStore]:
        runs, schedules = InMemoryRunStore(), FlakyStore(outages=3)
        async with coordinator(runs) as c:
            clock = FakeClock(T0)
            scheduler = Scheduler(schedules, c, clock)
            await scheduler.upsert(hourly())
            clock.value = T0 + HOUR + LATE
            loop = asyncio.create_task(scheduler.run_forever(tick_s=0.01))
            try:
                while not scheduled_runs(runs):
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.1)  # more turns: the tick must not fire again
            finally:
                loop.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loop
            await settle(c, [r.run_id for r in scheduled_runs(runs)])
            return schedules.outages, runs

    outages_left, runs = run(scenario)
    assert outages_left == 0
    assert ticks_of(runs) == [tick_id(1)]
    failures = [r for r in caplog.records if "scheduler tick failed" in r.getMessage()]
    assert len(failures) == 3 and "test outage" in failures[0].getMessage()


# -- per-tick values -------------------------------------------------------------------------


def test_tick_fields_format_the_ticks_time_in_the_schedules_zone() -> None:
    from zoneinfo import ZoneInfo

    from wfray.domain.schedule import for_tick

    # Sunday 23:30 UTC is already Monday in Berlin: ISO week 50, not 49
    tick = datetime(2026, 12, 6, 23, 30, tzinfo=UTC)
    berlin = ZoneInfo("Europe/Berlin")
    assert for_tick('{"week": "{tick:%G-W%V}"}', tick, berlin) == '{"week": "2026-W50"}'
    assert for_tick("weekly:{tick:%G-W%V}", tick, ZoneInfo("UTC")) == "weekly:2026-W49"
    assert for_tick('{"n": 1}', tick, berlin) == '{"n": 1}'
    # a field is a short format inside one JSON string: quotes and braces end it
    assert for_tick('{"a": "{tick:%H\\"}"}', tick, berlin) == '{"a": "{tick:%H\\"}"}'


def test_each_tick_starts_its_run_with_its_own_time_in_the_input() -> None:
    async def scenario() -> InMemoryRunStore:
        runs, schedules = InMemoryRunStore(), InMemoryScheduleStore()
        async with coordinator(runs) as c:
            scheduler = Scheduler(schedules, c, FakeClock(T0))
            await scheduler.upsert(hourly(input_json='{"hour": "{tick:%Y-%m-%d %H}h"}'))
            first = await scheduler.tick(T0 + HOUR + LATE)
            # the next tick is skipped while this run is active (overlap "skip"): let it end
            await settle(c, first)
            second = await scheduler.tick(T0 + 2 * HOUR + LATE)
            await settle(c, second)
        return runs

    runs = run(scenario)
    inputs = [r.input_json for r in scheduled_runs(runs)]
    expected = [f'{{"hour": "{(T0 + h * HOUR):%Y-%m-%d %H}h"}}' for h in (1, 2)]
    assert inputs == expected
