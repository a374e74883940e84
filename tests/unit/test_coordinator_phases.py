"""The coordinator's phases on their own: functions of (state, inputs, now) that fill a batch,
change the state and return what to send, tested with a fixed clock and no event loop.

What the loop does with them (commit, then act) is tested in test_coordinator_inline.py.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from wfray.adapters.memory.store import InMemoryRunStore
from wfray.application.batch import Batch
from wfray.application.messages import CommandResult, Outcome
from wfray.coordinator.compensator import Compensator
from wfray.coordinator.dispatcher import Dispatcher, Launcher
from wfray.coordinator.durable import DurableStore
from wfray.coordinator.heartbeats import START_GRACE_S, HeartbeatWatch
from wfray.coordinator.loading import RunLoader
from wfray.coordinator.outcomes import OutcomeApplier
from wfray.coordinator.settings import CoordinatorSettings
from wfray.coordinator.state import CoordinatorState
from wfray.coordinator.timers import TimerKind, TimerQueue
from wfray.coordinator.turn import NOT_RECORDED, Turn, acks_of
from wfray.domain import engine
from wfray.domain.policy import RetryPolicy
from wfray.domain.queueing import QueueManager
from wfray.domain.records import RunRecord, TaskRecord
from wfray.domain.status import AttemptStatus, RunStatus, TaskStatus
from wfray.sdk.definition import Workflow

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
RETRY = RetryPolicy(max_attempts=3, initial_delay_s=60, backoff=2.0, jitter=0)

flow = Workflow("phases", retry=RETRY)


@flow.step(pool="io", heartbeat_timeout_s=30)
def fetch() -> int:
    return 1


@flow.step
def total(fetch: int) -> int:
    return fetch


class TwoIoExecutors:
    """Placement over two io executors: the one with fewer attempts running takes the next."""

    def __init__(self, state: CoordinatorState) -> None:
        self.state = state

    def executor_for(self, pool: str) -> str:
        shards = ["io.0", "io.1"] if pool == "io" else [pool]
        return min(shards, key=self.state.running_on.__getitem__)

    def incarnation(self, executor: str) -> str:
        return f"{executor}-1"


class NothingPoisoned:
    def replace_poisoned(self, outcome: Outcome) -> None:
        pass


class Phases:
    def __init__(self) -> None:
        settings = CoordinatorSettings(default_retry=RETRY)
        self.state = CoordinatorState(settings)
        self.heartbeats = HeartbeatWatch(self.state)
        launcher = Launcher(self.state, TwoIoExecutors(self.state), self.heartbeats, settings)
        durable = DurableStore(InMemoryRunStore(), settings.commit_retry_max_s)
        self.wake = asyncio.Event()  # nothing waits on it here
        self.dispatcher = Dispatcher(
            self.state, launcher, RunLoader(self.state, durable), durable, self.wake
        )
        compensator = Compensator(self.state, launcher, settings.default_retry)
        self.outcomes = OutcomeApplier(self.state, settings, compensator, NothingPoisoned())

    def start(self, run_id: str) -> None:
        run = RunRecord(
            run_id=run_id,
            workflow=flow.name,
            version=flow.schema.version,
            status=RunStatus.QUEUED,
            input_json="null",
            created_at=NOW,
        )
        state = self.state.adopt(run, [], flow.schema)
        self.state.record(state, engine.start_run(state, NOW), Batch())


def test_dispatch_places_attempts_records_them_and_watches_their_heartbeats() -> None:
    phases = Phases()
    phases.start("r1")
    phases.start("r2")
    batch = Batch()
    touched: set[str] = set()

    dispatches = phases.dispatcher.dispatch(batch, NOW, touched)

    assert sorted(d.run_id for d in dispatches) == ["r1", "r2"]
    assert all(d.step == "fetch" and d.attempt == 1 for d in dispatches)
    assert touched == {"r1", "r2"}
    # one fact, one place: each attempt is counted on the executor it was placed on
    assert phases.state.running_on == Counter({"io.0": 1, "io.1": 1})
    assert {a.executor for a in phases.state.attempts.values()} == {"io.0", "io.1"}
    assert len(batch.new_attempts) == 2 and phases.state.queued_count == 0
    # its worker has START_GRACE_S to begin it before the 30 s of silence count
    assert phases.heartbeats.next_due() == NOW + timedelta(seconds=30 + START_GRACE_S)


def test_a_step_that_began_has_its_own_timeout_and_one_that_never_began_the_grace() -> None:
    phases = Phases()
    phases.start("began")
    phases.start("never")
    by_run = {d.run_id: d for d in phases.dispatcher.dispatch(Batch(), NOW, set())}
    started_at = NOW + timedelta(seconds=20)  # a slow worker start
    phases.heartbeats.beat(by_run["began"].attempt_key, None, started_at)  # its start beat
    phases.heartbeats.apply(Batch())

    lost, _ = phases.heartbeats.expire(started_at + timedelta(seconds=29))
    assert lost == []  # the first 20 s were its worker starting, not silence
    lost, stop = phases.heartbeats.expire(started_at + timedelta(seconds=31))
    assert [o.run_id for o in lost] == ["began"]
    assert "no heartbeat for 30s" in (lost[0].error_message or "")
    assert sum(len(keys) for keys in stop.values()) == 1
    phases.outcomes.apply(lost[0], Batch(), started_at + timedelta(seconds=31), set())

    lost, _ = phases.heartbeats.expire(NOW + timedelta(seconds=30 + START_GRACE_S - 1))
    assert lost == []  # never began: given the grace
    lost, _ = phases.heartbeats.expire(NOW + timedelta(seconds=30 + START_GRACE_S))
    assert [o.run_id for o in lost] == ["never"]
    assert "(last: never)" in (lost[0].error_message or "")


def test_a_failed_attempt_sets_a_retry_timer_and_frees_its_executor() -> None:
    phases = Phases()
    phases.start("r1")
    (dispatch,) = phases.dispatcher.dispatch(Batch(), NOW, set())
    failed = Outcome.ended(dispatch.attempt_key, AttemptStatus.FAILED, "ValueError", "boom", NOW)
    failed.finished_at = NOW
    batch = Batch()

    phases.outcomes.apply(failed, batch, NOW, set())

    task = phases.state.runs["r1"].task("fetch")
    assert task.status is TaskStatus.RETRYING
    assert phases.state.attempts == {} and phases.state.running_on["io.0"] == 0
    assert phases.state.timers.next_at() == NOW + timedelta(seconds=60)
    assert ("r1", "fetch", -1, 1) in batch.attempt_updates
    # the same outcome delivered twice (a replay after a restart) changes nothing
    phases.outcomes.apply(failed, Batch(), NOW, set())
    assert len(phases.state.timers) == 1


def test_a_succeeded_attempt_queues_what_follows() -> None:
    phases = Phases()
    phases.start("r1")
    (dispatch,) = phases.dispatcher.dispatch(Batch(), NOW, set())
    done = Outcome.ended(dispatch.attempt_key, AttemptStatus.SUCCEEDED, "", "", NOW)
    done.error_type = done.error_message = None
    done.result_json = "1"

    phases.outcomes.apply(done, Batch(), NOW, set())

    (next_dispatch,) = phases.dispatcher.dispatch(Batch(), NOW, set())
    assert next_dispatch.step == "total" and next_dispatch.pool == "cpu"
    assert phases.state.running_on == Counter({"io.0": 0, "cpu": 1})


def test_timers_come_due_in_order_and_say_what_they_are() -> None:
    timers = TimerQueue()
    phases = Phases()
    phases.start("r1")
    task = phases.state.runs["r1"].task("fetch")
    timers.deadline_at(NOW + timedelta(seconds=20), "r1")
    timers.retry_at(NOW + timedelta(seconds=10), task)
    timers.retry_at(NOW + timedelta(seconds=10), task)  # a tie keeps its order

    assert list(timers.due(NOW)) == []
    due = list(timers.due(NOW + timedelta(seconds=15)))
    assert [(t.kind, t.step) for t in due] == [(TimerKind.RETRY, "fetch")] * 2
    (deadline,) = timers.due(NOW + timedelta(seconds=20))
    assert deadline.kind is TimerKind.DEADLINE and deadline.run_id == "r1"
    assert len(timers) == 0 and timers.next_at() is None


def test_what_a_turn_leaves_for_the_runs_set_aside() -> None:
    """Dispatches and stops of those runs are dropped, their outcomes (and their silent
    attempts') handed back, commands on them answered as not recorded, acknowledgements
    kept below their outcomes."""
    keep = Outcome("kept", "s", -1, 1, AttemptStatus.SUCCEEDED, NOW, NOW, seq=4)
    back = Outcome("aside", "s", -1, 1, AttemptStatus.SUCCEEDED, NOW, NOW, seq=3)
    turn = Turn(NOW, outcomes=[("io", keep), ("io", back), ("cpu", back)])
    turn.to_stop = [("aside", "s", -1, 1), ("kept", "s", -1, 2)]
    lost = Outcome("aside", "t", -1, 1, AttemptStatus.LOST, NOW, NOW)
    turn.silent, turn.to_cancel = [lost], {"io.1": [("aside", "t", -1, 1)]}
    loop = asyncio.new_event_loop()
    try:
        future: asyncio.Future[Any] = loop.create_future()
        turn.answers = [(future, CommandResult("aside", True, "cancelled", "cancelled"))]
        returned = turn.set_aside({"aside"}, lambda run_id: "running")
    finally:
        loop.close()

    assert returned == [("io", back), ("cpu", back), ("io.1", lost)]
    assert turn.to_stop == [("kept", "s", -1, 2)]
    assert turn.to_cancel == {"io.1": [("aside", "t", -1, 1)]}  # it is lost all the same
    assert [a for _, a in turn.answers] == [CommandResult("aside", False, "running", NOT_RECORDED)]
    assert acks_of(turn.outcomes, turn.aside) == {"io": 2}  # not past seq 3, held back
    assert acks_of(turn.outcomes, set()) == {"io": 4, "cpu": 3}


def test_the_queues_let_go_of_the_runs_set_aside_and_keep_the_others_in_order() -> None:
    manager = QueueManager([], {"cpu": 10, "io": 10})
    tasks = [
        TaskRecord(f"r{n % 3}", f"s{n}", -1, TaskStatus.QUEUED, "cpu", NOW, seq=n)
        for n in range(1, 10)
    ]
    for task in tasks:
        manager.push(task)
    manager.drop({"r1"})

    assert manager.held == 6 and not manager.holds(("r1", "s1", -1))
    assert [t.seq for t in manager.select(NOW)] == [2, 3, 5, 6, 8, 9]


def test_the_timers_of_the_runs_set_aside_are_dropped_and_the_rest_come_due_in_order() -> None:
    timers = TimerQueue()
    for n in range(6):
        timers.deadline_at(NOW + timedelta(seconds=10 - n), f"r{n % 2}")
    timers.drop({"r0"})

    due = list(timers.due(NOW + timedelta(seconds=60)))
    assert [(t.run_id, t.at) for t in due] == [
        ("r1", NOW + timedelta(seconds=s)) for s in (5, 7, 9)
    ]
