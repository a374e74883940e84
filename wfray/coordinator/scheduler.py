"""The Scheduler: turns due cron ticks into runs, once each, whatever crashes or races.

Ray-free. Each `tick(now)` loads the schedules, asks the domain which ticks are due (misfire
policy) and what to do about a previous run still active (overlap policy), submits the runs
with ids derived from schedule and tick, and only then moves the schedule's `last_fired` on
with a compare-and-set. A crash between the two resubmits the same run ids (a no-op); a
racing scheduler submits the same ids too and loses the compare-and-set.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from wfray.application.messages import RunView, SubmitRequest, SubmitResult
from wfray.application.metrics import Metrics
from wfray.application.ports import Clock, RunStarter, ScheduleStore
from wfray.application.views import ScheduleInfo
from wfray.domain.errors import ScheduleNotFoundError, StoreUnavailableError, UniqueRunError
from wfray.domain.schedule import (
    OverlapAction,
    ScheduleRecord,
    ScheduleSpec,
    TicksHandled,
    due_ticks,
    for_tick,
    manual_run_id,
    next_fire_times,
    on_overlap,
    tick_run_id,
    trigger_id,
)

UNIQUE_REFUSED = UniqueRunError.code

log = logging.getLogger("wfray.scheduler")

TRIGGER = "schedule"


@dataclass(slots=True)
class _Plan:
    """What one schedule does in one tick, before anything is sent."""

    record: ScheduleRecord
    submit: list[SubmitRequest] = field(default_factory=list)
    ticks: list[datetime] = field(default_factory=list)  # the tick of each submission
    cancel: list[str] = field(default_factory=list)
    last_run_id: str | None = None
    buffered_at: datetime | None = None


class Scheduler:
    """Fires the due ticks of stored schedules through a RunStarter (the Coordinator)."""

    def __init__(self, store: ScheduleStore, runs: RunStarter, clock: Clock) -> None:
        self.store = store
        self.runs = runs
        self.clock = clock
        self.errors: dict[str, str] = {}  # the last submission error per schedule

    # -- the loop ----------------------------------------------------------------------------

    async def run_forever(self, tick_s: float = 1.0) -> None:
        """Tick every `tick_s` until cancelled. A failed tick (the database is down) is
        logged and the next one retries; ticks missed meanwhile follow the misfire policies."""
        while True:
            try:
                await self.tick(self.clock.now())
            except Exception as exc:
                log.warning("scheduler tick failed, retrying in %.1fs: %s", tick_s, exc)
            await asyncio.sleep(tick_s)

    async def tick(self, now: datetime) -> list[str]:
        """Fire what is due at `now`; returns the ids of the runs this call created."""
        records = [r for r in await asyncio.to_thread(self.store.load_all) if not r.spec.paused]
        previous = sorted({r.last_run_id for r in records if r.last_run_id is not None})
        views = {v.run_id: v for v in await self.runs.views(previous)} if previous else {}
        created: list[str] = []
        for record in records:
            try:
                created += await self._fire(record, now, views)
            except StoreUnavailableError:
                raise  # every other schedule would fail the same way: the loop retries
            except Exception:
                log.exception("schedule %r: tick failed; retrying on the next", record.name)
        return created

    async def _fire(
        self, record: ScheduleRecord, now: datetime, views: dict[str, RunView]
    ) -> list[str]:
        due = due_ticks(record.spec, record.last_fired, now)
        plan = _plan(record, due.fire, _active(record.last_run_id, views))
        if due.nothing and plan.buffered_at == record.buffered_at and not plan.submit:
            return []
        if plan.cancel:
            reason = f"schedule {record.name!r} started a newer run (overlap: cancel_previous)"
            await self.runs.cancel(plan.cancel, reason)
        results = await self.runs.submit(plan.submit) if plan.submit else []
        # a tick its workflow's uniqueness policy refuses is handled (skipped), not retried
        failed = [r for r in results if r.error is not None and r.error_code != UNIQUE_REFUSED]
        plan.last_run_id = _answered_by(plan, results)
        if failed:
            self._note_error(record.name, failed[0])
            return []  # last_fired stays: the same ticks (same run ids) are tried next time
        self.errors.pop(record.name, None)
        self._measure_lag(record.name, plan, results, now)
        handled = TicksHandled(
            record.name,
            record.last_fired,
            due.through or record.last_fired,
            plan.last_run_id,
            plan.buffered_at,
        )
        moved = await asyncio.to_thread(self.store.advance, handled, now)
        if not moved:
            log.info("schedule %r: another scheduler handled these ticks first", record.name)
        return [r.run_id for r in results if r.created]

    def _measure_lag(
        self, name: str, plan: _Plan, results: Sequence[SubmitResult], now: datetime
    ) -> None:
        metrics: Metrics | None = getattr(self.runs, "metrics", None)
        if metrics is None:
            return
        for tick, result in zip(plan.ticks, results, strict=True):
            if result.created:
                metrics.schedule_lag(name, max(0.0, (now - tick).total_seconds()))

    def _note_error(self, name: str, result: SubmitResult) -> None:
        message = f"run {result.run_id} refused: {result.error}"
        if self.errors.get(name) != message:  # once per distinct error, not every second
            log.warning("schedule %r: %s; retrying every tick", name, message)
        self.errors[name] = message

    # -- operations ------------------------------------------------------------------------

    async def upsert(self, spec: ScheduleSpec) -> bool:
        """Create a schedule or replace its spec (it keeps how far it fired). True: created."""
        return await asyncio.to_thread(self.store.upsert, spec, self.clock.now())

    async def declare(self, specs: Sequence[ScheduleSpec]) -> None:
        """Upsert schedules declared in code, keeping an operator's pause or resume, and
        the runtime env a deploy recorded when the declaring client has none (a publisher,
        an operator's process importing the module): only a deploy changes the code."""
        now = self.clock.now()
        for spec in specs:
            if spec.env_hash is None:
                held = await asyncio.to_thread(self.store.get, spec.name)
                if held is not None and held.spec.env_hash is not None:
                    spec = spec.with_(env_hash=held.spec.env_hash)
            await asyncio.to_thread(self.store.upsert, spec, now, keep_paused=True)

    async def delete(self, name: str) -> None:
        if not await asyncio.to_thread(self.store.delete, name):
            raise _not_found(name)

    async def pause(self, name: str) -> None:
        await self._set_paused(name, True)

    async def resume(self, name: str) -> None:
        """Resume from now on: ticks that fell while it was paused do not fire."""
        await self._set_paused(name, False)

    async def _set_paused(self, name: str, paused: bool) -> None:
        if not await asyncio.to_thread(self.store.set_paused, name, paused, self.clock.now()):
            raise _not_found(name)

    async def trigger(self, name: str) -> SubmitResult:
        """Start a run of the schedule now, outside its cron (overlap does not apply)."""
        record = await self._get(name)
        now = self.clock.now()
        request = _request(record.spec, manual_run_id(name, now), now)
        (result,) = await self.runs.submit([request])
        return result

    async def list_schedules(self, count: int = 3) -> list[ScheduleInfo]:
        """Every schedule with its next `count` fire times (none while paused)."""
        now = self.clock.now()
        return [
            ScheduleInfo(
                spec=r.spec,
                last_fired=r.last_fired,
                last_run_id=r.last_run_id,
                buffered_at=r.buffered_at,
                next_fire_times=[]
                if r.spec.paused
                else next_fire_times(r.spec, max(now, r.last_fired), count),
                last_error=self.errors.get(r.name),
            )
            for r in await asyncio.to_thread(self.store.load_all)
        ]

    async def _get(self, name: str) -> ScheduleRecord:
        record = await asyncio.to_thread(self.store.get, name)
        if record is None:
            raise _not_found(name)
        return record


def _plan(record: ScheduleRecord, ticks: Sequence[datetime], previous_active: bool) -> _Plan:
    """Apply the overlap policy to the due ticks, oldest first."""
    spec = record.spec
    plan = _Plan(record, last_run_id=record.last_run_id, buffered_at=record.buffered_at)
    if plan.buffered_at is not None and not previous_active:
        _start(plan, plan.buffered_at)  # the previous run ended: the buffered tick goes
        plan.buffered_at = None
        previous_active = True
    for tick in ticks:
        action = on_overlap(spec.overlap, previous_active, plan.buffered_at is not None)
        if action is OverlapAction.CANCEL_PREVIOUS:
            if plan.submit and plan.submit[-1].run_id == plan.last_run_id:
                plan.submit.pop()  # started in this same tick: never start it at all
                plan.ticks.pop()
            elif plan.last_run_id is not None:
                plan.cancel.append(plan.last_run_id)
            _start(plan, tick)
        elif action is OverlapAction.START:
            _start(plan, tick)
        elif action is OverlapAction.BUFFER:
            plan.buffered_at = tick
        previous_active = previous_active or action is not OverlapAction.SKIP
    return plan


def _start(plan: _Plan, tick: datetime) -> None:
    request = _request(plan.record.spec, tick_run_id(plan.record.name, tick), tick)
    plan.submit.append(request)
    plan.ticks.append(tick)
    plan.last_run_id = request.run_id


def _request(spec: ScheduleSpec, run_id: str, tick: datetime) -> SubmitRequest:
    zone = spec.zone
    key = spec.unique_key
    return SubmitRequest(
        run_id=run_id,
        workflow=spec.workflow,
        version="",  # the latest registered version
        input_json=for_tick(spec.input_json, tick, zone),
        priority=spec.priority,
        queue=spec.queue,
        trigger=TRIGGER,
        trigger_id=trigger_id(spec.name, tick),
        unique_key=None if key is None else for_tick(key, tick, zone),
        env_hash=spec.env_hash,
    )


def _answered_by(plan: _Plan, results: Sequence[SubmitResult]) -> str | None:
    """The run a plan's latest start is answered with: its own, or the run holding its
    workflow's uniqueness key (refused: the previous one stays)."""
    answers = {r.run_id: res for r, res in zip(plan.submit, results, strict=True)}
    answer = answers.get(plan.last_run_id or "")
    if answer is None:
        return plan.last_run_id
    if answer.error is not None:
        return plan.record.last_run_id
    return answer.run_id


def _active(run_id: str | None, views: dict[str, RunView]) -> bool:
    view = views.get(run_id) if run_id is not None else None
    return view is not None and not view.status.finished


def _not_found(name: str) -> ScheduleNotFoundError:
    return ScheduleNotFoundError(f"no schedule named {name!r}")
