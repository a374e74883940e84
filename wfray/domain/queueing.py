"""The queue manager's rules: which ready task runs next, and when capacity allows.

Named queues with an order of precedence, a concurrency limit, an optional rate limit (a
token bucket) and a per-key limit; pools with a dispatch window. Only the head of each queue
is held in memory: the rest waits in the store and is paged in as room frees.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, model_validator

from wfray.domain.records import TaskRecord

_EPSILON = 1e-9  # of a token

OrderKey = tuple[int, int]  # (-priority, seq): smaller runs first
FullKey = tuple[str, str, int]  # (run_id, step, map_index)


class QueueConfig(BaseModel):
    """A named queue.

    Attributes:
        name: the queue's name, given at submission.
        precedence: queues with a higher precedence are served first.
        concurrency: at most this many of its tasks run at once (None: no limit).
        rate_per_s: at most this many starts per second, on average (None: no limit).
        burst: starts allowed at once before the rate limit bites.
        per_key_limit: at most this many running tasks share one concurrency key.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    precedence: int = 0
    concurrency: int | None = None
    rate_per_s: float | None = None
    burst: int = 1
    per_key_limit: int | None = None

    @model_validator(mode="after")
    def _check(self) -> QueueConfig:
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError(f"queue {self.name!r}: concurrency must be at least 1")
        if self.rate_per_s is not None and self.rate_per_s <= 0:
            raise ValueError(f"queue {self.name!r}: rate_per_s must be positive")
        if self.burst < 1:
            raise ValueError(f"queue {self.name!r}: burst must be at least 1")
        if self.per_key_limit is not None and self.per_key_limit < 1:
            raise ValueError(f"queue {self.name!r}: per_key_limit must be at least 1")
        return self


@dataclass(slots=True)
class TokenBucket:
    rate_per_s: float
    burst: int
    tokens: float = -1.0
    updated: datetime | None = None

    def take(self, now: datetime) -> bool:
        self._refill(now)
        if self.tokens >= 1 - _EPSILON:  # refills at many instants add up float error
            self.tokens = max(0.0, self.tokens - 1)
            return True
        return False

    def next_token_at(self, now: datetime) -> datetime:
        self._refill(now)
        missing = max(0.0, 1 - self.tokens)
        # rounded up to the microsecond: a wakeup just short of the token finds none
        return now + timedelta(microseconds=math.ceil(missing / self.rate_per_s * 1e6))

    def _refill(self, now: datetime) -> None:
        if self.updated is None or self.tokens < 0:
            self.tokens, self.updated = float(self.burst), now
            return
        elapsed = (now - self.updated).total_seconds()
        if elapsed > 0:
            self.tokens = min(float(self.burst), self.tokens + elapsed * self.rate_per_s)
            self.updated = now


@dataclass(slots=True)
class _Queue:
    config: QueueConfig
    heap: list[tuple[int, int, FullKey]] = field(default_factory=list)
    bucket: TokenBucket | None = None
    running: int = 0
    overflow: bool = False  # some of its queued tasks wait only in the store
    boundary: OrderKey | None = None  # every store-only task orders at or after this
    worst: tuple[int, int, FullKey] | None = None  # the last in line among those held


def order_key(task: TaskRecord) -> OrderKey:
    return (-task.priority, task.seq)


