"""Cron schedules: the declared spec, its fire times, and the misfire and overlap rules.

Pure: instants in, decisions out. croniter parses and walks the expression in the schedule's
IANA time zone; every instant that leaves this module is aware UTC.

Daylight saving time (croniter 7 semantics, plus one rule of our own):
- Spring forward (Europe/Berlin, 02:00 -> 03:00): a wall time inside the gap does not exist.
  croniter moves such a tick to the first instant after the gap (a daily `30 2 * * *` fires
  at 03:00 CEST that day), once. Hourly ticks follow real hours: 01:00 CET, 03:00 CEST.
- Fall back (03:00 -> 02:00): wall times between 02:00 and 03:00 happen twice. croniter
  yields both. A schedule whose hour field matches every hour (`0 * * * *`, `*/15 * * * *`)
  fires in both passes, because each is a real hour that elapsed; any other schedule (a
  daily `30 2 * * *`) fires only in the first pass, so it fires exactly once that day. This
  is Vixie cron's rule for the repeated hour.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from wfray.domain.code_env import check_env_hash
from wfray.domain.errors import DefinitionError, InputValidationError

# its home before every error moved to domain/errors.py; users import it from here
from wfray.domain.errors import ScheduleNotFoundError as ScheduleNotFoundError

MISFIRE_POLICIES = ("skip", "latest", "all_within")
OVERLAP_POLICIES = ("skip", "allow", "buffer_one", "cancel_previous")
MAX_TICKS_PER_TURN = 1000  # a catch-up beyond this continues on the next turn
_HOURS_IN_DAY = 24
_LONGEST_GAP = timedelta(days=5 * 366)  # `0 0 29 2 1` (a leap Monday) is the rarest cron


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """A cron schedule of a workflow, as declared in code or through the API.

    Attributes:
        name: unique among schedules; part of every run id it produces.
        workflow: the name of the workflow it starts.
        cron: 5 fields (minute hour day month weekday) or 6 (plus seconds, last).
        tz: the IANA time zone the expression is read in ("Europe/Berlin").
        input_json: the run input, as JSON text.
        queue: the queue of the runs it starts.
        priority: the priority of the runs it starts.
        misfire: what happens to ticks missed during downtime (later than `grace_s`):
            "skip" them, run only the "latest" one once, or run "all_within" the last
            `catchup_window_s` seconds.
        catchup_window_s: the catch-up window of "all_within" (required by it only).
        grace_s: a tick this late still counts as on time and always fires.
        overlap: when a tick comes while the previous run is active: "skip" the tick,
            "allow" both, "buffer_one" (start it when the previous ends; one at most), or
            "cancel_previous" run and start the new one.
        paused: a paused schedule fires nothing; resuming does not replay the pause.
        unique_key: the workflow's uniqueness key of the input (computed where the
            input was validated), which every run it starts carries.
        env_hash: the runtime env its runs' steps run in (domain/code_env.py), recorded
            by the client that created or declared it; None: the cluster's own.
    """

    name: str
    workflow: str
    cron: str
    tz: str = "UTC"
    input_json: str = "null"
    queue: str = "default"
    priority: int = 0
    misfire: str = "skip"
    catchup_window_s: float | None = None
    grace_s: float = 10.0
    overlap: str = "skip"
    paused: bool = False
    unique_key: str | None = None  # the workflow's uniqueness key of `input_json`, if any
    env_hash: str | None = None

    def __post_init__(self) -> None:
        where = f"schedule {self.name!r}"
        try:
            check_env_hash(self.env_hash)
        except InputValidationError as exc:
            raise DefinitionError(f"{where}: {exc.message}") from None
        if not isinstance(self.name, str) or not self.name.strip():
            raise DefinitionError(f"schedule name: expected a non-empty string, got {self.name!r}")
        if not isinstance(self.workflow, str) or not self.workflow:
            raise DefinitionError(f"{where}, field 'workflow': expected a workflow name")
        if not isinstance(self.cron, str) or not croniter.is_valid(self.cron):
            raise DefinitionError(
                f"{where}, field 'cron': {self.cron!r} is not a cron expression; expected 5 "
                "fields (minute hour day month weekday) or 6 (plus seconds), e.g. '30 2 * * *'"
            )
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
            raise DefinitionError(
                f"{where}, field 'tz': unknown time zone {self.tz!r}; expected an IANA name "
                "such as 'Europe/Berlin' or 'UTC'"
            ) from exc
        try:
            json.loads(self.input_json)
        except (ValueError, TypeError) as exc:
            raise DefinitionError(f"{where}, field 'input_json': not JSON ({exc})") from exc
        self._check_policies(where)

    def _check_policies(self, where: str) -> None:
        if self.misfire not in MISFIRE_POLICIES:
            raise DefinitionError(
                f"{where}, field 'misfire': {self.misfire!r}; expected one of "
                f"{', '.join(MISFIRE_POLICIES)}"
            )
        if self.misfire == "all_within":
            if self.catchup_window_s is None or self.catchup_window_s <= 0:
                raise DefinitionError(
                    f"{where}, field 'catchup_window_s': misfire 'all_within' needs a positive "
                    f"catch-up window in seconds, got {self.catchup_window_s!r}"
                )
        elif self.catchup_window_s is not None:
            raise DefinitionError(
                f"{where}, field 'catchup_window_s': only misfire 'all_within' takes a "
                f"catch-up window (misfire is {self.misfire!r})"
            )
        if self.grace_s < 0:
            raise DefinitionError(f"{where}, field 'grace_s': expected >= 0, got {self.grace_s}")
        if self.overlap not in OVERLAP_POLICIES:
            raise DefinitionError(
                f"{where}, field 'overlap': {self.overlap!r}; expected one of "
                f"{', '.join(OVERLAP_POLICIES)}"
            )

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    def with_(self, **changes: Any) -> ScheduleSpec:
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(slots=True)
class ScheduleRecord:
    """A schedule as stored: its spec and how far it has fired.

    `last_fired` is the latest tick handled (started, skipped or buffered); ticks after it
    are due. It starts at the schedule's creation, so nothing before that fires.
    """

    spec: ScheduleSpec
    last_fired: datetime
    created_at: datetime
    updated_at: datetime
    last_run_id: str | None = None  # the run of the latest started tick
    buffered_at: datetime | None = None  # a tick waiting for the previous run (buffer_one)

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True, slots=True)
class TicksHandled:
    """How far a schedule fired in one pass: from `expected_last_fired` (what the scheduler
    read; the store moves it only if it still holds, as another scheduler may have come
    first) to `last_fired`, with the run of the latest started tick and the tick waiting for
    the previous run (buffer_one), if any."""

    name: str
    expected_last_fired: datetime
    last_fired: datetime
    last_run_id: str | None
    buffered_at: datetime | None


# -- fire times --------------------------------------------------------------------------------


def fire_times(
    spec: ScheduleSpec, after: datetime, until: datetime | None = None
) -> Iterator[datetime]:
    """The schedule's ticks strictly after `after` (and up to `until`), as UTC instants."""
    zone = spec.zone
    every_hour = _fires_every_hour(spec.cron)
    walker = croniter(spec.cron, _utc(after).astimezone(zone))
    previous = _utc(after)
    while True:
        local: datetime = walker.get_next(datetime)
        instant = local.astimezone(UTC)
        if until is not None and instant > until:
            return
        if instant <= previous:
            continue  # never yield an instant twice or go back (croniter near a DST switch)
        if instant.astimezone(zone).fold == 1 and not every_hour:
            continue  # the repeated wall time of a fall-back night: fired in the first pass
        previous = instant
        yield instant


