"""Pages of runs and of a run's detail, behind opaque cursors.

Every page is one keyset query in the store that reads at most `limit + 1` rows, whatever
the cursor says: a forged cursor can point anywhere, but never makes a page larger.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from fastapi.exceptions import RequestValidationError

from wfray.application.client_commands import DetailPage
from wfray.application.views import RunDetail
from wfray.client.client import Client
from wfray.domain.records import RunRecord
from wfray.domain.status import RunStatus
from wfray.entrypoints.http.models import RunDetailOut, RunOut, RunPage

Position = tuple[datetime, str]
DetailPosition = tuple[tuple[str, int] | None, tuple[str, int, int] | None]


class CursorError(ValueError):
    pass


def _encode(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def _decode(cursor: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError) as exc:
        raise CursorError(f"cursor {cursor!r} is not one this API handed out") from exc


def encode_cursor(run: RunRecord) -> str:
    """The position after `run` in the order (created_at desc, run_id desc), opaque."""
    return _encode([run.created_at.isoformat(), run.run_id])


def decode_cursor(cursor: str) -> Position:
    try:
        created, run_id = _decode(cursor)
        at = datetime.fromisoformat(created)
        if not isinstance(run_id, str) or at.tzinfo is None:
            raise TypeError(run_id)
        return at, run_id
    except (ValueError, TypeError) as exc:
        raise CursorError(f"cursor {cursor!r} is not one this API handed out") from exc


def decode_detail_cursor(cursor: str) -> DetailPosition:
    try:
        tasks, attempts = _decode(cursor)
        task_at = None if tasks is None else (str(tasks[0]), int(tasks[1]))
        attempt_at = (
            None if attempts is None else (str(attempts[0]), int(attempts[1]), int(attempts[2]))
        )
        return task_at, attempt_at
    except (ValueError, TypeError, IndexError) as exc:
        raise CursorError(f"cursor {cursor!r} is not one this API handed out") from exc


def cursor_or_422(cursor: str | None, decode: Any) -> Any:
    """The decoded cursor; a bad one is a 422 naming the `cursor` parameter."""
    if cursor is None:
        return None
    try:
        return decode(cursor)
    except CursorError as exc:
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("query", "cursor"), "msg": str(exc)}]
        ) from None


def page_runs(
    client: Client,
    workflow: str | None,
    status: RunStatus | None,
    after: datetime | None,
    before: datetime | None,
    limit: int,
    position: Position | None,
) -> RunPage:
    """One page after `position` in the order (created_at desc, run_id desc)."""
    found = client.list_runs(workflow, status, limit + 1, after, before, position)
    page = found[:limit]
    more = len(found) > limit
    return RunPage(
        runs=[RunOut.of(r) for r in page], next_cursor=encode_cursor(page[-1]) if more else None
    )


def page_detail(
    client: Client, run_id: str, limit: int, position: DetailPosition | None
) -> RunDetailOut:
    """The run, and a page of its tasks and of its attempts after `position`; the next
    cursor goes on with whichever of the two has more."""
    tasks_after, attempts_after = position or (None, None)
    detail = client.call(DetailPage(run_id, limit + 1, tasks_after, attempts_after))
    tasks, attempts = detail.tasks[:limit], detail.attempts[:limit]
    next_cursor = None
    if len(detail.tasks) > limit or len(detail.attempts) > limit:
        # A list that ended keeps its last position: its next page is empty.
        last_task = tasks[-1] if tasks else None
        last_attempt = attempts[-1] if attempts else None
        next_cursor = _encode(
            [
                [last_task.step, last_task.map_index] if last_task else tasks_after,
                [last_attempt.step, last_attempt.map_index, last_attempt.attempt]
                if last_attempt
                else attempts_after,
            ]
        )
    # Shown in time order, as an operator reads them (the paging order is by key).
    tasks.sort(key=lambda t: (t.created_at, t.step, t.map_index))
    attempts.sort(key=lambda a: (a.queued_at, a.step, a.map_index, a.attempt))
    page = RunDetail(run=detail.run, tasks=tasks, attempts=attempts, claims=detail.claims[:limit])
    return RunDetailOut.of(page, next_cursor)