class QueueManager:
    """Holds the heads of the queues and hands out tasks as capacity allows."""

    def __init__(
        self,
        queues: list[QueueConfig],
        pool_windows: dict[str, int],
        memory_cap: int = 10_000,
    ) -> None:
        self._queues: dict[str, _Queue] = {}
        for config in queues:
            self._add(config)
        self._pool_windows = dict(pool_windows)
        self._pool_running: dict[str, int] = dict.fromkeys(pool_windows, 0)
        self._key_running: dict[str, int] = {}
        self._memory_cap = memory_cap
        self._held: dict[FullKey, TaskRecord] = {}

    def _add(self, config: QueueConfig) -> _Queue:
        queue = _Queue(config)
        if config.rate_per_s is not None:
            queue.bucket = TokenBucket(config.rate_per_s, config.burst)
        self._queues[config.name] = queue
        return queue

    def _queue(self, name: str) -> _Queue:
        return self._queues.get(name) or self._add(QueueConfig(name=name))

    def holds(self, key: FullKey) -> bool:
        return key in self._held

    def overflowing(self, queue_name: str) -> bool:
        """Do tasks of this queue wait in the store only (to be paged in first)?"""
        queue = self._queues.get(queue_name)
        return queue is not None and queue.overflow

    @property
    def held(self) -> int:
        return len(self._held)

    def push(self, task: TaskRecord) -> bool:
        """Offer a ready task; False when it stays in the store only (memory is full)."""
        queue = self._queue(task.queue)
        key = (task.run_id, task.step, task.map_index)
        if key in self._held:
            return True
        okey = order_key(task)
        if queue.overflow and queue.boundary is not None and okey >= queue.boundary:
            self._store_only(queue, okey)
            return False
        if len(self._held) >= self._memory_cap:
            # memory is full: a task that goes before the last one held takes its place
            if queue.worst is None or okey >= queue.worst[:2]:
                self._store_only(queue, okey)
                return False
            self._evict_worst(queue)
        entry = (okey[0], okey[1], key)
        self._held[key] = task
        heapq.heappush(queue.heap, entry)
        if queue.worst is None or entry > queue.worst:
            queue.worst = entry
        return True

    @staticmethod
    def _store_only(queue: _Queue, okey: OrderKey) -> None:
        queue.overflow = True
        queue.boundary = okey if queue.boundary is None else min(queue.boundary, okey)

    def _evict_worst(self, queue: _Queue) -> None:
        assert queue.worst is not None
        victim = queue.worst
        queue.heap.remove(victim)
        heapq.heapify(queue.heap)
        del self._held[victim[2]]
        self._store_only(queue, victim[:2])
        queue.worst = max(queue.heap) if queue.heap else None

    def drop(self, run_ids: set[str]) -> None:
        """Let go of the held tasks of these runs (their slots are freed one by one with
        `finished`); they are offered again with `push` as the store holds them."""
        for queue in self._queues.values():
            kept = [entry for entry in queue.heap if entry[2][0] not in run_ids]
            if len(kept) == len(queue.heap):
                continue
            for entry in queue.heap:
                if entry[2][0] in run_ids:
                    del self._held[entry[2]]
            heapq.heapify(kept)
            queue.heap = kept
            queue.worst = max(kept) if kept else None

    def mark_unpaged(self, queue_name: str) -> None:
        """Tasks of this queue wait in the store (found at recovery): page them in."""
        queue = self._queue(queue_name)
        queue.overflow = True
        queue.boundary = None

    def needs_page(self) -> list[tuple[str, OrderKey | None, int]]:
        """Queues whose store-only tail should be paged in: (queue, from key, how many)."""
        room = self._memory_cap - len(self._held)
        wants = []
        for name, queue in self._queues.items():
            if queue.overflow and len(queue.heap) < max(1, self._memory_cap // 4) and room > 0:
                wants.append((name, queue.boundary, room))
        return wants

    def paged(self, queue_name: str, tasks: list[TaskRecord], limit: int) -> None:
        """Take a page read from the store (from the queue's boundary, in order)."""
        queue = self._queue(queue_name)
        queue.overflow = False
        queue.boundary = None
        for task in tasks:
            self.push(task)
        if len(tasks) >= limit and tasks:
            last = order_key(tasks[-1])
            queue.overflow = True
            next_key = (last[0], last[1] + 1)
            queue.boundary = next_key if queue.boundary is None else min(queue.boundary, next_key)

    def select(self, now: datetime) -> list[TaskRecord]:
        """Take the tasks that may start now, best first, and count them as running."""
        chosen: list[TaskRecord] = []
        for queue in sorted(self._queues.values(), key=lambda q: -q.config.precedence):
            chosen.extend(self._select_from(queue, now))
        return chosen

    def _select_from(self, queue: _Queue, now: datetime) -> list[TaskRecord]:
        config = queue.config
        chosen: list[TaskRecord] = []
        deferred: list[tuple[int, int, FullKey]] = []
        while queue.heap:
            if config.concurrency is not None and queue.running >= config.concurrency:
                break
            entry = queue.heap[0]
            task = self._held[entry[2]]
            if self._pool_running.get(task.pool, 0) >= self._pool_windows.get(task.pool, 1):
                deferred.append(heapq.heappop(queue.heap))
                if len(deferred) > 64:
                    break
                continue
            key_limit = config.per_key_limit
            ckey = task.concurrency_key
            if (
                key_limit is not None
                and ckey is not None
                and self._key_running.get(ckey, 0) >= key_limit
            ):
                deferred.append(heapq.heappop(queue.heap))
                continue
            if queue.bucket is not None and not queue.bucket.take(now):
                break
            heapq.heappop(queue.heap)
            del self._held[entry[2]]
            if not queue.heap:
                queue.worst = None
            self._count(task, +1)
            chosen.append(task)
        for entry in deferred:
            heapq.heappush(queue.heap, entry)
        return chosen

    def started(self, task: TaskRecord) -> None:
        """Count a task already running (found at recovery)."""
        self._count(task, +1)

    def finished(self, task: TaskRecord) -> None:
        """An attempt ended: free its slot."""
        self._count(task, -1)

    def _count(self, task: TaskRecord, delta: int) -> None:
        self._queue(task.queue).running += delta
        self._pool_running[task.pool] = self._pool_running.get(task.pool, 0) + delta
        if task.concurrency_key is not None:
            left = self._key_running.get(task.concurrency_key, 0) + delta
            if left > 0:
                self._key_running[task.concurrency_key] = left
            else:
                self._key_running.pop(task.concurrency_key, None)

    def next_wakeup(self, now: datetime) -> datetime | None:
        """When a rate-limited queue with waiting tasks gets its next token."""
        times = [
            q.bucket.next_token_at(now)
            for q in self._queues.values()
            if q.bucket is not None and q.heap
        ]
        return min(times) if times else None

    def depth(self) -> dict[str, tuple[int, int]]:
        """Queue name -> (held in memory, running)."""
        return {name: (len(q.heap), q.running) for name, q in self._queues.items()}
