"""Runs unique by key: what a second submission gets while the first is active or after.

A workflow may declare a uniqueness key over its input (`unique=lambda i: f"weekly:{i.week}"`
or a list of input field names). Submissions with the same key, for the same workflow, are
answered by one run while the policy says so. Temporal's workflow id policies are the
anchor:

| `UniquePolicy`                    | Temporal                                      |
|-----------------------------------|-----------------------------------------------|
| `while_active="existing"`         | conflict policy USE_EXISTING                  |
| `while_active="refuse"`           | conflict policy FAIL                          |
| `after_finished="new"`            | reuse policy ALLOW_DUPLICATE                  |
| `after_finished="new_if_failed"`  | reuse policy ALLOW_DUPLICATE_FAILED_ONLY      |
| `after_finished="refuse"`         | reuse policy REJECT_DUPLICATE                 |
| `after_finished="existing"`       | (none: the finished run answers, like a cache) |

The key differs from an idempotency key: that one names one request (the same key with
another input is a conflict); a uniqueness key is derived from the input and names the work,
so different inputs with the same key meet the same run.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from wfray.domain.errors import DefinitionError, UniqueKeyError
from wfray.domain.limits import key_problem
from wfray.domain.records import RunRecord
from wfray.domain.status import RunStatus

WhileActive = Literal["existing", "refuse"]
AfterFinished = Literal["new", "existing", "refuse", "new_if_failed"]
WHILE_ACTIVE: tuple[str, ...] = ("existing", "refuse")
AFTER_FINISHED: tuple[str, ...] = ("new", "existing", "refuse", "new_if_failed")


class UniqueAnswer(StrEnum):
    """What a submission whose key is held gets."""

    NEW = "new"  # a new run, which now holds the key
    EXISTING = "existing"  # the run holding the key
    REFUSE = "refuse"  # UniqueRunError


@dataclass(frozen=True, slots=True)
class UniquePolicy:
    """What a second submission with the same uniqueness key gets.

    Attributes:
        while_active: while the run holding the key is queued, running or compensating:
            "existing" answers with that run (the default), "refuse" raises UniqueRunError
            (HTTP 409).
        after_finished: once it finished: "new" starts a new run (the default), "existing"
            answers with the finished run, "refuse" refuses for good, "new_if_failed" starts
            a new run only if the last one did not complete (failed, cancelled,
            compensated or compensation_failed) and answers with it otherwise.
    """

    while_active: WhileActive = "existing"
    after_finished: AfterFinished = "new"

    def __post_init__(self) -> None:
        if self.while_active not in WHILE_ACTIVE:
            raise DefinitionError(
                f"UniquePolicy, field 'while_active': {self.while_active!r}; expected one of "
                f"{', '.join(WHILE_ACTIVE)}"
            )
        if self.after_finished not in AFTER_FINISHED:
            raise DefinitionError(
                f"UniquePolicy, field 'after_finished': {self.after_finished!r}; expected one "
                f"of {', '.join(AFTER_FINISHED)}"
            )

    def decide(self, holder: RunStatus | None) -> UniqueAnswer:
        """The answer to a submission whose key is held by a run in status `holder`.

        Args:
            holder: the status of the run holding the key (the active one if any, else the
                newest), or None when no run holds it.

        Returns:
            NEW, EXISTING or REFUSE.
        """
        if holder is None:
            return UniqueAnswer.NEW
        if not holder.finished:
            return UniqueAnswer(self.while_active)
        if self.after_finished == "new_if_failed":
            return UniqueAnswer.EXISTING if holder is RunStatus.COMPLETED else UniqueAnswer.NEW
        return UniqueAnswer(self.after_finished)

    def as_dict(self) -> dict[str, str]:
        return {"while_active": self.while_active, "after_finished": self.after_finished}


def checked_key(workflow: str, key: object) -> str:
    """`key` as computed by a workflow's uniqueness function, if it can be stored.

    Raises:
        UniqueKeyError: naming the workflow, when the key is not a string, is empty, too
            long or holds a NUL character (or a lone surrogate).
    """
    if not isinstance(key, str):
        raise UniqueKeyError(
            f"workflow {workflow!r}: the uniqueness key must be a string, the key function "
            f"returned {type(key).__name__} {key!r:.80}"
        )
    if not key:
        raise UniqueKeyError(f"workflow {workflow!r}: the uniqueness key is empty")
    why = key_problem("the uniqueness key", key)
    if why is not None:
        raise UniqueKeyError(f"workflow {workflow!r}: {why}")
    return key


def holds_before(run: RunRecord, other: RunRecord) -> bool:
    """Whether `run` rather than `other` holds their key: a run not finished first, then
    the newest (created_at, run_id), as the store's `find_unique_runs` orders them."""
    return (not run.status.finished, run.created_at, run.run_id) > (
        not other.status.finished,
        other.created_at,
        other.run_id,
    )
