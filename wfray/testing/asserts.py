"""Assertions on what a run did: its attempts, its status, its log lines.

The functions take a `reader` (anything with the client's `detail(run_id)` and
`logs(run_id, step)`: a LocalWfray, or a real `wfray.Client`), so one test helper serves
both. On failure they say what was expected and list what happened.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from wfray.application.views import RunDetail
from wfray.domain.records import AttemptRecord, LogRecord, TaskRecord
from wfray.domain.status import AttemptStatus, RunStatus, TaskStatus

STEP = "step"
COMPENSATION = "compensation"


class Reader(Protocol):
    """What the assertions read through (the client's methods of these names)."""

    def detail(self, run_id: str) -> RunDetail: ...

    def logs(self, run_id: str, step: str | None = None) -> list[LogRecord]: ...


class HasRunId(Protocol):
    @property
    def run_id(self) -> str: ...


RunRef = str | HasRunId


def run_id_of(run: RunRef) -> str:
    return run if isinstance(run, str) else run.run_id


def attempts_of(
    reader: Reader, run: RunRef, step: str, *, kind: str = STEP, map_index: int = -1
) -> list[AttemptRecord]:
    """The attempts of one step (or of its compensation, `kind="compensation"`), in order."""
    found = [
        a
        for a in reader.detail(run_id_of(run)).attempts
        if a.step == step and a.map_index == map_index and a.kind == kind
    ]
    return sorted(found, key=lambda a: a.attempt)


def assert_attempts(
    reader: Reader,
    run: RunRef,
    step: str,
    statuses: Sequence[str | AttemptStatus],
    *,
    kind: str = STEP,
    map_index: int = -1,
) -> list[AttemptRecord]:
    """Assert the step's attempts ended with these statuses, in order; returns them."""
    found = attempts_of(reader, run, step, kind=kind, map_index=map_index)
    wanted = [AttemptStatus(s).value for s in statuses]
    got = [a.status.value for a in found]
    if got != wanted:
        what = step if kind == STEP else f"{step} ({kind})"
        where = "" if map_index == -1 else f" item {map_index}"
        raise AssertionError(
            f"run {run_id_of(run)}, {what}{where}: expected attempts {wanted}, got {got}"
            + "".join(f"\n  {_line(a)}" for a in found)
        )
    return found


def assert_status(reader: Reader, run: RunRef, status: str | RunStatus) -> None:
    """Assert the run is in `status` (as stored)."""
    run_id = run_id_of(run)
    detail = reader.detail(run_id)
    if detail.run.status is not RunStatus(status):
        tasks = "".join(f"\n  {_task_line(t)}" for t in detail.tasks)
        raise AssertionError(
            f"run {run_id}: expected {RunStatus(status).value}, got "
            f"{detail.run.status.value}"
            + (f" ({detail.run.error})" if detail.run.error else "")
            + tasks
        )


def step_logs(reader: Reader, run: RunRef, step: str, *, attempt: int | None = None) -> list[str]:
    """The messages a step logged (of one attempt, or of all of them), in order."""
    lines = reader.logs(run_id_of(run), step)
    return [line.message for line in lines if attempt is None or line.attempt == attempt]


def assert_logged(
    reader: Reader, run: RunRef, step: str, text: str, *, attempt: int | None = None
) -> None:
    """Assert some log line of the step (or of one attempt) contains `text`."""
    messages = step_logs(reader, run, step, attempt=attempt)
    if not any(text in message for message in messages):
        which = "" if attempt is None else f" attempt {attempt}"
        shown = "".join(f"\n  {m}" for m in messages) or " (none)"
        raise AssertionError(
            f"run {run_id_of(run)}, {step}{which}: no log line contains {text!r}; its lines:{shown}"
        )


class Assertions:
    """The assertions as methods of a reader (LocalWfray inherits them): the functions
    above, bound, so the reader is `self`."""

    attempts_of = attempts_of
    assert_attempts = assert_attempts
    assert_status = assert_status
    step_logs = step_logs
    assert_logged = assert_logged


def _line(attempt: AttemptRecord) -> str:
    when = "" if attempt.finished_at is None else f" at {attempt.finished_at.isoformat()}"
    error = ""
    if attempt.error_type:
        error = f": {attempt.error_type}: {_first_line(attempt.error_message or '')}"
    return f"#{attempt.attempt} {attempt.status.value}{when}{error}"


def _task_line(task: TaskRecord) -> str:
    where = "" if task.map_index == -1 else f"[{task.map_index}]"
    line = f"{task.step}{where}: {task.status.value}"
    if task.status is TaskStatus.RETRYING and task.ready_at is not None:
        line += f", next attempt at {task.ready_at.isoformat()}"
    if task.error_message:
        line += f" ({_first_line(task.error_message)})"
    return line


def _first_line(text: str, limit: int = 200) -> str:
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= limit else line[:limit] + "..."
