"""Cron ticks, misfire and overlap rules of the domain, on explicit instants (a fake clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from wfray.domain.errors import DefinitionError
from wfray.domain.schedule import (
    MAX_TICKS_PER_TURN,
    OverlapAction,
    ScheduleSpec,
    due_ticks,
    fire_times,
    latest_tick,
    manual_run_id,
    next_fire_times,
    on_overlap,
    tick_run_id,
    trigger_id,
)

BERLIN = ZoneInfo("Europe/Berlin")


def spec(cron: str = "0 * * * *", **kw: Any) -> ScheduleSpec:
    values: dict[str, Any] = {"name": "nightly", "workflow": "invoices", "cron": cron}
    values.update(kw)
    return ScheduleSpec(**values)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def berlin(*args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=BERLIN, fold=fold)  # type: ignore[misc]


def between(s: ScheduleSpec, start: datetime, end: datetime) -> list[datetime]:
    return list(fire_times(s, start, until=end))


# -- definition --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"cron": "61 * * * *"}, r"schedule 'nightly', field 'cron': '61 \* \* \* \*'"),
        ({"cron": "every day"}, r"field 'cron'.*expected 5 fields"),
        ({"tz": "Europe/Berlinn"}, r"schedule 'nightly', field 'tz': unknown time zone"),
        ({"misfire": "sometimes"}, r"field 'misfire': 'sometimes'; expected one of skip"),
        ({"misfire": "all_within"}, r"field 'catchup_window_s': misfire 'all_within' needs"),
        ({"catchup_window_s": 60.0}, r"field 'catchup_window_s': only misfire 'all_within'"),
        ({"overlap": "queue"}, r"field 'overlap': 'queue'; expected one of skip, allow"),
        ({"input_json": "{nope"}, r"field 'input_json': not JSON"),
        ({"grace_s": -1.0}, r"field 'grace_s': expected >= 0"),
        ({"name": " "}, r"schedule name: expected a non-empty string"),
    ],
)
def test_a_bad_spec_is_rejected_naming_schedule_and_field(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(DefinitionError, match=message):
        spec(**changes)


def test_a_six_field_cron_ticks_every_second() -> None:
    s = spec("* * * * * *")
    start = utc(2025, 5, 1, 12, 0, 0)
    assert next_fire_times(s, start, 3) == [start + timedelta(seconds=i) for i in (1, 2, 3)]


def test_fire_times_are_read_in_the_schedule_time_zone() -> None:
    s = spec("30 9 * * *", tz="Europe/Berlin")
    # 09:30 CEST is 07:30 UTC in summer, 08:30 UTC in winter
    assert next_fire_times(s, utc(2025, 7, 1), 1) == [utc(2025, 7, 1, 7, 30)]
    assert next_fire_times(s, utc(2025, 12, 1), 1) == [utc(2025, 12, 1, 8, 30)]


# -- DST in Europe/Berlin ----------------------------------------------------------------------


def test_spring_forward_daily_tick_in_the_gap_fires_once_at_three() -> None:
    # 2025-03-30 02:00 CET -> 03:00 CEST: 02:30 does not exist that day (croniter: 03:00)
    ticks = between(spec("30 2 * * *", tz="Europe/Berlin"), utc(2025, 3, 28), utc(2025, 4, 1))
    local = [t.astimezone(BERLIN) for t in ticks]
    assert local == [
        berlin(2025, 3, 28, 2, 30),
        berlin(2025, 3, 29, 2, 30),
        berlin(2025, 3, 30, 3, 0),
        berlin(2025, 3, 31, 2, 30),
    ]
    assert len({t.date() for t in local}) == len(local)  # one tick per day, none lost


def test_fall_back_daily_tick_in_the_repeated_hour_fires_exactly_once() -> None:
    # 2025-10-26 03:00 CEST -> 02:00 CET: 02:30 happens twice; the first one fires
    ticks = between(spec("30 2 * * *", tz="Europe/Berlin"), utc(2025, 10, 24), utc(2025, 10, 28))
    assert [t.astimezone(BERLIN) for t in ticks] == [
        berlin(2025, 10, 24, 2, 30),
        berlin(2025, 10, 25, 2, 30),
        berlin(2025, 10, 26, 2, 30),
        berlin(2025, 10, 27, 2, 30),
    ]
    assert ticks[2] == utc(2025, 10, 26, 0, 30)  # the CEST pass, not 01:30 UTC


@pytest.mark.parametrize(
    ("start", "end"),
    [(utc(2025, 3, 29, 20), utc(2025, 3, 30, 6)), (utc(2025, 10, 25, 20), utc(2025, 10, 26, 6))],
    ids=["spring", "autumn"],
)
def test_hourly_ticks_across_a_switch_are_neither_lost_nor_doubled(
    start: datetime, end: datetime
) -> None:
    ticks = between(spec("0 * * * *", tz="Europe/Berlin"), start, end)
    hours = int((end - start).total_seconds() // 3600)
    assert ticks == [start + timedelta(hours=h) for h in range(1, hours + 1)]


def test_quarter_hour_ticks_fire_in_both_passes_of_the_repeated_hour() -> None:
    ticks = between(
        spec("*/15 * * * *", tz="Europe/Berlin"), utc(2025, 10, 25, 23, 50), utc(2025, 10, 26, 2)
    )
    assert ticks == [utc(2025, 10, 26, 0, 0) + timedelta(minutes=15 * i) for i in range(9)]
    local = [t.astimezone(BERLIN) for t in ticks]
    assert local[0] == berlin(2025, 10, 26, 2, 0) and local[4] == berlin(2025, 10, 26, 2, 0, fold=1)


def test_daily_latest_misfire_across_the_autumn_switch_fires_one_tick() -> None:
    s = spec("30 2 * * *", tz="Europe/Berlin", misfire="latest")
    due = due_ticks(s, utc(2025, 10, 25, 12), utc(2025, 10, 26, 9))
    assert due.fire == (utc(2025, 10, 26, 0, 30),)


# -- misfire ---------------------------------------------------------------------------------

HOURLY_DOWN_FROM = utc(2025, 5, 1, 0, 30)  # last fired; then wfray was down until NOW
NOW = utc(2025, 5, 1, 6, 0, 5)  # the 06:00 tick is 5 s late: within the 10 s grace


def test_skip_fires_only_the_on_time_tick_after_downtime() -> None:
    due = due_ticks(spec(misfire="skip"), HOURLY_DOWN_FROM, NOW)
    assert due.fire == (utc(2025, 5, 1, 6),)
    assert due.through == utc(2025, 5, 1, 6)


def test_skip_drops_missed_ticks_but_moves_past_them() -> None:
    due = due_ticks(spec(misfire="skip"), HOURLY_DOWN_FROM, utc(2025, 5, 1, 5, 40))
    assert due.fire == ()
    assert due.through == utc(2025, 5, 1, 5)


def test_latest_fires_the_newest_missed_tick_once() -> None:
    due = due_ticks(spec(misfire="latest"), HOURLY_DOWN_FROM, utc(2025, 5, 1, 5, 40))
    assert due.fire == (utc(2025, 5, 1, 5),)
    assert due.through == utc(2025, 5, 1, 5)


def test_latest_does_not_refire_a_tick_already_fired() -> None:
    s = spec(misfire="latest")
    assert due_ticks(s, utc(2025, 5, 1, 5), utc(2025, 5, 1, 5, 40)).nothing


def test_all_within_fires_every_missed_tick_inside_the_window_only() -> None:
    s = spec(misfire="all_within", catchup_window_s=3 * 3600.0)
    due = due_ticks(s, HOURLY_DOWN_FROM, NOW)
    assert due.fire == (utc(2025, 5, 1, 4), utc(2025, 5, 1, 5), utc(2025, 5, 1, 6))
    assert due.through == utc(2025, 5, 1, 6)


def test_all_within_never_fires_ticks_before_last_fired() -> None:
    s = spec(misfire="all_within", catchup_window_s=24 * 3600.0)
    due = due_ticks(s, utc(2025, 5, 1, 4, 30), NOW)
    assert due.fire == (utc(2025, 5, 1, 5), utc(2025, 5, 1, 6))


def test_on_time_ticks_fire_under_every_policy() -> None:
    last, now = utc(2025, 5, 1, 5, 59, 59), utc(2025, 5, 1, 6, 0, 1)
    for s in (spec(), spec(misfire="latest"), spec(misfire="all_within", catchup_window_s=1.0)):
        assert due_ticks(s, last, now).fire == (utc(2025, 5, 1, 6),), s.misfire


def test_nothing_is_due_before_the_next_tick_or_when_time_goes_back() -> None:
    s = spec()
    assert due_ticks(s, utc(2025, 5, 1, 6), utc(2025, 5, 1, 6, 59)).nothing
    assert due_ticks(s, utc(2025, 5, 1, 6), utc(2025, 5, 1, 5)).nothing


def test_a_huge_catch_up_is_capped_per_turn() -> None:
    s = spec("* * * * * *", misfire="all_within", catchup_window_s=7200.0)
    last = utc(2025, 5, 1, 0, 0, 0)
    due = due_ticks(s, last, last + timedelta(hours=1))
    assert len(due.fire) == MAX_TICKS_PER_TURN
    assert due.through == due.fire[-1] == last + timedelta(seconds=MAX_TICKS_PER_TURN)


def test_latest_tick_finds_sparse_ticks() -> None:
    weekdays = spec("0 9 * * 1-5")
    monday = utc(2025, 5, 5, 8)  # before Monday's tick: the last one was Friday's
    assert latest_tick(weekdays, monday) == utc(2025, 5, 2, 9)
    assert latest_tick(spec("0 0 1 1 *"), utc(2025, 5, 5)) == utc(2025, 1, 1)


# -- overlap ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overlap", "active", "buffered", "action"),
    [
        ("skip", False, False, OverlapAction.START),
        ("skip", True, False, OverlapAction.SKIP),
        ("allow", True, False, OverlapAction.START),
        ("buffer_one", True, False, OverlapAction.BUFFER),
        ("buffer_one", True, True, OverlapAction.SKIP),
        ("buffer_one", False, False, OverlapAction.START),
        ("cancel_previous", True, False, OverlapAction.CANCEL_PREVIOUS),
        ("cancel_previous", False, False, OverlapAction.START),
    ],
)
def test_overlap_decision(
    overlap: str, active: bool, buffered: bool, action: OverlapAction
) -> None:
    assert on_overlap(overlap, active, buffered) is action


# -- ids -------------------------------------------------------------------------------------


def test_run_ids_derive_from_schedule_and_tick() -> None:
    tick = utc(2025, 5, 1, 6)
    same_instant = tick.astimezone(BERLIN)
    assert tick_run_id("nightly", tick) == tick_run_id("nightly", same_instant)
    assert tick_run_id("nightly", tick).startswith("sched-")
    assert tick_run_id("nightly", tick) != tick_run_id("weekly", tick)
    assert tick_run_id("nightly", tick) != tick_run_id("nightly", tick + timedelta(hours=1))
    assert tick_run_id("nightly", tick) != manual_run_id("nightly", tick)
    assert trigger_id("nightly", same_instant) == "nightly@2025-05-01T06:00:00+00:00"
