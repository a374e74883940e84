"""The ports of the scheduler: where schedules are stored, and the engine that starts runs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from wfray.application.messages import CommandResult, RunView, SubmitRequest, SubmitResult
from wfray.domain.schedule import ScheduleRecord, ScheduleSpec


class ScheduleStore(Protocol):
    """The truth about schedules. Sync, like RunStore; the scheduler calls it from a thread.

    `advance` is a compare-and-set on `last_fired`: of two schedulers that handled the same
    tick, one moves the schedule on and the other learns it lost (False) and changes nothing.
    """

    def upsert(self, spec: ScheduleSpec, now: datetime, *, keep_paused: bool = False) -> bool:
        """Create the schedule (last fired = now) or replace its spec, keeping how far it
        fired. `keep_paused`: an existing schedule keeps its stored paused flag (code
        declarations must not undo an operator's pause). True if it was created."""
        ...

    def get(self, name: str) -> ScheduleRecord | None: ...
    def load_all(self) -> list[ScheduleRecord]:
        """Every schedule, by name."""
        ...

    def delete(self, name: str) -> bool:
        """Remove the schedule; False if there was none."""
        ...

    def set_paused(self, name: str, paused: bool, now: datetime) -> bool:
        """Pause or resume. Resuming moves `last_fired` to `now` (if later) and drops a
        buffered tick: a paused schedule's ticks never fire. False if there is no schedule."""
        ...

    def advance(
        self,
        name: str,
        expected_last_fired: datetime,
        last_fired: datetime,
        last_run_id: str | None,
        buffered_at: datetime | None,
        now: datetime,
    ) -> bool:
        """Record the ticks handled, if `last_fired` is still `expected_last_fired`."""
        ...

    def close(self) -> None: ...


class RunStarter(Protocol):
    """The part of the Coordinator the scheduler uses (the Coordinator itself fits)."""

    async def submit(self, requests: Sequence[SubmitRequest]) -> list[SubmitResult]: ...
    async def cancel(
        self, run_ids: Sequence[str], reason: str = "", compensate: bool = True
    ) -> list[CommandResult]: ...
    async def views(self, run_ids: Sequence[str]) -> list[RunView]: ...
