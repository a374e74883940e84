"""The StepExecutor contract, run on every executor: the inline one (memory) and the Ray
executor actors of the cpu and io pools, driven through the port as the coordinator drives
them (wfray.adapters.ray.actors.ActorExecutor over actors made by `executor_actors`).

What the port promises (application/ports.py, outbox.py, messages.py): a dispatched attempt
ends in one outcome (result or error, its log lines, its worker and times); outcomes carry
increasing sequence numbers; a drain hands each out once and waits for the next one, no
longer than asked; a snapshot lists the attempts in flight and every outcome not yet
acknowledged; an acknowledged outcome is gone; a cancelled attempt ends as cancelled, one
past its timeout as timed out; dispatches of an earlier coordinator (a lower epoch than one
already seen) are refused; an executor that went down comes back empty under a new
incarnation, and works as before.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.fixtures.contract_steps import STEPS
from wfray.adapters.blob import FsBlobStore
from wfray.adapters.memory import InlineExecutor
from wfray.application.messages import Dispatch, ExecutorSnapshot, Outcome
from wfray.application.ports import StepExecutor
from wfray.domain.status import AttemptStatus
from wfray.worker.step_runner import RunnerSettings

pytestmark = pytest.mark.timeout(120)

AttemptKey = tuple[str, str, int, int]
T = TypeVar("T")
CALL_S = 30.0  # any one call on the port; an executor slower than this is broken
OUTCOME_S = 30.0  # an attempt of a trivial step ends within this, on a loaded machine too
BLOB_THRESHOLD = 1024
KINDS = ["inline", *(pytest.param(kind, marks=pytest.mark.ray) for kind in ("ray-cpu", "ray-io"))]
_epochs = itertools.count(1)


@dataclass
class Subject:
    """One executor under test, with what the suite needs beside the port."""

    executor: StepExecutor
    pool: str
    blob_root: str
    crash: Callable[[], Awaitable[None]]  # the executor's process goes down and comes back
    gates: Path
    epoch: int = field(default_factory=lambda: 100 * next(_epochs))
    seen: list[Outcome] = field(default_factory=list)  # every outcome drained, in order

    def attempt(
        self, fn: str, *, attempt: int = 1, timeout_s: float | None = None, **args: Any
    ) -> Dispatch:
        return Dispatch(
            run_id=f"r-{uuid.uuid4().hex[:12]}",
            workflow="contract",
            step=fn,
            map_index=-1,
            attempt=attempt,
            fn=f"{STEPS}:{fn}",
            args={name: {"json": json.dumps(value)} for name, value in args.items()},
            pool=self.pool,
            timeout_s=timeout_s,
        )

    def gate(self) -> Path:
        return self.gates / f"gate-{uuid.uuid4().hex[:8]}"

    async def dispatch(self, *dispatches: Dispatch, epoch: int | None = None) -> None:
        await bounded(
            self.executor.dispatch(list(dispatches), self.epoch if epoch is None else epoch)
        )

    async def snapshot(self, ack: int = 0) -> ExecutorSnapshot:
        return await bounded(self.executor.snapshot(ack, self.epoch))

    async def drain(self, ack: int = 0, wait_s: float = 0.5) -> list[Outcome]:
        drained = await bounded(self.executor.drain(ack, wait_s, self.epoch))
        self.seen.extend(drained.outcomes)
        return drained.outcomes

    async def outcomes(self, *dispatches: Dispatch, ack: int = 0) -> dict[AttemptKey, Outcome]:
        """Drain until every one of these attempts has its outcome."""
        wanted = {d.attempt_key for d in dispatches}
        found: dict[AttemptKey, Outcome] = {}
        deadline = time.monotonic() + OUTCOME_S
        while not wanted <= set(found):
            assert time.monotonic() < deadline, f"no outcome for {wanted - set(found)}"
            found.update(
                (o.attempt_key, o) for o in await self.drain(ack) if o.attempt_key in wanted
            )
        return found

    async def outcome(self, dispatch: Dispatch) -> Outcome:
        return (await self.outcomes(dispatch))[dispatch.attempt_key]

    async def until_in_flight(self, dispatch: Dispatch, present: bool = True) -> None:
        deadline = time.monotonic() + OUTCOME_S
        while (dispatch.attempt_key in (await self.snapshot()).in_flight) is not present:
            assert time.monotonic() < deadline, f"{dispatch.attempt_key} in flight: {not present}"
            await asyncio.sleep(0.02)


async def bounded(call: Awaitable[T], timeout_s: float = CALL_S) -> T:
    return await asyncio.wait_for(call, timeout_s)


def run(scenario: Callable[[], Coroutine[Any, Any, T]], timeout_s: float = 100) -> T:
    return asyncio.run(asyncio.wait_for(scenario(), timeout_s))


# -- the executors ----------------------------------------------------------------------------


@dataclass
class RayExecutors:
    handles: dict[str, Any]
    blob_root: str


@pytest.fixture(scope="module")
def ray_executors(
    ray_session: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RayExecutors]:
    """The cpu and io executor actors, made as the coordinator's host makes them."""
    import ray

    from wfray.adapters.ray.actors import executor_actors
    from wfray.config import load_settings

    settings = load_settings(
        data_dir=str(tmp_path_factory.mktemp("executors")),
        namespace=f"wfray-contract-{uuid.uuid4().hex[:8]}",
        blob_threshold_bytes=BLOB_THRESHOLD,
        io_executors=1,
    )
    handles = executor_actors(settings)
    try:
        yield RayExecutors(handles, settings.blob_root)
    finally:
        for handle in handles.values():
            ray.kill(handle, no_restart=True)


