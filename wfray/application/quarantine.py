"""Outcomes set aside, and why: the operator's view of what the poison guard did.

`refused`: the database refused what the outcome held; its attempt was recorded as failed.
`quarantined`: the outcome was still undelivered at two consecutive coordinator starts (the
coordinator went down while applying it, twice): its attempt was recorded as failed with
that reason, so no outcome can keep a coordinator restarting.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

AttemptKey = tuple[str, str, int, int]
PENDING = "pending"
QUARANTINED = "quarantined"
REFUSED = "refused"
TWO_STARTS = (
    "the outcome was still undelivered at two consecutive coordinator starts (the "
    "coordinator stopped while applying it): quarantined"
)


@dataclass(frozen=True, slots=True)
class QuarantinedOutcome:
    key: AttemptKey
    status: str  # quarantined | refused
    reason: str
    at: datetime
