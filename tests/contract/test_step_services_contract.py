"""The StepServices contract (application/runtime.py), run on both adapters: the in-process
one (memory: a real Coordinator on its own event loop, steps inline) and the Ray one (a
running step's line to the coordinator actor of a real wfray on the session's Ray).

Each call is made as a step makes it: from a thread that is not the coordinator's. What the
port promises: counters never hand out a value twice; child runs start once per run id and
are awaited, each with its status and result (whole, even from the blob store) or error,
unfinished ones as they are; heartbeats and log lines of a running attempt are stored with
it; claims are taken, held against others, marked done and read; an unusable claim key is
refused with the same error; an event starts each subscriber once per event id.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.fixtures import contract_steps as steps
from wfray.adapters.blob import FsBlobStore
from wfray.adapters.memory import InlineExecutor, InlineStepServices, InMemoryRunStore
from wfray.application.views import ChildPlacement, ChildStart
from wfray.bootstrap import SystemClock
from wfray.coordinator.coordinator import Coordinator
from wfray.domain.claims import Holder
from wfray.domain.errors import ClaimNotHeldError, InvalidClaimError, UnknownWorkflowError
from wfray.domain.ids import event_run_id
from wfray.domain.reads import LogQuery
from wfray.domain.records import AttemptKey, LogRecord, TaskRecord
from wfray.domain.status import TaskStatus
from wfray.sdk.runtime import StepServices
from wfray.worker.step_runner import RunnerSettings

pytestmark = pytest.mark.timeout(120)

T = TypeVar("T")
CALL_S = 30.0
WAIT_S = 60.0  # for what a coordinator does in a turn or two, on a loaded machine too
BLOB_THRESHOLD = 1024
HELD_STEP = "wait_for_gate"


class Wiring:
    """A coordinator, the services that reach it, and a reader of what it stored."""

    services: StepServices
    gates: Path

    def tasks(self, run_id: str) -> list[TaskRecord]:
        raise NotImplementedError

    def logs(self, run_id: str) -> list[LogRecord]:
        raise NotImplementedError


# -- memory ------------------------------------------------------------------------------------


class MemoryWiring(Wiring):
    """A real Coordinator on an event loop in its own thread, as a step's thread sees it."""

    def __init__(self, gates: Path) -> None:
        self.gates = gates
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="coordinator-loop", daemon=True
        )
        self.thread.start()
        self.store = InMemoryRunStore()
        blobs = FsBlobStore(str(gates / "blobs"))
        services = InlineStepServices(blobs)
        executor = InlineExecutor(
            blobs=blobs,
            settings=RunnerSettings(blob_threshold_bytes=BLOB_THRESHOLD),
            services=services,
        )
        self.coordinator = Coordinator(self.store, {"cpu": executor, "io": executor}, SystemClock())

        async def start() -> None:
            await self.coordinator.start()
            services.bind(self.coordinator)

        self.on_loop(start())
        self.services = services

    def on_loop(self, call: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(call, self.loop).result(CALL_S)

    def read(self, fn: Callable[..., T], *args: Any) -> T:
        async def reading() -> T:  # on the loop: the store is the coordinator's alone
            return fn(*args)

        return self.on_loop(reading())

    def tasks(self, run_id: str) -> list[TaskRecord]:
        return self.read(self.store.get_tasks, [run_id])

    def logs(self, run_id: str) -> list[LogRecord]:
        return self.read(self.store.get_logs, LogQuery(run_id))

    def close(self) -> None:
        async def stop() -> None:
            await self.coordinator.stop()
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in rest:  # held steps: their loop goes away
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        try:
            self.on_loop(stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(CALL_S)
            self.loop.close()


# -- Ray ---------------------------------------------------------------------------------------


class RayWiring(Wiring):
    def __init__(self, client: Any, gates: Path) -> None:
        from wfray.adapters.ray.services import RayStepServices

        self.client = client
        self.gates = gates
        self.services = RayStepServices(client.settings.namespace, client.settings.blob_root)

    def tasks(self, run_id: str) -> list[TaskRecord]:
        tasks: list[TaskRecord] = self.client.detail(run_id).tasks
        return tasks

    def logs(self, run_id: str) -> list[LogRecord]:
        lines: list[LogRecord] = self.client.logs(run_id)
        return lines


@pytest.fixture(scope="module")
def ray_wfray(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    import wfray

    settings = wfray.load_settings(
        data_dir=str(tmp_path_factory.mktemp("services")),
        namespace=f"wfray-contract-{uuid.uuid4().hex[:8]}",
        blob_threshold_bytes=BLOB_THRESHOLD,
    )
    client = wfray.connect(settings)
    try:
        yield client
    finally:
        client.shutdown()  # kills the coordinator and the executors it made, by handle


@pytest.fixture(params=["memory", pytest.param("ray", marks=pytest.mark.ray)])
def wiring(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Wiring]:
    if request.param == "memory":
        made = MemoryWiring(tmp_path)
        try:
            yield made
        finally:
            made.close()
    else:
        yield RayWiring(request.getfixturevalue("ray_wfray"), tmp_path)


# -- helpers ----------------------------------------------------------------------------------


def ids(count: int) -> list[str]:
    return [f"contract-{uuid.uuid4().hex[:12]}" for _ in range(count)]


def until(what: str, check: Callable[[], T | None], timeout_s: float = WAIT_S) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"not within {timeout_s}s: {what}"
        time.sleep(0.05)


def start_held(wiring: Wiring) -> tuple[AttemptKey, Path]:
    """A run whose one step runs until its gate opens; its running attempt's key."""
    gate = wiring.gates / f"gate-{uuid.uuid4().hex[:8]}"
    (run_id,) = ids(1)
    wiring.services.start_runs(
        ChildStart(
            steps.held, [{"gate": str(gate)}], [run_id], "contract-parent", "t1", ChildPlacement()
        )
    )

    def running() -> bool:
        return any(t.status is TaskStatus.RUNNING for t in wiring.tasks(run_id))

    until(f"run {run_id} running", running)
    return (run_id, HELD_STEP, -1, 1), gate


def release(wiring: Wiring, held: AttemptKey, gate: Path) -> None:
    gate.touch()
    (status,) = wiring.services.wait_runs([held[0]], WAIT_S)
    assert (status.status, status.result) == ("completed", "released")


def attempt_of(holder: Holder) -> AttemptKey:
    return (holder.run_id, holder.step, holder.map_index, holder.attempt)


def start_doubled(wiring: Wiring, values: list[int]) -> list[str]:
    run_ids = ids(len(values))
    inputs = [{"value": v} for v in values]
    wiring.services.start_runs(
        ChildStart(steps.doubled, inputs, run_ids, "contract-parent", "t1", ChildPlacement())
    )
    return run_ids


# -- counters -----------------------------------------------------------------------------------


def test_a_counter_never_hands_out_a_value_twice(wiring: Wiring) -> None:
    counter = f"invoice-{uuid.uuid4().hex[:8]}"
    in_turn = [wiring.services.next_value(counter) for _ in range(4)]
    assert in_turn == sorted(in_turn) and len(set(in_turn)) == 4
    with ThreadPoolExecutor(4) as pool:  # steps in several threads at once
        at_once = list(pool.map(lambda _: wiring.services.next_value(counter), range(12)))
    assert len(set(in_turn + at_once)) == 16
    assert min(at_once) > max(in_turn)


# -- child runs -------------------------------------------------------------------------------


def test_child_runs_start_once_per_run_id_and_are_awaited_in_order(wiring: Wiring) -> None:
    run_ids = start_doubled(wiring, [2, 5, 0])
    statuses = wiring.services.wait_runs(run_ids, WAIT_S)
    assert [(s.run_id, s.status, s.result, s.error) for s in statuses] == [
        (run_ids[0], "completed", 4, None),
        (run_ids[1], "completed", 10, None),
        (run_ids[2], "completed", 0, None),
    ]
    # a retried parent step starts the same children again: nothing new runs
    wiring.services.start_runs(
        ChildStart(
            steps.doubled,
            [{"value": 7}, {"value": 8}, {"value": 9}],
            run_ids,
            "contract-parent",
            "t1",
            ChildPlacement(),
        )
    )
    again = wiring.services.wait_runs(run_ids, WAIT_S)
    assert [s.result for s in again] == [4, 10, 0]


@pytest.mark.parametrize(
    ("how", "doubled_or_tripled"), [("workflow", 8), ("name", 8), ("task function", 12)]
)
def test_a_child_workflow_is_named_as_a_workflow_its_name_or_a_task_function(
    wiring: Wiring, how: str, doubled_or_tripled: int
) -> None:
    flow = {"workflow": steps.doubled, "name": "contract_doubled", "task function": steps.tripled}
    run_ids = ids(1)
    wiring.services.start_runs(
        ChildStart(flow[how], [{"value": 4}], run_ids, "contract-parent", "t1", ChildPlacement())
    )
    (status,) = wiring.services.wait_runs(run_ids, WAIT_S)
    assert (status.status, status.result) == ("completed", doubled_or_tripled)


def test_starting_no_children_starts_nothing_and_an_unknown_workflow_is_refused(
    wiring: Wiring,
) -> None:
    wiring.services.start_runs(
        ChildStart(steps.doubled, [], [], "contract-parent", "t1", ChildPlacement())
    )
    with pytest.raises(UnknownWorkflowError, match="contract_not_declared"):
        wiring.services.start_runs(
            ChildStart(
                "contract_not_declared", [{}], ids(1), "contract-parent", "t1", ChildPlacement()
            )
        )


def test_a_failed_child_is_reported_failed_with_its_error(wiring: Wiring) -> None:
    (run_id,) = start_doubled(wiring, [-3])
    (status,) = wiring.services.wait_runs([run_id], WAIT_S)
    assert (status.status, status.result) == ("failed", None)
    assert "cannot double -3" in (status.error or "")


def test_a_child_result_kept_in_the_blob_store_arrives_whole(wiring: Wiring) -> None:
    (run_id,) = ids(1)
    size = 4 * BLOB_THRESHOLD
    wiring.services.start_runs(
        ChildStart(
            steps.sized, [{"value": size}], [run_id], "contract-parent", "t1", ChildPlacement()
        )
    )
    (status,) = wiring.services.wait_runs([run_id], WAIT_S)
    assert status.status == "completed"
    assert status.result == "x" * size


def test_waiting_longer_than_runs_take_returns_them_as_they_are(wiring: Wiring) -> None:
    held, gate = start_held(wiring)
    never = "contract-never-started"
    started = time.monotonic()
    statuses = wiring.services.wait_runs([held[0], never], 0.5)
    assert time.monotonic() - started < CALL_S
    # the unfinished run as it is; a run that does not exist is left out
    assert [(s.run_id, s.status, s.result) for s in statuses] == [(held[0], "running", None)]
    release(wiring, held, gate)


# -- heartbeats and log lines -----------------------------------------------------------------


def test_a_heartbeat_of_a_running_attempt_stores_its_progress(wiring: Wiring) -> None:
    held, gate = start_held(wiring)
    wiring.services.heartbeat(held, '{"done": 3, "of": 7}')

    def progress() -> str | None:
        (task,) = wiring.tasks(held[0])
        return task.progress_json

    assert until("the progress stored", progress) == '{"done": 3, "of": 7}'
    (task,) = wiring.tasks(held[0])
    assert task.heartbeat_at is not None
    release(wiring, held, gate)


def test_log_lines_of_a_running_attempt_are_delivered_and_stored_in_order(
    wiring: Wiring,
) -> None:
    held, gate = start_held(wiring)
    run_id, step, map_index, attempt = held
    now = datetime.now(UTC)
    lines = [
        LogRecord(run_id, step, map_index, attempt, now, "INFO", "contract", f"line {i}")
        for i in range(3)
    ]
    assert wiring.services.logs(lines) is True

    def stored() -> list[str]:
        return [r.message for r in wiring.logs(run_id) if r.logger == "contract"]

    assert until("the lines stored", lambda: len(stored()) == 3)
    assert stored() == ["line 0", "line 1", "line 2"]
    release(wiring, held, gate)


# -- claims ---------------------------------------------------------------------------------------


def test_a_claim_is_held_against_others_until_done_and_then_read_as_done(wiring: Wiring) -> None:
    services = wiring.services
    held, gate = start_held(wiring)
    other: AttemptKey = ("contract-other-run", "send", -1, 1)
    key = f"invoice-mail-{uuid.uuid4().hex[:8]}"
    assert services.claimed(key, other) is None

    mine = services.claim(key, held, 60)
    assert (mine.key, mine.acquired, mine.state, mine.regained) == (key, True, "running", False)
    assert attempt_of(mine.holder) == held and mine.taken_over_from is None
    again = services.claim(key, held, 60)  # the holder asks again: it still holds it
    assert (again.acquired, again.regained) == (True, True)

    theirs = services.claim(key, other, 60)
    assert (theirs.acquired, theirs.state) == (False, "running")
    assert attempt_of(theirs.holder) == held
    seen = services.claimed(key, other)
    assert seen is not None and (seen.acquired, seen.state) == (False, "running")

    done = services.finish_claim(key, held, '{"invoice": 42}')
    assert (done.state, done.result_json) == ("done", '{"invoice": 42}')
    assert done.done_at is not None
    late = services.claim(key, other, 60)
    assert (late.acquired, late.state, late.result_json) == (False, "done", '{"invoice": 42}')
    release(wiring, held, gate)


def test_only_the_holder_marks_a_claim_done_and_the_first_result_stays(wiring: Wiring) -> None:
    services = wiring.services
    held, gate = start_held(wiring)
    other: AttemptKey = ("contract-other-run", "send", -1, 1)
    key = f"invoice-mail-{uuid.uuid4().hex[:8]}"
    with pytest.raises(ClaimNotHeldError):
        services.finish_claim(key, held, '"nobody holds it yet"')
    assert services.claim(key, held, 60).acquired
    with pytest.raises(ClaimNotHeldError):
        services.finish_claim(key, other, '"not mine"')
    assert services.finish_claim(key, held, '"first"').result_json == '"first"'
    assert services.finish_claim(key, held, '"second"').result_json == '"first"'
    seen = services.claimed(key, held)
    assert seen is not None and (seen.acquired, seen.state, seen.result_json) == (
        True,
        "done",
        '"first"',
    )
    release(wiring, held, gate)


def test_a_claim_whose_holder_ended_is_taken_over_naming_who_held_it(wiring: Wiring) -> None:
    services = wiring.services
    held, gate = start_held(wiring)
    gone: AttemptKey = ("contract-gone-run", "send", -1, 1)  # no such run: its step ended
    key = f"invoice-mail-{uuid.uuid4().hex[:8]}"
    assert services.claim(key, gone, 60).acquired
    seen = services.claimed(key, held)
    assert seen is not None and (seen.acquired, seen.state) == (False, "died")
    taken = services.claim(key, held, 60)
    assert (taken.acquired, taken.state) == (True, "running")
    assert attempt_of(taken.holder) == held
    assert taken.taken_over_from is not None and attempt_of(taken.taken_over_from) == gone
    release(wiring, held, gate)


@pytest.mark.parametrize("key", ["", "x" * 10_000, "bad\0key"])
def test_an_unusable_claim_key_is_refused_with_the_same_error(wiring: Wiring, key: str) -> None:
    attempt: AttemptKey = ("contract-run", "send", -1, 1)
    with pytest.raises(InvalidClaimError):
        wiring.services.claim(key, attempt, 60)
    with pytest.raises(InvalidClaimError):
        wiring.services.claimed(key, attempt)


# -- events ---------------------------------------------------------------------------------------


def test_an_event_starts_each_subscriber_once_per_event_id(wiring: Wiring) -> None:
    event_id = f"parcel-{uuid.uuid4().hex[:8]}"
    run_ids = wiring.services.publish(steps.EVENT, {"parcel": "p-7"}, event_id)
    assert run_ids == [event_run_id(steps.on_parcel.name, steps.EVENT, event_id)]
    assert wiring.services.publish(steps.EVENT, {"parcel": "p-7"}, event_id) == run_ids
    (status,) = wiring.services.wait_runs(run_ids, WAIT_S)
    assert (status.status, status.result) == ("completed", "noted p-7")