async def settle(executor: StepExecutor, epoch: int) -> None:
    """Leave a shared executor as a fresh one: nothing in flight, nothing unacknowledged."""
    snapshot = await bounded(executor.snapshot(0, epoch))
    if snapshot.in_flight:
        await bounded(executor.cancel(snapshot.in_flight))
    deadline = time.monotonic() + OUTCOME_S
    while snapshot.in_flight:
        assert time.monotonic() < deadline, f"still in flight: {snapshot.in_flight}"
        await asyncio.sleep(0.05)
        snapshot = await bounded(executor.snapshot(0, epoch))
    await bounded(executor.snapshot(max((o.seq for o in snapshot.outcomes), default=0), epoch))


def restart_actor(executor: StepExecutor, handle: Any) -> Callable[[], Awaitable[None]]:
    async def crash() -> None:
        import ray

        before = (await bounded(executor.snapshot(0, 0))).incarnation
        ray.kill(handle, no_restart=False)  # Ray starts it again (max_restarts=-1)
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline, "the executor actor did not come back"
            try:
                if (await bounded(executor.snapshot(0, 0), 5)).incarnation != before:
                    return
            except (ray.exceptions.RayError, TimeoutError):
                pass  # still down or restarting
            await asyncio.sleep(0.1)

    return crash


@pytest.fixture(params=KINDS)
def subject(request: pytest.FixtureRequest, tmp_path: Path) -> Subject:
    if request.param == "inline":
        blob_root = str(tmp_path / "blobs")
        inline = InlineExecutor(
            blobs=FsBlobStore(blob_root),
            settings=RunnerSettings(blob_threshold_bytes=BLOB_THRESHOLD),
            reporter=lambda pool, outcome: None,  # a coordinator that got the report, or not
        )

        async def crash() -> None:
            inline.crash()

        return Subject(inline, "io", blob_root, crash, tmp_path)
    from wfray.adapters.ray.actors import ActorExecutor

    executors: RayExecutors = request.getfixturevalue("ray_executors")
    pool = request.param.removeprefix("ray-")
    handle = executors.handles[pool]
    actor = ActorExecutor(handle)
    made = Subject(actor, pool, executors.blob_root, restart_actor(actor, handle), tmp_path)
    run(lambda: settle(actor, made.epoch))
    return made


# -- outcomes ---------------------------------------------------------------------------------


def test_an_attempt_ends_in_one_outcome_with_its_result_worker_and_times(subject: Subject) -> None:
    async def scenario() -> None:
        sent = subject.attempt("echo", value={"a": [1, 2], "b": "żółw"})
        await subject.dispatch(sent)
        outcome = await subject.outcome(sent)
        assert outcome.status is AttemptStatus.SUCCEEDED
        assert json.loads(outcome.result_json or "null") == {"a": [1, 2], "b": "żółw"}
        assert outcome.result_ref is None and outcome.error_type is None
        assert outcome.started_at is not None and outcome.started_at <= outcome.finished_at
        assert outcome.worker.pid > 0 and outcome.worker.host and outcome.worker.worker_id
        assert outcome.seq > 0
        # one outcome per attempt: nothing more arrives for it
        assert await subject.drain(wait_s=0.3) == []

    run(scenario)


