"""Claims: a named promise, kept in the store, that one step does a side effect.

A step claims a key (`invoice:ACME:2025-03-01`) before it creates the invoice. The rules,
all pure and given `now`:

- The first claimant gets the key. The same step (same run, step and map index) asking
  again, in a retry or a rerun, gets it back: its TTL starts again.
- Anyone else learns who holds it and in which state the holder is: `running` (its step
  is running), `retrying` (its attempt ended, its step will try again and get the claim
  back), `done` (marked done, with a small result), or `died` (its step ended without
  marking it done, or its TTL passed).
- A `died` claim goes to the next claimant, which is told the claim was taken over and
  from whom: the side effect may have happened, so check the external system first.
- A `done` claim stays done: the TTL bounds how long a holder may hold a claim unfinished,
  not how long a finished one is remembered (that is as long as the holder's run is kept).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from wfray.domain.errors import ClaimNotHeldError, InvalidClaimError
from wfray.domain.limits import key_problem

MAX_RESULT_CHARS = 16 * 1024  # a claim's result is a reference (an id), not a payload


class ClaimState(StrEnum):
    """Where a claim's holder is."""

    RUNNING = "running"
    RETRYING = "retrying"
    DONE = "done"
    DIED = "died"


class StepLiveness(StrEnum):
    """What the coordinator knows of the holder's step (not of the claim)."""

    RUNNING = "running"  # an attempt of the step is running
    WAITING = "waiting"  # the step will run again (queued, retrying)
    ENDED = "ended"  # the step will not run again (completed, failed, cancelled, gone)


@dataclass(frozen=True, slots=True)
class Holder:
    """The attempt that holds (or held) a claim."""

    run_id: str
    step: str
    map_index: int
    attempt: int

    def same_step(self, other: Holder) -> bool:
        return (self.run_id, self.step, self.map_index) == (
            other.run_id,
            other.step,
            other.map_index,
        )


@dataclass(frozen=True, slots=True)
class ClaimRecord:
    """A claim as the store keeps it.

    Attributes:
        key: the claimed name.
        holder: the attempt holding it (the latest attempt of its step that claimed it).
        claimed_at: when the holder's step first got it (a takeover starts again).
        expires_at: past this instant, a claim not done counts as died.
        version: increases with every write; writes are compare-and-set against it.
        done_at: when the holder marked it done (None: not done).
        result_json: the holder's result reference, as JSON (None until done).
        taken_over_from: the dead holder this claim was taken from, if any.
    """

    key: str
    holder: Holder
    claimed_at: datetime
    expires_at: datetime
    version: int = 1
    done_at: datetime | None = None
    result_json: str | None = None
    taken_over_from: Holder | None = None

    @property
    def done(self) -> bool:
        return self.done_at is not None


@dataclass(frozen=True, slots=True)
class ClaimDecision:
    """What a claim attempt comes to.

    Attributes:
        acquired: the claimant holds the claim now.
        record: the claim as it stands after the decision.
        state: the state of its holder (the claimant's, when acquired).
        write: `record` must be stored, compare-and-set against the version read.
        regained: the claimant's step held it already (a retry or a rerun).
        taken_over: the dead holder the claimant took it from (None: no takeover).
    """

    acquired: bool
    record: ClaimRecord
    state: ClaimState
    write: bool
    regained: bool = False
    taken_over: Holder | None = None


def state_of(record: ClaimRecord, liveness: StepLiveness, now: datetime) -> ClaimState:
    """The state of a claim's holder, given what is known of its step."""
    if record.done:
        return ClaimState.DONE
    if liveness is StepLiveness.ENDED or now >= record.expires_at:
        return ClaimState.DIED
    return ClaimState.RUNNING if liveness is StepLiveness.RUNNING else ClaimState.RETRYING


