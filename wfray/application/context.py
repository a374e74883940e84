"""What a step sees of its run, and the capture of its log lines."""

from __future__ import annotations

import contextvars
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from wfray.domain.records import LogRecord

_current: contextvars.ContextVar[AttemptLog | None] = contextvars.ContextVar(
    "wfray_attempt_log", default=None
)


@dataclass(slots=True)
class AttemptLog:
    """The log lines of one attempt, bounded so a chatty step cannot exhaust memory."""

    run_id: str
    step: str
    map_index: int
    attempt: int
    limit: int = 1000
    lines: list[LogRecord] = field(default_factory=list)
    dropped: int = 0

    def add(self, record: logging.LogRecord) -> None:
        if len(self.lines) >= self.limit:
            self.dropped += 1
            return
        self.lines.append(
            LogRecord(
                run_id=self.run_id,
                step=self.step,
                map_index=self.map_index,
                attempt=self.attempt,
                ts=datetime.fromtimestamp(record.created, UTC),
                level=record.levelname,
                logger=record.name,
                message=_format(record),
            )
        )

    def finish(self) -> list[LogRecord]:
        if self.dropped:
            self.lines.append(
                LogRecord(
                    run_id=self.run_id,
                    step=self.step,
                    map_index=self.map_index,
                    attempt=self.attempt,
                    ts=datetime.now(UTC),
                    level="WARNING",
                    logger="wfray",
                    message=f"log truncated: {self.dropped} more lines dropped "
                    f"(limit {self.limit} per attempt)",
                )
            )
            self.dropped = 0
        return self.lines


def _format(record: logging.LogRecord) -> str:
    message = record.getMessage()
    if record.exc_info:
        message += "\n" + logging.Formatter().formatException(record.exc_info)
    return message


class _CaptureHandler(logging.Handler):
    """One root handler per process; it files each record under the attempt running it."""

    def emit(self, record: logging.LogRecord) -> None:
        log = _current.get()
        if log is not None:
            log.add(record)


_handler = _CaptureHandler()


def install_capture() -> None:
    root = logging.getLogger()
    if _handler not in root.handlers:
        root.addHandler(_handler)


def bind(log: AttemptLog) -> contextvars.Token[AttemptLog | None]:
    install_capture()
    return _current.set(log)


def unbind(token: contextvars.Token[AttemptLog | None]) -> None:
    _current.reset(token)


@dataclass(frozen=True, slots=True)
class StepContext:
    """Handed to a step that has a `ctx` parameter.

    Attributes:
        run_id: the run this attempt belongs to.
        workflow: the workflow's name.
        step: the step's name.
        map_index: the item index of a fanned-out step, -1 otherwise.
        attempt: 1 for the first attempt, then 2, 3, ...
        idempotency_key: stable across attempts; pass it to external systems.
        logger: records logged here are stored with the attempt.
    """

    run_id: str
    workflow: str
    step: str
    map_index: int
    attempt: int
    idempotency_key: str
    logger: logging.Logger
