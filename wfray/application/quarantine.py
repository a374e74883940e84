"""Quarantined outcomes, and why: the operator's view of what the poison guard did.

An outcome wfray stopped applying is quarantined, with one of two statuses:
`refused`: the database refused what the outcome held; its attempt was recorded as failed.
`quarantined`: coordinators went down while applying the outcome, at as many starts as
`CoordinatorSettings.quarantine_after_deaths` allows: its attempt was recorded as failed
with that reason, so no outcome can keep a coordinator restarting. A coordinator killed
before it began applying an outcome (an operator's kill, a node lost during recovery)
counts nothing against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from wfray.domain.records import AttemptKey

PENDING = "pending"  # undelivered at a start, not yet being applied
APPLYING = "applying"  # a coordinator began applying it (and has not committed it)
QUARANTINED = "quarantined"
REFUSED = "refused"


def died_applying(deaths: int) -> str:
    return f"the coordinator went down while applying this outcome, {deaths} times: quarantined"


@dataclass(frozen=True, slots=True)
class QuarantinedOutcome:
    key: AttemptKey
    status: str  # quarantined | refused
    reason: str
    at: datetime