@pytest.mark.parametrize(
    ("fn", "error_type", "retryable"),
    [
        ("fail", "builtins.ValueError", True),
        ("refuse", "wfray.domain.errors.NonRetryableError", False),
    ],
)
def test_a_step_that_raises_ends_in_a_failed_outcome_saying_if_it_may_be_retried(
    subject: Subject, fn: str, error_type: str, retryable: bool
) -> None:
    async def scenario() -> None:
        sent = subject.attempt(fn, message="the ledger is closed")
        await subject.dispatch(sent)
        outcome = await subject.outcome(sent)
        assert outcome.status is AttemptStatus.FAILED
        assert (outcome.error_type, outcome.error_message) == (error_type, "the ledger is closed")
        assert outcome.retryable is retryable
        assert "the ledger is closed" in (outcome.traceback or "")
        assert outcome.result_json is None and outcome.result_ref is None

    run(scenario)


def test_a_step_that_cannot_be_imported_fails_for_good(subject: Subject) -> None:
    async def scenario() -> None:
        sent = subject.attempt("not_a_step")
        await subject.dispatch(sent)
        outcome = await subject.outcome(sent)
        assert outcome.status is AttemptStatus.FAILED
        assert (outcome.error_type or "").endswith("StepImportError")
        assert "not_a_step" in (outcome.error_message or "") and outcome.retryable is False

    run(scenario)


def test_a_large_result_goes_to_the_blob_store_and_its_outcome_holds_the_reference(
    subject: Subject,
) -> None:
    async def scenario() -> None:
        text = subject.attempt("text_of", size=4 * BLOB_THRESHOLD)
        listed = subject.attempt("numbers", count=500)
        small = subject.attempt("text_of", size=10)
        found = await dispatched(subject, text, listed, small)
        blobs = FsBlobStore(subject.blob_root)
        big = found[text.attempt_key]
        assert big.result_json is None and big.result_ref is not None
        assert json.loads(blobs.get(big.result_ref)) == "x" * 4 * BLOB_THRESHOLD
        items = found[listed.attempt_key]
        assert items.result_ref is not None and items.result_items == 500
        assert json.loads(blobs.get_item(items.result_ref, 321)) == "item 321"
        assert found[small.attempt_key].result_json == '"xxxxxxxxxx"'

    run(scenario)


async def dispatched(subject: Subject, *sent: Dispatch) -> dict[AttemptKey, Outcome]:
    await subject.dispatch(*sent)
    found = await subject.outcomes(*sent)
    assert {o.status for o in found.values()} == {AttemptStatus.SUCCEEDED}, found
    return found


def test_the_log_lines_of_an_attempt_travel_with_its_outcome(subject: Subject) -> None:
    async def scenario() -> None:
        sent = subject.attempt("talk", line="invoice 42 sent")
        outcome = (await dispatched(subject, sent))[sent.attempt_key]
        lines = [(r.level, r.message) for r in outcome.logs]
        assert ("INFO", "invoice 42 sent") in lines
        assert {(r.run_id, r.step, r.attempt) for r in outcome.logs} == {(sent.run_id, "talk", 1)}

    run(scenario)


def test_an_outcome_also_reported_directly_stays_with_the_executor_until_acknowledged(
    subject: Subject,
) -> None:
    async def scenario() -> None:
        sent = replace(subject.attempt("echo", value="direct"), report_directly=True)
        await subject.dispatch(sent)
        # the report may be lost: the executor's copy still reaches a drain
        outcome = await subject.outcome(sent)
        assert outcome.result_json == '"direct"'
        (kept,) = (await subject.snapshot()).outcomes
        assert (kept.attempt_key, kept.seq) == (sent.attempt_key, outcome.seq)
        assert (await subject.snapshot(ack=kept.seq)).outcomes == []

    run(scenario)


# -- sequence numbers, drains and acknowledgements --------------------------------------------


def test_outcomes_are_numbered_in_order_and_a_drain_hands_each_out_once(subject: Subject) -> None:
    async def scenario() -> None:
        sent = [subject.attempt("echo", value=i) for i in range(6)]
        found = await dispatched(subject, *sent)
        seqs = [o.seq for o in subject.seen]
        assert len(seqs) == len(set(seqs)) == 6  # each drained once
        assert seqs == sorted(seqs) and min(seqs) > 0
        assert {json.loads(o.result_json or "null") for o in found.values()} == set(range(6))
        assert await subject.drain(wait_s=0.3) == []

    run(scenario)


