"""Outcomes and dispatches as sealed bytes: pickled once where they are made, opened once
where they are used.

An executor only stores and forwards what its workers return, so it never unpickles an
outcome, and a worker gets its dispatch as bytes that Ray passes through without its own
(slower, per-object) serialisation. All parties are processes of one wfray installation.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass

from wfray.application.messages import Dispatch, Drained, ExecutorSnapshot, Outcome
from wfray.domain.records import AttemptKey

Sealed = bytes


def seal(message: Outcome | Dispatch) -> Sealed:
    return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)


def open_outcome(data: Sealed, seq: int = 0) -> Outcome:
    outcome: Outcome = pickle.loads(data)
    outcome.seq = seq
    return outcome


def open_dispatch(data: Sealed) -> Dispatch:
    dispatch: Dispatch = pickle.loads(data)
    return dispatch


@dataclass(slots=True)
class SealedBatch:
    """Outcomes handed out by an outbox: (seq, sealed outcome) pairs."""

    incarnation: str
    items: list[tuple[int, Sealed]]
    held: int = 0  # outcomes the outbox holds, not yet acknowledged (these among them)

    def opened(self) -> Drained:
        return Drained(self.incarnation, _open_all(self.items), self.held)


@dataclass(slots=True)
class SealedSnapshot:
    """What an executor runs and the sealed outcomes it still holds."""

    incarnation: str
    in_flight: list[AttemptKey]
    items: list[tuple[int, Sealed]]

    def opened(self) -> ExecutorSnapshot:
        return ExecutorSnapshot(self.incarnation, self.in_flight, _open_all(self.items))


def _open_all(items: list[tuple[int, Sealed]]) -> list[Outcome]:
    return [open_outcome(data, seq) for seq, data in items]
