"""What the read side is asked for: which runs a listing shows and which log lines a reader
gets. One value each, passed from the client through the handlers and the queries to the
store, instead of the same keyword arguments declared at every step of the way."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from wfray.domain.errors import WfrayError
from wfray.domain.records import LogRecord, RunRecord
from wfray.domain.status import RunStatus


def run_status(status: str | None) -> RunStatus | None:
    """`status` as a RunStatus (None stays None).

    Raises:
        WfrayError: naming the statuses there are, if `status` is none of them.
    """
    if status is None:
        return None
    try:
        return RunStatus(status)
    except ValueError:
        known = ", ".join(s.value for s in RunStatus)
        raise WfrayError(f"unknown run status {status!r}; known: {known}") from None


@dataclass(frozen=True, slots=True)
class RunFilter:
    """Which runs to list: newest first, (created_at, run_id) descending, at most `limit`.

    `created_after` is inclusive and `created_before` exclusive; with `position` (the
    created_at and run_id of a run), only the runs after it in that order (a keyset page:
    the store reads `limit` rows, no more).
    """

    workflow: str | None = None
    status: RunStatus | None = None
    limit: int = 100
    created_after: datetime | None = None
    created_before: datetime | None = None
    position: tuple[datetime, str] | None = None

    def matches(self, run: RunRecord) -> bool:
        """The filter as the in-memory store applies it (the SQL one says the same in SQL);
        `limit` is the caller's to apply, after the newest-first sort."""
        return (
            (self.workflow is None or run.workflow == self.workflow)
            and (self.status is None or run.status == self.status)
            and (self.created_after is None or run.created_at >= self.created_after)
            and (self.created_before is None or run.created_at < self.created_before)
            and (self.position is None or (run.created_at, run.run_id) < self.position)
        )


@dataclass(frozen=True, slots=True)
class LogQuery:
    """Which log lines of a run to read, in the order stored (increasing `id`): of one step
    (None: every step), after line `after_id` (None: from the first), at most `limit`."""

    run_id: str
    step: str | None = None
    after_id: int | None = None
    limit: int | None = None

    def matches(self, line: LogRecord) -> bool:
        """The query as the in-memory store applies it, but for `limit`."""
        return (
            line.run_id == self.run_id
            and (self.step is None or line.step == self.step)
            and (self.after_id is None or (line.id or 0) > self.after_id)
        )