def test_unacknowledged_outcomes_stay_until_acknowledged_and_then_are_gone(
    subject: Subject,
) -> None:
    async def scenario() -> None:
        sent = [subject.attempt("echo", value=i) for i in range(3)]
        await dispatched(subject, *sent)
        first, second, third = sorted(o.seq for o in subject.seen)
        incarnation = (await subject.snapshot()).incarnation
        # drained but not acknowledged: the executor still holds every one
        held = await subject.snapshot(ack=0)
        assert sorted(o.seq for o in held.outcomes) == [first, second, third]
        assert {o.attempt_key for o in held.outcomes} == {d.attempt_key for d in sent}
        # acknowledging up to a number drops that one and those before it, only them
        assert [o.seq for o in (await subject.snapshot(ack=second)).outcomes] == [third]
        assert await subject.drain(ack=third, wait_s=0.1) == []
        after = await subject.snapshot(ack=third)
        assert after.outcomes == [] and after.incarnation == incarnation

    run(scenario)


def test_a_snapshot_hands_out_the_outcomes_a_drain_has_not_acknowledged_again(
    subject: Subject,
) -> None:
    async def scenario() -> None:
        sent = subject.attempt("echo", value="kept")
        outcome = (await dispatched(subject, sent))[sent.attempt_key]
        # the coordinator that drained it went down before committing: its successor's
        # snapshot gets it again, with the same number
        again = await subject.snapshot(ack=0)
        assert [(o.attempt_key, o.seq) for o in again.outcomes] == [(sent.attempt_key, outcome.seq)]
        assert again.outcomes[0].result_json == outcome.result_json
        # and the drains after that snapshot do not repeat it
        assert await subject.drain(wait_s=0.2) == []

    run(scenario)


def test_a_drain_waits_for_the_next_outcome_and_for_no_longer_than_asked(
    subject: Subject,
) -> None:
    async def scenario() -> None:
        started = time.monotonic()
        assert await subject.drain(wait_s=0.3) == []
        assert time.monotonic() - started < CALL_S
        gate = subject.gate()
        sent = subject.attempt("hold", gate=str(gate))
        await subject.dispatch(sent)
        await subject.until_in_flight(sent)
        waiting = asyncio.ensure_future(subject.drain(wait_s=60))
        await asyncio.sleep(0.2)  # let the drain reach the executor and wait there
        assert not waiting.done()
        released_at = time.monotonic()
        gate.touch()
        drained = await bounded(waiting)
        assert [o.attempt_key for o in drained] == [sent.attempt_key]
        assert time.monotonic() - released_at < 20  # woken by the outcome, not after 60 s
        assert drained[0].result_json == '"released"'

    run(scenario)


# -- in flight, cancel, timeout ----------------------------------------------------------------


def test_a_snapshot_lists_the_attempts_in_flight_until_they_end(subject: Subject) -> None:
    async def scenario() -> None:
        gate = subject.gate()
        sent = subject.attempt("hold", gate=str(gate))
        await subject.dispatch(sent)
        snapshot = await subject.snapshot()
        assert snapshot.in_flight == [sent.attempt_key] and snapshot.outcomes == []
        gate.touch()
        assert (await subject.outcome(sent)).status is AttemptStatus.SUCCEEDED
        assert (await subject.snapshot()).in_flight == []

    run(scenario)


def test_a_cancelled_attempt_ends_as_cancelled_and_an_unknown_one_is_ignored(
    subject: Subject,
) -> None:
    async def scenario() -> None:
        sent = subject.attempt("hold", gate=str(subject.gate()))
        await subject.dispatch(sent)
        await subject.until_in_flight(sent)
        unknown = ("no-such-run", "hold", -1, 1)
        await bounded(subject.executor.cancel([unknown, sent.attempt_key]))
        outcome = await subject.outcome(sent)
        assert outcome.status is AttemptStatus.CANCELLED
        assert outcome.error_type == "wfray.Cancelled"
        assert (await subject.snapshot()).in_flight == []
        assert [o.attempt_key for o in subject.seen] == [sent.attempt_key]

    run(scenario)


def test_a_cancelled_attempt_that_shares_its_task_ends_as_cancelled_and_the_others_run(
    subject: Subject,
) -> None:
    async def scenario() -> None:
        gate = subject.gate()
        # attempts of a short step, in shared tasks in the cpu pool (coordinator/shared_tasks.py)
        sent = [replace(subject.attempt("hold", gate=str(gate)), shareable=True) for _ in range(8)]
        launched = await launches(subject)
        await subject.dispatch(*sent)
        assert set((await subject.snapshot()).in_flight) == {d.attempt_key for d in sent}
        if subject.pool == "cpu":  # the case it names: there, they did share tasks
            tasks, attempts = await launches(subject)
            assert attempts - launched[1] == 8 and tasks - launched[0] < 8
        await bounded(subject.executor.cancel([sent[1].attempt_key]))
        gate.touch()
        found = await subject.outcomes(*sent)
        assert found[sent[1].attempt_key].status is AttemptStatus.CANCELLED
        others = [found[d.attempt_key] for d in sent if d is not sent[1]]
        assert [(o.status, o.result_json) for o in others] == [
            (AttemptStatus.SUCCEEDED, '"released"')
        ] * 7

    run(scenario)


