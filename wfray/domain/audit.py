"""The audit trail's entries: who did what to which targets, when, from where, and how it ended.

An entry is built from what an operator sent, so everything in it is bounded and cleaned
here, before it is stored: NUL bytes and other control characters go (a NUL cannot even be
stored in PostgreSQL text), long text is cut saying how much was cut, lists and parameter
maps are capped. Callers pass only what may be kept: names, ids, counts, selectors; never a
token's value, an input, a result or an environment value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

MAX_NAME_CHARS = 200  # actor, via, address, action, each target
MAX_TEXT_CHARS = 1000  # outcome, each parameter's text
MAX_TARGETS = 100
MAX_PARAMS = 32
MAX_PARAMS_JSON = 8000

# C0 and C1 control characters but tab and newline, and the lone surrogates JSON may carry.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")

# The actions wfray records (the CLI and the API filter by them).
ACTIONS = (
    "run.cancel",
    "run.resume",
    "run.retry_compensation",
    "schedule.create",
    "schedule.delete",
    "schedule.pause",
    "schedule.resume",
    "schedule.trigger",
    "retention",
    "erasure",
    "upgrade",
    "token.use",
)


def clean_text(text: object, limit: int = MAX_TEXT_CHARS) -> str:
    """`text` as a string without control characters, cut to `limit` characters."""
    value = _CONTROL.sub("", text if isinstance(text, str) else str(text))
    if len(value) <= limit:
        return value
    kept = max(limit - len(f"...[{len(value)} more characters cut]"), 0)  # the longest note
    return value[:kept] + f"...[{len(value) - kept} more characters cut]"


@dataclass(frozen=True, slots=True)
class Origin:
    """Who acts and from where.

    Attributes:
        actor: the token's name over HTTP, the OS user for the CLI, "client" by default.
        via: "http", "cli" or "client".
        address: the client's address over HTTP, the host name for the CLI and the client.
    """

    actor: str = "client"
    via: str = "client"
    address: str | None = None


DEFAULT_ORIGIN = Origin()


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One recorded action. Build it with `audit_entry`, which bounds and cleans it."""

    at: datetime
    actor: str
    via: str
    address: str | None
    action: str
    targets: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    outcome: str = ""
    id: int | None = None  # given by the store, increasing


def audit_entry(
    at: datetime,
    origin: Origin | None,
    action: str,
    targets: Sequence[object] = (),
    params: Mapping[str, object] | None = None,
    outcome: object = "",
) -> AuditEntry:
    """An entry with every field cleaned and bounded (see the module's docstring)."""
    who = origin or DEFAULT_ORIGIN
    kept = [clean_text(t, MAX_NAME_CHARS) for t in list(targets)[:MAX_TARGETS]]
    if len(targets) > MAX_TARGETS:
        kept.append(f"...[{len(targets) - MAX_TARGETS} more targets]")
    return AuditEntry(
        at=at,
        actor=clean_text(who.actor, MAX_NAME_CHARS) or "unknown",
        via=clean_text(who.via, MAX_NAME_CHARS),
        address=None if who.address is None else clean_text(who.address, MAX_NAME_CHARS),
        action=clean_text(action, MAX_NAME_CHARS),
        targets=tuple(kept),
        params=bounded_params(params or {}),
        outcome=clean_text(outcome),
    )


def bounded_params(params: Mapping[str, object]) -> dict[str, Any]:
    """At most MAX_PARAMS parameters of plain values (numbers, booleans, None, cleaned text;
    anything else as its cleaned text), whose JSON fits MAX_PARAMS_JSON characters."""
    kept: dict[str, Any] = {}
    for key, value in list(params.items())[:MAX_PARAMS]:
        name = clean_text(key, MAX_NAME_CHARS)
        if value is None or isinstance(value, bool | int | float):
            kept[name] = value
        else:
            kept[name] = clean_text(value)
    while kept and len(json.dumps(kept)) > MAX_PARAMS_JSON:
        kept.popitem()  # the last ones go first; each alone fits
    return kept


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Which entries to read: newest first, `before_id` for the next page."""

    actor: str | None = None
    action: str | None = None
    target: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    before_id: int | None = None
    limit: int = 100

    def matches(self, entry: AuditEntry) -> bool:
        """The filter as the in-memory log applies it (the SQL one says the same in SQL)."""
        return (
            (self.actor is None or entry.actor == self.actor)
            and (self.action is None or entry.action == self.action)
            and (self.target is None or self.target in entry.targets)
            and (self.since is None or entry.at >= self.since)
            and (self.until is None or entry.at < self.until)
            and (self.before_id is None or (entry.id is not None and entry.id < self.before_id))
        )
