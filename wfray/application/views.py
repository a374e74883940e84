"""What readers see: a run's detail, a schedule, a claim, a child run's status.

Values that cross from the coordinator's side to the client, the API, the CLI and the steps;
they live here, with the ports and messages, so that none of those imports the coordinator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from wfray.domain.claims import ClaimRecord, ClaimState, Holder
from wfray.domain.records import AttemptRecord, RunRecord, TaskRecord, as_row
from wfray.domain.schedule import ScheduleSpec


@dataclass(slots=True)
class RunDetail:
    """A run with its task executions and every attempt."""

    run: RunRecord
    tasks: list[TaskRecord]
    attempts: list[AttemptRecord]
    children: list[RunRecord] = field(default_factory=list)  # runs its steps started
    claims: list[ClaimRecord] = field(default_factory=list)  # the claims it holds, by key
    # the runtime env its steps run in, as recorded (code_env.py); None: the cluster's own
    runtime_env: dict[str, Any] | None = None

    def attempts_of(self, step: str, map_index: int = -1) -> list[AttemptRecord]:
        return [a for a in self.attempts if a.step == step and a.map_index == map_index]


@dataclass(slots=True)
class ScheduleInfo:
    """A schedule as an operator sees it: its spec, how far it fired, what comes next."""

    spec: ScheduleSpec
    last_fired: datetime
    last_run_id: str | None
    buffered_at: datetime | None
    next_fire_times: list[datetime]
    last_error: str | None = None

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True, slots=True)
class ClaimView:
    """A claim as a step (or an operator) sees it.

    Attributes:
        key: the claimed name.
        acquired: the asking step holds the claim.
        state: its holder's state: "running", "retrying", "done" or "died".
        holder: the attempt holding it (run_id, step, map_index, attempt).
        claimed_at, expires_at: when the holder's step got it; when an unfinished hold
            lapses (past it, the claim counts as died).
        done_at, result_json: when and with what the holder marked it done.
        regained: the asking step held it already (a retry or a rerun got it back).
        taken_over_from: the dead holder this claim was taken from (None: it never was).
    """

    key: str
    acquired: bool
    state: str
    holder: Holder
    claimed_at: datetime
    expires_at: datetime
    done_at: datetime | None = None
    result_json: str | None = None
    regained: bool = False
    taken_over_from: Holder | None = None


def claim_view(
    record: ClaimRecord, acquired: bool, state: ClaimState, regained: bool = False
) -> ClaimView:
    """The record as the asking step sees it: its fields, but for the store's `version`."""
    shown = {name: value for name, value in as_row(record).items() if name != "version"}
    return ClaimView(**shown, acquired=acquired, state=state.value, regained=regained)


@dataclass(frozen=True, slots=True)
class ChildStatus:
    run_id: str
    status: str  # a RunStatus value; "unknown" if the run was not found in time
    result: Any = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ChildPlacement:
    """Where child runs wait: their queue, priority, and one concurrency key per child
    (None: no key), so a queue's per-key limit holds across parents."""

    queue: str = "default"
    priority: int = 0
    concurrency_keys: tuple[str | None, ...] | None = None


@dataclass(frozen=True, slots=True)
class ChildStart:
    """Child runs a step starts: one per input, under the run ids the step chose, tagged
    with their parent run and the step's call (`trigger_id`), waiting where `placement`
    says."""

    workflow: Any  # a Workflow, a declared workflow's name or a @wfray.task
    inputs: Sequence[Any]
    run_ids: Sequence[str]
    parent_run_id: str
    trigger_id: str
    placement: ChildPlacement = ChildPlacement()

    def concurrency_keys(self) -> Sequence[str | None]:
        """One per child (None: no key)."""
        return self.placement.concurrency_keys or [None] * len(self.inputs)


@dataclass(frozen=True, slots=True)
class StoreFacts:
    """What the store says of itself: the oldest queued run's creation, its size on disk
    (None where the database does not say)."""

    oldest_queued_run_at: datetime | None = None
    size_bytes: int | None = None