async def launches(subject: Subject) -> tuple[int, int]:
    """Ray tasks and attempts the cpu executor launched so far (zeros elsewhere)."""
    handle = getattr(subject.executor, "handle", None)
    if subject.pool != "cpu" or handle is None:
        return (0, 0)
    stats: dict[str, int] = await bounded(handle.stats.remote())
    return (stats["tasks"], stats["attempts"])


def test_cancelling_an_attempt_that_ended_changes_nothing(subject: Subject) -> None:
    async def scenario() -> None:
        sent = subject.attempt("echo", value=7)
        await dispatched(subject, sent)
        await bounded(subject.executor.cancel([sent.attempt_key]))
        assert await subject.drain(wait_s=0.3) == []
        (kept,) = (await subject.snapshot()).outcomes
        assert (kept.status, kept.result_json) == (AttemptStatus.SUCCEEDED, "7")

    run(scenario)


def test_an_attempt_past_its_timeout_is_stopped_and_ends_as_timed_out(subject: Subject) -> None:
    async def scenario() -> None:
        sent = subject.attempt("hold", timeout_s=0.5, gate=str(subject.gate()))
        await subject.dispatch(sent)
        outcome = await subject.outcome(sent)
        assert outcome.status is AttemptStatus.TIMED_OUT
        assert outcome.error_type == "wfray.AttemptTimeout"
        assert "timeout of 0.5s" in (outcome.error_message or "")
        assert (await subject.snapshot()).in_flight == []

    run(scenario)


# -- epochs and incarnations ------------------------------------------------------------------


def test_dispatches_of_an_earlier_coordinator_are_refused(subject: Subject) -> None:
    async def scenario() -> None:
        earlier = subject.epoch
        subject.epoch += 2  # a new coordinator started and drained
        await subject.drain(wait_s=0)
        stale = subject.attempt("echo", value="stale")
        await subject.dispatch(stale, epoch=earlier)
        snapshot = await subject.snapshot()
        assert snapshot.in_flight == [] and snapshot.outcomes == []  # not run, not queued
        # the current coordinator's dispatches run, and so do those of a later one
        current = subject.attempt("echo", value="current")
        later = subject.attempt("echo", value="later")
        await subject.dispatch(current)
        await subject.dispatch(later, epoch=subject.epoch + 1)
        found = await subject.outcomes(current, later)
        assert {o.status for o in found.values()} == {AttemptStatus.SUCCEEDED}
        assert stale.attempt_key not in {o.attempt_key for o in subject.seen}
        # the later dispatch did not raise the fence by itself: the current epoch still runs
        again = subject.attempt("echo", value="again")
        assert (await dispatched(subject, again))[again.attempt_key].result_json == '"again"'

    run(scenario)


def test_an_executor_that_went_down_comes_back_empty_under_a_new_incarnation(
    subject: Subject,
) -> None:
    async def scenario() -> None:
        done = subject.attempt("echo", value="unacknowledged")
        await dispatched(subject, done)
        running = subject.attempt("hold", gate=str(subject.gate()))
        await subject.dispatch(running)
        await subject.until_in_flight(running)
        before = await subject.snapshot()
        assert [o.attempt_key for o in before.outcomes] == [done.attempt_key]

        await subject.crash()

        after = await subject.snapshot()
        assert after.incarnation != before.incarnation
        assert (after.in_flight, after.outcomes) == ([], [])  # its attempts and outbox are lost
        assert await subject.drain(wait_s=0.3) == []
        # and it works as before: attempts run, end, and can be cancelled
        echo = subject.attempt("echo", value="back")
        assert (await dispatched(subject, echo))[echo.attempt_key].result_json == '"back"'
        held = subject.attempt("hold", gate=str(subject.gate()))
        await subject.dispatch(held)
        await subject.until_in_flight(held)
        await bounded(subject.executor.cancel([held.attempt_key]))
        assert (await subject.outcome(held)).status is AttemptStatus.CANCELLED

    run(scenario)
