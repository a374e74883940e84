"""No poison pill: a commit refused for what it holds never takes the coordinator down.

When the database refuses a turn's batch for its data (not an outage), the rows it refuses
are found by bisection (the store's `rejected_rows`), every row of the runs they belong to
is set aside, and the rest of the batch commits in the same turn. The outcomes that made
the refused rows are remembered as poisoned. Memory ran ahead of the store for the runs set
aside only: those runs are loaded again as the store holds them (`Reconciler.reload`), the
others stay as they are, and the outcomes of the runs set aside are applied again in the
next turn (turn.py): a poisoned one is then recorded as a failure of its attempt saying why
it could not be stored, and its run goes on by its retry policy.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from wfray.application.batch import Batch, RejectedRow
from wfray.application.messages import Outcome, SubmitResult
from wfray.application.metrics import Metrics
from wfray.application.ports import Clock
from wfray.application.quarantine import QUARANTINED, died_applying
from wfray.application.quarantine import REFUSED as REFUSED_STATUS
from wfray.application.storable import clean_text, not_stored
from wfray.coordinator.durable import DurableStore
from wfray.coordinator.heartbeats import HeartbeatWatch
from wfray.coordinator.intake import Answer
from wfray.coordinator.reconciler import Inbox, Reconciler
from wfray.coordinator.settings import CoordinatorSettings
from wfray.coordinator.state import CoordinatorState
from wfray.domain.errors import StaleWriteError, StoreRejectedError
from wfray.domain.records import AttemptKey, WorkerIdentity

log = logging.getLogger("wfray.coordinator")

REFUSED = (StoreRejectedError, StaleWriteError)
MAX_ROUNDS = 4  # of isolating refused rows in one turn (each round sets runs aside)


@dataclass(eq=False)
class PoisonGuard:
    state: CoordinatorState
    durable: DurableStore
    reconciler: Reconciler
    heartbeats: HeartbeatWatch
    clock: Clock
    settings: CoordinatorSettings
    metrics: Metrics
    inbox: Inbox
    # outcome -> why it could not be stored
    poisoned: dict[AttemptKey, str] = field(default_factory=dict, init=False)
    # outcomes with a log line refused
    refused_lines: set[AttemptKey] = field(default_factory=set, init=False)
    # undelivered at this start, not yet applied
    noted: set[AttemptKey] = field(default_factory=set, init=False)
    isolations: int = field(default=0, init=False)

    def replace_poisoned(self, outcome: Outcome) -> None:
        """A poisoned outcome delivered again becomes the failure of its attempt."""
        why = self.poisoned.pop(outcome.attempt_key, None)
        if why is not None:
            # keep nothing it brought but its key, its times and its lines (which go
            # too when one of them was refused): any of it may be what was refused
            not_stored(outcome, why)
            outcome.worker = WorkerIdentity()
            outcome.progress_json = None
            if outcome.attempt_key in self.refused_lines:
                self.refused_lines.discard(outcome.attempt_key)
                outcome.logs = []

    async def commit_around(
        self,
        batch: Batch,
        error: Exception,
        outcomes: Sequence[tuple[str, Outcome]],
        accepted: list[Answer],
    ) -> set[str]:
        """Commit what can be of a refused batch; returns the runs set aside."""
        durable = self.durable
        self.isolations += 1
        aside: set[str] = set()
        for _ in range(MAX_ROUNDS):
            rejected = await durable.call(durable.store.rejected_rows, batch)
            runs = {r.run_id for r in rejected if r.run_id}
            if not rejected:  # refused as a whole, no row on its own: set every run aside
                runs = _runs_of(batch)
            log.error(
                "the database refused %d rows of a batch (%s); %d runs set aside, the rest commits",
                len(rejected),
                "; ".join(sorted({r.reason for r in rejected}))[:500] or str(error),
                len(runs),
            )
            blamed = self._blame(rejected, runs, outcomes, accepted)
            aside |= runs
            lines = {r.key[-1] for r in rejected if r.what == "log"}
            batch = batch.without(aside, lines)
            try:
                await durable.call(durable.store.commit, batch)
            except REFUSED as again:
                error = again
                continue
            await self._record(blamed, REFUSED_STATUS)
            return aside
        raise error

    async def _record(self, keys: list[AttemptKey], status: str) -> None:
        """Keep the outcomes set aside, and why, where operators look (and count them)."""
        if not keys:
            return
        items = [(key, status, clean_text(self.poisoned[key], 4096)) for key in keys]
        epoch, now = self.reconciler.epoch, self.clock.now()
        await self.durable.call(self.durable.store.quarantine, items, epoch, now)
        for _ in keys:
            self.metrics.outcome_quarantined(status)

    async def quarantine_repeats(self) -> None:
        """At a start: outcomes the executors still hold for attempts still running in the
        store are noted; one that coordinators went down while applying, at as many starts as
        the settings allow, is quarantined, so that an outcome that stops the coordinator
        cannot do it for ever. A coordinator killed before it began applying an outcome (by
        an operator, with its node) counts nothing against it."""
        keys = list(dict.fromkeys(o.attempt_key for _, o in self.inbox))
        keys = [key for key in keys if key in self.state.attempts]
        epoch, now = self.reconciler.epoch, self.clock.now()
        deaths = await self.durable.call(self.durable.store.note_undelivered, keys, epoch, now)
        limit = self.settings.quarantine_after_deaths
        repeats = [key for key, count in deaths.items() if count >= limit]
        for key in repeats:
            why = died_applying(deaths[key])
            self.poisoned.setdefault(key, why)
            log.error("outcome of attempt %s quarantined: %s", key, why)
        self.noted = set(keys) - set(repeats)
        await self._record(repeats, QUARANTINED)

    async def applying(self, outcomes: Sequence[tuple[str, Outcome]]) -> None:
        """Before a turn applies outcomes noted at the start: say so in the store, so that the
        next start knows this coordinator went down while applying them (one write per
        start, in the first turn or two)."""
        if not self.noted:
            return
        keys = [o.attempt_key for _, o in outcomes if o.attempt_key in self.noted]
        if not keys:
            return
        epoch, now = self.reconciler.epoch, self.clock.now()
        await self.durable.call(self.durable.store.note_applying, keys, epoch, now)
        self.noted.difference_update(keys)

    def _blame(
        self,
        rejected: list[RejectedRow],
        runs: set[str],
        outcomes: Sequence[tuple[str, Outcome]],
        accepted: list[Answer],
    ) -> list[AttemptKey]:
        """Which outcomes (and submissions) made the refused rows, and why."""
        blamed: list[AttemptKey] = []
        by_task = {r.key[:3]: r.reason for r in rejected if r.what in ("task", "attempt", "log")}
        self.refused_lines |= {r.key[:4] for r in rejected if r.what == "log"}
        by_run = {r.run_id: r.reason for r in rejected if r.what == "run"}
        whole = "the database refused the batch it was in"
        for _, outcome in outcomes:
            if outcome.run_id not in runs:
                continue
            key = outcome.attempt_key
            # a refused run row may hold what any outcome of the run brought (its result)
            why = by_task.get(key[:3]) or by_run.get(outcome.run_id)
            if why is None and not rejected:
                why = whole
            if why is not None and key not in self.poisoned:
                self.poisoned[key] = f"the database refused it: {why}"
                blamed.append(key)
        for i, (future, result) in enumerate(accepted):
            if result.created and result.run_id in runs:
                why = by_run.get(result.run_id, whole)
                accepted[i] = (
                    future,
                    SubmitResult(
                        result.run_id,
                        False,
                        f"the run could not be stored: {why}",
                        StoreRejectedError.code,
                    ),
                )
        return blamed


def _runs_of(batch: Batch) -> set[str]:
    return {
        *batch.new_runs,
        *batch.run_updates,
        *(k[0] for k in batch.new_tasks),
        *(k[0] for k in batch.task_updates),
        *(k[0] for k in batch.new_attempts),
        *(k[0] for k in batch.attempt_updates),
    }
