"""The queue manager: which ready task starts next, and when capacity allows it."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from wfray.domain.queueing import OrderKey, QueueConfig, QueueManager, TokenBucket, order_key
from wfray.domain.records import TaskRecord
from wfray.domain.status import TaskStatus

T0 = datetime(2025, 1, 1, tzinfo=UTC)
ROOMY = {"cpu": 10_000, "io": 10_000}


def make(
    seq: int,
    priority: int = 0,
    queue: str = "default",
    pool: str = "cpu",
    key: str | None = None,
) -> TaskRecord:
    return TaskRecord(
        run_id=f"r{seq}",
        step="s",
        map_index=-1,
        status=TaskStatus.QUEUED,
        pool=pool,
        created_at=T0,
        queue=queue,
        priority=priority,
        seq=seq,
        concurrency_key=key,
    )


def seqs(tasks: list[TaskRecord]) -> list[int]:
    return [t.seq for t in tasks]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# -- order -------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-3, 3), min_size=1, max_size=40), st.randoms(use_true_random=False))
def test_higher_priority_first_then_first_in_first_out(priorities: list[int], rng: random.Random):
    tasks = [make(seq, priority) for seq, priority in enumerate(priorities, start=1)]
    manager = QueueManager([], ROOMY)
    for task in rng.sample(tasks, len(tasks)):  # arrival order does not matter
        assert manager.push(task)
    chosen = manager.select(T0)
    assert chosen == sorted(tasks, key=lambda t: (-t.priority, t.seq))
    assert manager.select(T0) == []


def test_queues_of_higher_precedence_are_served_first() -> None:
    manager = QueueManager(
        [QueueConfig(name="bulk"), QueueConfig(name="urgent", precedence=10)], ROOMY
    )
    manager.push(make(1, priority=9, queue="bulk"))
    manager.push(make(2, queue="urgent"))
    manager.push(make(3, queue="unknown"))  # an unknown queue gets the defaults
    assert seqs(manager.select(T0)) == [2, 1, 3]


def test_pushing_a_held_task_again_is_a_no_op() -> None:
    manager = QueueManager([], ROOMY)
    task = make(1)
    assert manager.push(task) and manager.push(task)
    assert manager.held == 1
    assert manager.holds(("r1", "s", -1))
    assert seqs(manager.select(T0)) == [1]
    assert not manager.holds(("r1", "s", -1))


# -- concurrency and pools ---------------------------------------------------------------------


def test_queue_concurrency_limit_holds_until_a_slot_frees() -> None:
    manager = QueueManager([QueueConfig(name="default", concurrency=2)], ROOMY)
    for seq in range(1, 6):
        manager.push(make(seq))
    manager.push(make(6, queue="other"))
    first = manager.select(T0)
    assert seqs(first) == [1, 2, 6]
    assert manager.select(T0) == []
    assert manager.depth() == {"default": (3, 2), "other": (0, 1)}
    manager.finished(first[0])
    assert seqs(manager.select(T0)) == [3]
    assert manager.select(T0) == []


def test_pool_window_is_shared_by_queues_and_keeps_order() -> None:
    manager = QueueManager([QueueConfig(name="a"), QueueConfig(name="b")], {"cpu": 2, "io": 1})
    for seq, pool, queue in [
        (1, "cpu", "a"),
        (2, "io", "a"),
        (3, "cpu", "a"),
        (4, "io", "a"),
        (5, "cpu", "b"),
        (6, "io", "b"),
    ]:
        manager.push(make(seq, pool=pool, queue=queue))
    first = manager.select(T0)
    assert seqs(first) == [1, 2, 3]
    assert manager.select(T0) == []
    manager.finished(first[1])  # an io slot frees: the oldest io task waiting takes it
    assert seqs(manager.select(T0)) == [4]
    manager.finished(first[0])
    assert seqs(manager.select(T0)) == [5]


def test_a_pool_without_a_window_runs_one_at_a_time() -> None:
    manager = QueueManager([], {"cpu": 5})
    manager.push(make(1, pool="gpu"))
    manager.push(make(2, pool="gpu"))
    assert seqs(manager.select(T0)) == [1]


def test_recovered_running_tasks_take_their_slots() -> None:
    manager = QueueManager([QueueConfig(name="default", concurrency=1)], ROOMY)
    running = make(1)
    manager.started(running)
    manager.push(make(2))
    assert manager.select(T0) == []
    manager.finished(running)
    assert seqs(manager.select(T0)) == [2]


# -- rate limit --------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    rate=st.floats(0.2, 50),
    burst=st.integers(1, 6),
    gaps=st.lists(st.floats(0, 2), min_size=1, max_size=60),
)
def test_rate_limit_never_exceeds_burst_plus_rate_times_elapsed(
    rate: float, burst: int, gaps: list[float]
) -> None:
    manager = QueueManager([QueueConfig(name="default", rate_per_s=rate, burst=burst)], ROOMY)
    for seq in range(1, 400):
        manager.push(make(seq))
    times, starts = [], []
    now = 0.0
    for gap in gaps:
        now += gap
        times.append(now)
        starts.append(len(manager.select(at(now))))
    assert starts[0] == burst
    for i in range(len(times)):
        for j in range(i, len(times)):
            assert sum(starts[i : j + 1]) <= burst + rate * (times[j] - times[i]) + 1e-6
    # and the limit is no stricter than promised: a full bucket refills over burst / rate
    idle = times[-1] + burst / rate + 1
    assert len(manager.select(at(idle))) == burst


@settings(max_examples=100, deadline=None)
@given(rate=st.floats(0.1, 1000), burst=st.integers(1, 5), spent=st.floats(0, 0.99))
def test_next_wakeup_is_when_the_next_token_arrives(rate: float, burst: int, spent: float):
    manager = QueueManager([QueueConfig(name="default", rate_per_s=rate, burst=burst)], ROOMY)
    assert manager.next_wakeup(T0) is None  # nothing waits
    for seq in range(1, burst + 3):
        manager.push(make(seq))
    assert len(manager.select(T0)) == burst
    now = at(spent / rate)  # part of the way to the next token
    wakeup = manager.next_wakeup(now)
    assert wakeup is not None
    assert wakeup - now <= timedelta(seconds=1 / rate) + timedelta(microseconds=1)
    just_before = wakeup - timedelta(microseconds=2)  # (the wakeup is rounded up to 1 µs)
    if just_before > now:
        assert manager.select(just_before) == []
    assert len(manager.select(wakeup)) == 1  # woken, it finds a token


def test_next_wakeup_ignores_queues_without_a_rate_or_without_work() -> None:
    manager = QueueManager(
        [QueueConfig(name="limited", rate_per_s=2), QueueConfig(name="free")], ROOMY
    )
    manager.push(make(1, queue="free"))
    assert manager.next_wakeup(T0) is None
    manager.push(make(2, queue="limited"))
    manager.push(make(3, queue="limited"))
    assert seqs(manager.select(T0)) == [2, 1]
    assert manager.next_wakeup(T0) == at(0.5)


def test_token_bucket_starts_full_and_caps_its_refill() -> None:
    bucket = TokenBucket(rate_per_s=1, burst=2)
    assert [bucket.take(T0) for _ in range(3)] == [True, True, False]
    assert [bucket.take(at(100)) for _ in range(3)] == [True, True, False]
    assert bucket.next_token_at(at(100)) == at(101)


# -- per-key limit -----------------------------------------------------------------------------


def test_tasks_sharing_a_concurrency_key_wait_for_each_other() -> None:
    manager = QueueManager([QueueConfig(name="default", per_key_limit=1)], ROOMY)
    manager.push(make(1, key="customer-7"))
    manager.push(make(2, key="customer-7"))
    manager.push(make(3, key="customer-8"))
    manager.push(make(4))
    first = manager.select(T0)
    assert seqs(first) == [1, 3, 4]
    assert manager.select(T0) == []
    manager.finished(first[1])  # another key's end frees nothing for customer-7
    assert manager.select(T0) == []
    manager.finished(first[0])
    assert seqs(manager.select(T0)) == [2]


@settings(max_examples=60, deadline=None)
@given(
    limit=st.integers(1, 3),
    ops=st.lists(
        st.tuples(st.sampled_from(["push", "select", "finish"]), st.sampled_from(["a", "b", None])),
        max_size=80,
    ),
    rng=st.randoms(use_true_random=False),
)
def test_per_key_limit_holds_whatever_the_interleaving(
    limit: int, ops: list[tuple[str, str | None]], rng: random.Random
) -> None:
    manager = QueueManager([QueueConfig(name="default", per_key_limit=limit)], ROOMY)
    running: list[TaskRecord] = []
    pushed = 0
    for op, key in ops:
        if op == "push":
            pushed += 1
            manager.push(make(pushed, key=key))
        elif op == "select":
            running.extend(manager.select(T0))
        elif running:
            manager.finished(running.pop(rng.randrange(len(running))))
        per_key = Counter(t.concurrency_key for t in running if t.concurrency_key is not None)
        assert all(count <= limit for count in per_key.values())
    running.extend(manager.select(T0))
    while running:  # once everything ends, everything waiting gets its turn
        manager.finished(running.pop())
        running.extend(manager.select(T0))
    assert manager.held == 0


# -- the memory cap and paging -----------------------------------------------------------------


class FakeStore:
    """Queued task rows; pages from an order key, inclusive (as the coordinator asks)."""

    def __init__(self) -> None:
        self.queued: dict[int, TaskRecord] = {}

    def page(self, boundary: OrderKey | None, limit: int) -> list[TaskRecord]:
        rows = sorted(self.queued.values(), key=order_key)
        if boundary is not None:
            rows = [t for t in rows if order_key(t) >= boundary]
        return rows[:limit]


def page_in(manager: QueueManager, store: FakeStore) -> None:
    for queue, boundary, room in manager.needs_page():
        manager.paged(queue, store.page(boundary, room), room)


def test_past_the_memory_cap_tasks_wait_in_the_store_and_page_back_in_order() -> None:
    manager = QueueManager([], ROOMY, memory_cap=3)
    store = FakeStore()
    accepted = []
    for seq in range(1, 8):
        store.queued[seq] = task = make(seq)
        accepted.append(manager.push(task))
    assert accepted == [True, True, True, False, False, False, False]
    assert manager.held == 3
    assert manager.needs_page() == []  # the held head is not used up yet

    chosen = manager.select(T0)
    assert seqs(chosen) == [1, 2, 3]
    for task in chosen:
        del store.queued[task.seq]
    assert manager.needs_page() == [("default", (0, 4), 3)]
    page_in(manager, store)
    assert manager.held == 3
    chosen = manager.select(T0)
    assert seqs(chosen) == [4, 5, 6]
    for task in chosen:
        del store.queued[task.seq]
    page_in(manager, store)
    assert seqs(manager.select(T0)) == [7]
    assert manager.needs_page() == []


@settings(max_examples=60, deadline=None)
@given(
    cap=st.integers(1, 6),
    ops=st.lists(st.sampled_from(["push", "push", "select", "page"]), max_size=60),
)
def test_paging_keeps_first_in_first_out_order(cap: int, ops: list[str]) -> None:
    manager = QueueManager([QueueConfig(name="default", concurrency=1)], ROOMY, memory_cap=cap)
    store = FakeStore()
    started: list[int] = []
    pushed = 0

    def select() -> None:
        for task in manager.select(T0):
            started.append(task.seq)
            del store.queued[task.seq]
            manager.finished(task)

    for op in [*ops, *["select", "page"] * (len(ops) + 1)]:
        if op == "push":
            pushed += 1
            store.queued[pushed] = make(pushed)
            manager.push(store.queued[pushed])
        elif op == "select":
            select()
        else:
            page_in(manager, store)
        assert manager.held <= cap
    assert started == list(range(1, pushed + 1))


def test_after_recovery_a_queue_is_paged_from_its_start() -> None:
    manager = QueueManager([], ROOMY, memory_cap=10)
    manager.mark_unpaged("default")
    assert manager.needs_page() == [("default", None, 10)]
    store = FakeStore()
    store.queued = {seq: make(seq, priority=seq % 2) for seq in range(1, 6)}
    page_in(manager, store)
    assert seqs(manager.select(T0)) == [1, 3, 5, 2, 4]


def test_a_higher_priority_task_arriving_while_memory_is_full_still_goes_first() -> None:
    manager = QueueManager([QueueConfig(name="default", concurrency=1)], ROOMY, memory_cap=2)
    store = FakeStore()
    for task in (make(1), make(2), make(3, priority=9)):
        store.queued[task.seq] = task
        manager.push(task)
    assert seqs(manager.select(T0)) == [3]


# -- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"concurrency": 0}, "concurrency must be at least 1"),
        ({"rate_per_s": 0}, "rate_per_s must be positive"),
        ({"burst": 0}, "burst must be at least 1"),
        ({"per_key_limit": 0}, "per_key_limit must be at least 1"),
    ],
)
def test_bad_queue_settings_are_rejected_naming_queue_and_field(
    fields: dict[str, float], message: str
) -> None:
    with pytest.raises(ValidationError, match=f"queue 'mail': {message}"):
        QueueConfig(name="mail", **fields)  # type: ignore[arg-type]


def test_the_task_pushed_out_of_memory_is_paged_back_in_order() -> None:
    manager = QueueManager([QueueConfig(name="default", concurrency=1)], ROOMY, memory_cap=2)
    tasks = [make(1), make(2), make(3, priority=9)]
    for task in tasks:
        manager.push(task)
    assert manager.held == 2
    assert seqs(manager.select(T0)) == [3]
    manager.finished(tasks[2])
    assert seqs(manager.select(T0)) == [1]
    ((queue, boundary, room),) = manager.needs_page()
    assert (queue, boundary) == ("default", (0, 2))  # task 2 waits in the store: page it in
    manager.paged(queue, [tasks[1]], room)
    manager.finished(tasks[0])
    assert seqs(manager.select(T0)) == [2]
