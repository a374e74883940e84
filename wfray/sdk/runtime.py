"""What a running step may ask of wfray: heartbeats, events, child runs, claims.

`StepServices` (ports.py) is the port; the Ray adapter implements it with calls to the
coordinator actor, the in-process tests with calls to an in-process Coordinator.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, TypeAdapter
from pydantic_core import PydanticSerializationError

from wfray.application.ports import StepServices
from wfray.application.views import ChildStatus, ClaimView
from wfray.domain.claims import Holder, check_result
from wfray.domain.errors import (
    ChildRunsFailedError,
    ClaimNotHeldError,
    InvalidClaimError,
    NonRetryableError,
    RetryLater,
)
from wfray.domain.records import AttemptKey
from wfray.domain.status import RunStatus

COMPLETED = RunStatus.COMPLETED.value


class ChildRun(BaseModel):
    index: int
    run_id: str
    status: str
    result: Any = None
    error: str | None = None


class ChildRuns(BaseModel):
    """What a step gets back from `ctx.run_children`: every child, in input order."""

    workflow: str
    children: list[ChildRun]

    @property
    def succeeded(self) -> list[ChildRun]:
        return [c for c in self.children if c.status == COMPLETED]

    @property
    def failed(self) -> list[ChildRun]:
        return [c for c in self.children if c.status != COMPLETED]

    @property
    def results(self) -> list[Any]:
        """The results of the children that succeeded, in input order."""
        return [c.result for c in self.succeeded]


OnChildFailure = Literal["fail", "continue"]
_FINISHED = frozenset(s.value for s in RunStatus if s.finished)


def gather_children(
    workflow: str, run_ids: list[str], statuses: list[ChildStatus], on_failure: OnChildFailure
) -> ChildRuns:
    by_id = {s.run_id: s for s in statuses}
    children = []
    for index, run_id in enumerate(run_ids):
        found = by_id.get(run_id, ChildStatus(run_id, "unknown", error="not finished in time"))
        children.append(
            ChildRun(
                index=index,
                run_id=run_id,
                status=found.status,
                result=found.result,
                error=found.error,
            )
        )
    outcome = ChildRuns(workflow=workflow, children=children)
    unfinished = [c for c in children if c.status not in _FINISHED]
    if unfinished:
        # they run on; a retry of this step finds the same children (ids are stable)
        raise RetryLater(
            f"{len(unfinished)} of {len(children)} child runs of {workflow!r} still running",
            delay_s=5.0,
        )
    failed = outcome.failed
    if failed and on_failure == "fail":
        listed = ", ".join(f"#{c.index} {c.run_id} ({c.status}: {c.error})" for c in failed[:5])
        more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
        raise ChildRunsFailedError(
            f"{len(failed)} of {len(children)} child runs of {workflow!r} did not succeed: "
            f"{listed}{more}"
        )
    return outcome


_ANY: TypeAdapter[Any] = TypeAdapter(Any)


class Claim:
    """What `ctx.claim(key, ttl=...)` and `ctx.claimed(key)` return.

    Attributes:
        key: the claimed name.
        acquired: this step holds the claim (new, got back, or taken over).
        state: the holder's state: "running", "retrying" (its attempt ended, its step
            will try again), "done" or "died" (its step ended without marking it done,
            or its TTL passed).
        holder: the attempt holding it (run_id, step, map_index, attempt).
        result: the holder's result reference once done (None before).
        regained: this step held it already (a retry or a rerun got it back).
        taken_over_from: the dead holder it was taken from; when set, the side effect may
            have happened: check the external system before repeating it.
        expires_at: an unfinished hold lapses then (the holder counts as died).
    """

    def __init__(self, view: ClaimView, services: StepServices, attempt: AttemptKey) -> None:
        self._view = view
        self._services = services
        self._attempt = attempt

    key = property(lambda self: self._view.key)
    acquired = property(lambda self: self._view.acquired)
    state = property(lambda self: self._view.state)
    regained = property(lambda self: self._view.regained)

    @property
    def holder(self) -> Holder:
        return self._view.holder

    @property
    def taken_over_from(self) -> Holder | None:
        return self._view.taken_over_from

    @property
    def taken_over(self) -> bool:
        return self._view.taken_over_from is not None

    @property
    def is_done(self) -> bool:
        return self._view.state == "done"

    @property
    def expires_at(self) -> datetime:
        return self._view.expires_at

    @property
    def done_at(self) -> datetime | None:
        return self._view.done_at

    @property
    def result(self) -> Any:
        json = self._view.result_json
        return None if json is None else _ANY.validate_json(json)

    def done(self, result_ref: Any = None) -> Any:
        """Mark the claim done after the side effect, with a small JSON-able reference to
        its outcome (an invoice id). Marking done twice keeps the first reference, which
        is returned. Raises ClaimNotHeldError if this step does not hold the claim."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return self._done(result_ref)
        raise NonRetryableError(
            "claim.done() waits for wfray, which would block this async step's event loop: "
            "use `await claim.done_async(...)`"
        )

    async def done_async(self, result_ref: Any = None) -> Any:
        """`done` for async steps: waits in a thread, not on the event loop."""
        return await asyncio.to_thread(self._done, result_ref)

    def _done(self, result_ref: Any) -> Any:
        if not self.acquired:
            h = self.holder
            raise ClaimNotHeldError(
                f"claim {self.key!r} is held by run {h.run_id!r} step {h.step!r} "
                f"(map index {h.map_index}, attempt {h.attempt}), not by this step"
            )
        try:
            text = _ANY.dump_json(result_ref).decode()
        except (PydanticSerializationError, ValueError, TypeError) as exc:
            raise InvalidClaimError(
                f"claim result must be JSON-able, got {type(result_ref).__name__}: {exc}"
            ) from exc
        self._view = self._services.finish_claim(self.key, self._attempt, check_result(text))
        return self.result

    def __repr__(self) -> str:
        h = self.holder
        return (
            f"Claim({self.key!r}, acquired={self.acquired}, state={self.state!r}, "
            f"holder={h.run_id}/{h.step}[{h.map_index}]#{h.attempt}, "
            f"taken_over={self.taken_over})"
        )
