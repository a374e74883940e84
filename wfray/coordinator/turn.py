"""One loop turn: what it decided (the rows of its batch, and what to do once they are
committed), and what is left of it when the store refuses the rows of some runs.

The phases of a turn (intake, outcomes, timers, commands, fan-outs, dispatch, saga) fill a
`Turn`; the loop commits its batch, then acts on it (coordinator.py). When the database
refuses rows (poison.py), the runs they belong to are set aside: their memory goes back to
what the store holds (`Reconciler.reload`), and `Turn.set_aside` drops what the turn would
have done for them, handing back their outcomes to be applied again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from wfray.application.batch import Batch
from wfray.application.messages import CommandResult, Dispatch, Outcome
from wfray.coordinator.commands import Answers
from wfray.coordinator.intake import Answer
from wfray.domain.records import AttemptKey

NOT_RECORDED = "not recorded: the database refused the batch it was in; try again"


@dataclass(slots=True)
class Turn:
    now: datetime
    batch: Batch = field(default_factory=Batch)
    touched: set[str] = field(default_factory=set)  # runs the turn changed or looked at
    accepted: list[Answer] = field(default_factory=list)  # submissions, answered once committed
    outcomes: list[tuple[str, Outcome]] = field(default_factory=list)  # applied, by executor
    ended_kinds: set[str] = field(default_factory=set)  # of the attempts they end (chaos)
    silent: list[Outcome] = field(default_factory=list)  # attempts fallen silent: lost
    to_cancel: dict[str, list[AttemptKey]] = field(default_factory=dict)  # those, by executor
    answers: Answers = field(default_factory=list)  # to operator commands
    to_stop: list[AttemptKey] = field(default_factory=list)  # attempts of cancelled runs
    dispatches: list[Dispatch] = field(default_factory=list)
    log_waiters: list[asyncio.Future[bool]] = field(default_factory=list)
    aside: set[str] = field(default_factory=set)  # runs whose rows were not committed

    def set_aside(
        self, aside: set[str], status_of: Callable[[str], str]
    ) -> list[tuple[str, Outcome]]:
        """Drop what this turn would have done for the runs in `aside` (their rows were not
        committed); returns their outcomes, to be applied again in the next turn (a poisoned
        one then becomes the failure of its attempt), those of their silent attempts too
        (which are cancelled all the same). `status_of` tells a run's status as the store
        holds it, for the commands that were not recorded."""
        self.aside = aside
        self.dispatches = [d for d in self.dispatches if d.run_id not in aside]
        self.to_stop = [key for key in self.to_stop if key[0] not in aside]
        self.answers = [
            (future, CommandResult(a.run_id, False, status_of(a.run_id), NOT_RECORDED))
            if a.run_id in aside and a.applied
            else (future, a)
            for future, a in self.answers
        ]
        executor_of = {key: pool for pool, keys in self.to_cancel.items() for key in keys}
        silent = [(executor_of[o.attempt_key], o) for o in self.silent if o.run_id in aside]
        return [(pool, o) for pool, o in self.outcomes if o.run_id in aside] + silent


def acks_of(outcomes: list[tuple[str, Outcome]], aside: set[str]) -> dict[str, int]:
    """How far each executor's outbox may be acknowledged: past the outcomes applied, never
    past one of a run set aside (acknowledging is cumulative), so that the executor keeps it
    until a later turn commits it."""
    acks: dict[str, int] = {}
    kept: dict[str, int] = {}  # per executor, the first outcome it must keep
    for pool, outcome in outcomes:
        if outcome.run_id in aside:
            kept[pool] = min(kept.get(pool, outcome.seq), outcome.seq)
        else:
            acks[pool] = max(acks.get(pool, 0), outcome.seq)
    for pool, seq in kept.items():
        if pool in acks:
            acks[pool] = min(acks[pool], seq - 1)
    return acks
