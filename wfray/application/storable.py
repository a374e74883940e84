"""What may enter the store: text made storable visibly, everything else checked, never
silently altered.

PostgreSQL text refuses NUL; neither database takes a lone surrogate (UTF-8 cannot encode
it); a multi-megabyte error message bloats every read of its run. Error text and log lines
are made storable where they enter the coordinator: NUL and lone surrogates become U+FFFD,
over-long text is cut with a note saying how much. Results and progress are data that steps
read back, so they are never rewritten: one that cannot be stored as it is turns its attempt
into a failure that says why, and the run goes on by its retry policy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from wfray.application.messages import Outcome
from wfray.domain.records import LogRecord
from wfray.domain.status import AttemptStatus

REPLACEMENT = "\ufffd"
NOT_STORED = "wfray.OutcomeNotStored"
_SURROGATE = re.compile("[\ud800-\udfff]")
_NAME_CHARS = 512  # error types, logger names, host names: never long


@dataclass(frozen=True, slots=True)
class TextLimits:
    """Caps on the text an attempt leaves behind (characters)."""

    error_chars: int = 16_384
    traceback_chars: int = 65_536
    log_line_chars: int = 8_192


def clean_text(text: str, limit: int) -> str:
    """`text` made storable: NUL and lone surrogates replaced by U+FFFD, then cut to at most
    `limit` characters, note included, saying how many were cut (so cutting again, on the
    worker and then in the coordinator, changes nothing)."""
    if not text.isascii() and _SURROGATE.search(text):
        # pairs written as two code units become their character; lone ones U+FFFD
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    if "\x00" in text:
        text = text.replace("\x00", REPLACEMENT)
    if len(text) > limit:
        cut = len(text) - limit
        while True:  # the note's length moves the cut, which may lengthen the note: settle
            note = f"... [{cut} more characters cut]"
            kept = max(limit - len(note), 0)
            if len(text) - kept == cut:
                break
            cut = len(text) - kept
        text = (text[:kept] + note)[:limit]
    return text


def _clean(text: str | None, limit: int) -> str | None:
    return None if text is None else clean_text(text, limit)


def problem(text: str | None) -> str | None:
    """Why `text` (data a step reads back) cannot be stored as it is; None if it can."""
    if text is None:
        return None
    if "\x00" in text:
        return "it holds a NUL character, which PostgreSQL text cannot store"
    if not text.isascii() and _SURROGATE.search(text):
        return "it holds a lone surrogate, which UTF-8 cannot encode"
    return None


def not_stored(outcome: Outcome, why: str) -> Outcome:
    """Turn `outcome` into a failure of its attempt saying why it could not be stored."""
    outcome.status = AttemptStatus.FAILED
    outcome.error_type = NOT_STORED
    outcome.error_message = clean_text(f"the outcome could not be stored: {why}", 4096)
    outcome.traceback = None
    outcome.result_json = None
    outcome.result_ref = None
    outcome.result_items = None
    outcome.retryable = True
    outcome.retry_after_s = None
    return outcome


def clean_logs(lines: list[LogRecord], limits: TextLimits) -> list[LogRecord]:
    for line in lines:
        line.message = clean_text(line.message, limits.log_line_chars)
        line.logger = clean_text(line.logger, _NAME_CHARS)
        line.level = clean_text(line.level, _NAME_CHARS)
    return lines


def screen(outcome: Outcome, limits: TextLimits) -> Outcome:
    """Make `outcome` storable, in place: see the module's docstring."""
    outcome.error_type = _clean(outcome.error_type, _NAME_CHARS)
    outcome.error_message = _clean(outcome.error_message, limits.error_chars)
    outcome.traceback = _clean(outcome.traceback, limits.traceback_chars)
    worker = outcome.worker
    worker.node_id = _clean(worker.node_id, _NAME_CHARS)
    worker.worker_id = _clean(worker.worker_id, _NAME_CHARS)
    worker.host = _clean(worker.host, _NAME_CHARS)
    clean_logs(outcome.logs, limits)
    if problem(outcome.progress_json) is not None:
        outcome.progress_json = None  # progress is a hint for operators: the next beat may do
    why = problem(outcome.result_json) or problem(outcome.result_ref)
    if why is not None:
        not_stored(outcome, f"its result cannot be stored: {why}")
    return outcome