def next_fire_times(spec: ScheduleSpec, after: datetime, count: int) -> list[datetime]:
    """The next `count` ticks strictly after `after`."""
    ticks = []
    for tick in fire_times(spec, after):
        ticks.append(tick)
        if len(ticks) >= count:
            break
    return ticks


def latest_tick(spec: ScheduleSpec, at: datetime) -> datetime | None:
    """The last tick at or before `at` (None if there is none within five years)."""
    at = _utc(at)
    upcoming = next_fire_times(spec, at, 2)
    interval = upcoming[1] - upcoming[0] if len(upcoming) == 2 else timedelta(days=1)
    lookback = max(interval * 2, timedelta(seconds=2))
    while lookback <= _LONGEST_GAP * 2:
        ticks = list(fire_times(spec, at - lookback, until=at))
        if ticks:
            return ticks[-1]
        lookback *= 2
    return None


def _fires_every_hour(cron: str) -> bool:
    hours = croniter(cron).expanded[1]
    return hours == ["*"] or len(set(hours)) == _HOURS_IN_DAY


# -- misfire ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Due:
    """What a schedule should do now: start `fire` (oldest first), then store `through`
    as its last fired tick (it is past every tick handled, fired or dropped)."""

    fire: tuple[datetime, ...]
    through: datetime | None

    @property
    def nothing(self) -> bool:
        return self.through is None