def decide(
    current: ClaimRecord | None,
    claimant: Holder,
    key: str,
    ttl: timedelta,
    liveness: StepLiveness,
    now: datetime,
) -> ClaimDecision:
    """Who gets `key`: `claimant`, asking now, or the current holder.

    Args:
        current: the stored claim (None: nobody claimed the key yet).
        claimant: the attempt asking.
        key: the claimed name.
        ttl: how long the claimant may hold it unfinished.
        liveness: what is known of the current holder's step (ignored without one).
        now: the coordinator's time.
    """
    if current is None:
        fresh = ClaimRecord(key, claimant, claimed_at=now, expires_at=now + ttl)
        return ClaimDecision(True, fresh, ClaimState.RUNNING, write=True)
    if current.holder.same_step(claimant):
        if current.done:
            return ClaimDecision(True, current, ClaimState.DONE, write=False, regained=True)
        renewed = replace(
            current, holder=claimant, expires_at=now + ttl, version=current.version + 1
        )
        return ClaimDecision(True, renewed, ClaimState.RUNNING, write=True, regained=True)
    state = state_of(current, liveness, now)
    if state is not ClaimState.DIED:
        return ClaimDecision(False, current, state, write=False)
    taken = ClaimRecord(
        key,
        claimant,
        claimed_at=now,
        expires_at=now + ttl,
        version=current.version + 1,
        taken_over_from=current.holder,
    )
    return ClaimDecision(True, taken, ClaimState.RUNNING, write=True, taken_over=current.holder)


def finish(
    current: ClaimRecord | None, claimant: Holder, result_json: str, now: datetime
) -> ClaimRecord:
    """The claim marked done by `claimant`'s step, with its result.

    Marking done twice keeps the first result (the side effect happened once). Raises
    ClaimNotHeldError when the claimant's step does not hold the claim.
    """
    if current is None:
        raise ClaimNotHeldError(f"claim {claimant_key(claimant)}: nobody holds this key")
    if not current.holder.same_step(claimant):
        h = current.holder
        raise ClaimNotHeldError(
            f"claim {current.key!r} is held by run {h.run_id!r} step {h.step!r}"
            f"{_index(h.map_index)} attempt {h.attempt}, not by this step: it was taken over "
            "after this step's TTL passed; check the external system before going on"
        )
    if current.done:
        return current
    return replace(current, done_at=now, result_json=result_json, version=current.version + 1)


def claimant_key(holder: Holder) -> str:
    return f"of run {holder.run_id!r} step {holder.step!r}{_index(holder.map_index)}"


def _index(map_index: int) -> str:
    return "" if map_index < 0 else f"[{map_index}]"


def check_key(key: object) -> str:
    """`key` if it can name a claim; InvalidClaimError naming what is wrong otherwise."""
    if not isinstance(key, str):
        raise InvalidClaimError(f"claim key must be a string, got {type(key).__name__}")
    if not key:
        raise InvalidClaimError("claim key must not be empty")
    why = key_problem("claim key", key)
    if why is not None:
        raise InvalidClaimError(why)
    return key


def check_ttl(ttl: object) -> timedelta:
    """`ttl` (seconds or a timedelta) as a timedelta; InvalidClaimError unless positive."""
    if isinstance(ttl, timedelta):
        seconds = ttl.total_seconds()
    elif isinstance(ttl, int | float) and not isinstance(ttl, bool):
        seconds = float(ttl)
    else:
        raise InvalidClaimError(
            f"claim ttl must be seconds (a number) or a timedelta, got {type(ttl).__name__}"
        )
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidClaimError(f"claim ttl must be positive and finite, got {ttl!r}")
    return timedelta(seconds=seconds)


def check_result(result_json: str) -> str:
    """`result_json` if it is a small, storable result; InvalidClaimError otherwise."""
    if len(result_json) > MAX_RESULT_CHARS:
        raise InvalidClaimError(
            f"claim result is {len(result_json)} characters of JSON; at most "
            f"{MAX_RESULT_CHARS} are allowed (store a reference, such as an id)"
        )
    if "\x00" in result_json or "\\u0000" in result_json:
        raise InvalidClaimError("claim result holds a NUL character, which cannot be stored")
    return result_json
