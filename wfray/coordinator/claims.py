"""The coordinator's side of claims: read the claim, ask the domain, write compare-and-set.

Steps ask through StepServices (like `next_number`); the coordinator is the one writer.
Each claim call is its own short transaction and is answered only after it committed, so
a claim a step was told it holds survives any restart. Calls are serialised by one lock
(claims are taken before side effects, a few per step, not on the hot path), and every
write is still compare-and-set against the version read, which fences out a stale
coordinator sharing the database.

Whether a holder died is read from what the coordinator knows of its step: the run in
memory if it is live, the store otherwise (domain/claims.py has the rules).
"""

from __future__ import annotations

import asyncio

from wfray.application.ports import Clock
from wfray.application.storable import problem
from wfray.application.views import ClaimView, claim_view
from wfray.coordinator.durable import DurableStore
from wfray.coordinator.state import CoordinatorState
from wfray.domain.claims import (
    ClaimRecord,
    ClaimState,
    Holder,
    StepLiveness,
    check_key,
    check_result,
    check_ttl,
    decide,
    finish,
    state_of,
)
from wfray.domain.errors import InvalidClaimError, StoreUnavailableError
from wfray.domain.records import AttemptKey, TaskRecord
from wfray.domain.status import TaskStatus

_WAITING = frozenset({TaskStatus.PENDING, TaskStatus.QUEUED, TaskStatus.RETRYING})
_MAX_RACES = 20  # lost compare-and-sets in a row: another coordinator keeps writing


class ClaimDesk:
    """Claims as the coordinator answers them."""

    def __init__(self, state: CoordinatorState, durable: DurableStore, clock: Clock) -> None:
        self.state = state
        self.durable = durable
        self.clock = clock
        self._lock = asyncio.Lock()

    async def claim(self, key: str, attempt: AttemptKey, ttl_s: float) -> ClaimView:
        """Take `key` for `attempt`, get it back, take it over, or learn who holds it."""
        key = check_key(key)
        ttl = check_ttl(ttl_s)
        claimant = Holder(*attempt)
        async with self._lock:
            for _ in range(_MAX_RACES):
                current = await self._get(key)
                liveness = StepLiveness.RUNNING
                if current and not current.done and not current.holder.same_step(claimant):
                    liveness = await self.liveness(current.holder)
                decision = decide(current, claimant, key, ttl, liveness, self.clock.now())
                if decision.write and not await self._put(decision.record, current):
                    continue
                return claim_view(
                    decision.record, decision.acquired, decision.state, decision.regained
                )
        raise StoreUnavailableError(f"claim {key!r}: other writers kept changing it")

    async def done(self, key: str, attempt: AttemptKey, result_json: str) -> ClaimView:
        """Mark `key` done by `attempt`'s step with a small result (JSON)."""
        key = check_key(key)
        why = problem(result_json)
        if why is not None:
            raise InvalidClaimError(f"claim result cannot be stored: {why}")
        check_result(result_json)
        claimant = Holder(*attempt)
        async with self._lock:
            for _ in range(_MAX_RACES):
                current = await self._get(key)
                record = finish(current, claimant, result_json, self.clock.now())
                if record is current or await self._put(record, current):
                    return claim_view(record, True, ClaimState.DONE, regained=True)
        raise StoreUnavailableError(f"claim {key!r}: other writers kept changing it")

    async def read(self, key: str, asker: AttemptKey | None = None) -> ClaimView | None:
        """The claim on `key` and its holder's state, without taking it (None: unclaimed)."""
        key = check_key(key)
        current = await self._get(key)
        if current is None:
            return None
        liveness = StepLiveness.RUNNING if current.done else await self.liveness(current.holder)
        mine = asker is not None and current.holder.same_step(Holder(*asker))
        return claim_view(current, mine, state_of(current, liveness, self.clock.now()))

    async def of_runs(self, run_ids: list[str]) -> list[ClaimView]:
        """The claims these runs hold, with their holders' states."""
        found = await self.durable.call(self.durable.store.claims_of, run_ids)
        now = self.clock.now()
        views = []
        for record in found:
            live = StepLiveness.RUNNING if record.done else await self.liveness(record.holder)
            views.append(claim_view(record, False, state_of(record, live, now)))
        return views

    async def liveness(self, holder: Holder) -> StepLiveness:
        """What the coordinator knows of the holder's step: its run in memory is ahead of
        the store by at most one uncommitted turn, whose decisions a replay repeats."""
        state = self.state.runs.get(holder.run_id)
        if state is not None:
            return _liveness(state.tasks.get((holder.step, holder.map_index)))
        # its one task, by the primary key: a run with a fan-out of a million items is not
        # read whole for each claim that one of its steps held
        after = (holder.step, holder.map_index - 1)  # nothing lies between the two
        page = await self.durable.call(self.durable.store.page_tasks, holder.run_id, after, 1)
        found = [t for t in page if (t.step, t.map_index) == (holder.step, holder.map_index)]
        return _liveness(found[0] if found else None)

    async def _get(self, key: str) -> ClaimRecord | None:
        return await self.durable.call(self.durable.store.get_claim, key)

    async def _put(self, record: ClaimRecord, current: ClaimRecord | None) -> bool:
        expected = None if current is None else current.version
        if await self.durable.call(self.durable.store.put_claim, record, expected):
            return True
        # a write replayed after an ambiguous failure (the connection died around COMMIT)
        # finds itself stored: that is a success, not a race
        return await self._get(record.key) == record


def _liveness(task: TaskRecord | None) -> StepLiveness:
    if task is None:
        return StepLiveness.ENDED
    if task.status is TaskStatus.RUNNING:
        return StepLiveness.RUNNING
    return StepLiveness.WAITING if task.status in _WAITING else StepLiveness.ENDED