def due_ticks(spec: ScheduleSpec, last_fired: datetime, now: datetime) -> Due:
    """The ticks in (last_fired, now] to start under the misfire policy.

    A tick at most `grace_s` late is on time and fires under every policy. Older (missed)
    ticks: "skip" drops them, "latest" fires the newest of them once, "all_within" fires
    those within `catchup_window_s` of now. At most MAX_TICKS_PER_TURN fire per call; the
    rest are due on the next.
    """
    last_fired, now = _utc(last_fired), _utc(now)
    if now <= last_fired:
        return Due((), None)
    grace = timedelta(seconds=spec.grace_s)
    if spec.misfire == "all_within":
        window = timedelta(seconds=max(spec.catchup_window_s or 0.0, spec.grace_s))
        fire = _ticks_between(spec, max(last_fired, now - window), now)
    else:
        fire = _ticks_between(spec, max(last_fired, now - grace), now)
        if spec.misfire == "latest":
            missed = latest_tick(spec, now - grace)
            if missed is not None and missed > last_fired and missed not in fire:
                fire.insert(0, missed)
    if len(fire) >= MAX_TICKS_PER_TURN:
        return Due(tuple(fire[:MAX_TICKS_PER_TURN]), fire[MAX_TICKS_PER_TURN - 1])
    if fire:
        return Due(tuple(fire), fire[-1])
    last = latest_tick(spec, now)
    return Due((), last if last is not None and last > last_fired else None)


def _ticks_between(spec: ScheduleSpec, after: datetime, until: datetime) -> list[datetime]:
    ticks = []
    for tick in fire_times(spec, after, until):
        ticks.append(tick)
        if len(ticks) >= MAX_TICKS_PER_TURN:
            break
    return ticks


# -- overlap -----------------------------------------------------------------------------------


class OverlapAction(StrEnum):
    START = "start"
    SKIP = "skip"
    BUFFER = "buffer"
    CANCEL_PREVIOUS = "cancel_previous"  # cancel the previous run, then start


def on_overlap(overlap: str, previous_active: bool, already_buffered: bool) -> OverlapAction:
    """What to do with a due tick, given whether the schedule's previous run is active."""
    if not previous_active or overlap == "allow":
        return OverlapAction.START
    if overlap == "cancel_previous":
        return OverlapAction.CANCEL_PREVIOUS
    if overlap == "buffer_one" and not already_buffered:
        return OverlapAction.BUFFER
    return OverlapAction.SKIP


# -- per-tick values --------------------------------------------------------------------------

_TICK_FIELD = re.compile(r"\{tick:([^{}\"\\]{1,64})\}")


def for_tick(text: str, tick: datetime, zone: ZoneInfo) -> str:
    """`text` (a schedule's input JSON, or its run's uniqueness key) with each `{tick:FORMAT}`
    replaced by the tick's time in the schedule's zone, formatted by strftime: an input
    `{"week": "{tick:%G-W%V}"}` gives every tick's run its own ISO week, e.g. "2026-W49"."""
    if "{tick:" not in text:
        return text
    local = tick.astimezone(zone)
    return _TICK_FIELD.sub(lambda m: local.strftime(m.group(1)), text)


# -- ids -------------------------------------------------------------------------------------


def tick_run_id(name: str, tick: datetime) -> str:
    """The run id of a tick: the same tick always maps to the same run, so firing it twice
    (a restart, two schedulers racing) starts one run."""
    return _run_id(f"{name}\x00tick\x00{_utc(tick).isoformat()}")


def manual_run_id(name: str, at: datetime) -> str:
    """The run id of a "trigger now" at `at` (never equal to a tick's)."""
    return _run_id(f"{name}\x00manual\x00{_utc(at).isoformat()}")


def trigger_id(name: str, tick: datetime) -> str:
    """What the run records as its trigger: `<schedule>@<tick, ISO 8601 UTC>`."""
    return f"{name}@{_utc(tick).isoformat()}"


def _run_id(key: str) -> str:
    return "sched-" + hashlib.sha256(key.encode()).hexdigest()[:32]


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"expected an aware datetime, got naive {value.isoformat()}")
    return value.astimezone(UTC)
