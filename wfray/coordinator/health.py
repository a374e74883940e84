"""The coordinator's own health: why it (re)started, how it keeps up, what it holds back.

Measured off the loop turn's path: a turn only times itself and its commit (metrics.py); the
gauges here (ages, outboxes, attempts in flight, the store's size and oldest queued run) are
computed by the exporter once a second (adapters/ray/metrics.py) from the coordinator's
memory, and from the store every `STORE_FACTS_EVERY_S`.

Why a coordinator started is kept in the store, as counters, so that it survives the
restarts it counts:
    first_start     no coordinator had used this store
    loop_crashed    the previous one's loop raised (its host noted it before exiting)
    process_died    Ray restarted the actor, which left no note: killed, out of memory,
                    its node lost
    redeployed      a new coordinator actor on a store an earlier one used (`wfray start`
                    again, a new cluster or head)
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from wfray.application.metrics import Metrics
from wfray.application.ports import Clock, RunLedger, StepExecutor
from wfray.application.views import StoreFacts
from wfray.coordinator.state import CoordinatorState

START_CAUSES = ("first_start", "loop_crashed", "process_died", "redeployed")
COUNTER_PREFIX = "wfray:coordinator:"
STARTS = COUNTER_PREFIX + "starts:"
CRASHES = COUNTER_PREFIX + "crashes"  # loop crashes noted by the host before it exits
STORE_FACTS_EVERY_S = 15.0


def start_cause(counts: Mapping[str, int], restarted_by_ray: bool) -> str:
    """Why this coordinator starts, from the counters of earlier starts and crashes."""
    starts = {c: counts.get(STARTS + c, 0) for c in START_CAUSES}
    if counts.get(CRASHES, 0) > starts["loop_crashed"]:
        return "loop_crashed"  # a crash not yet counted as the cause of a start
    if not any(starts.values()):
        return "first_start"
    return "process_died" if restarted_by_ray else "redeployed"


def record_start(store: RunLedger, restarted_by_ray: bool) -> tuple[str, dict[str, int]]:
    """Count this start under its cause; returns the cause and every cause's count (sync:
    the coordinator calls it in a thread at its start)."""
    cause = start_cause(store.counters(COUNTER_PREFIX), restarted_by_ray)
    store.next_value(STARTS + cause)
    counts = store.counters(STARTS)
    return cause, {c: counts.get(STARTS + c, 0) for c in START_CAUSES}


def note_crash(store: RunLedger) -> None:
    """The loop died: noted before the process exits, so the next start knows why."""
    store.next_value(CRASHES)


@dataclass
class Health:
    """What the coordinator knows of its own health (its memory: the figures behind it are
    in the metrics buffer and the state)."""

    started_at: datetime | None = None
    start_cause: str = "unknown"
    starts: dict[str, int] = field(default_factory=dict)
    store: StoreFacts = field(default_factory=StoreFacts)
    store_measured_at: datetime | None = None
    last_turn_s: float = 0.0

    def started(self, at: datetime, cause: str, starts: dict[str, int]) -> None:
        self.started_at, self.start_cause, self.starts = at, cause, starts


class Reconciling(Protocol):
    """What the health figures read of the executors' reconciler (Reconciler is one)."""

    @property
    def outbox_sizes(self) -> Mapping[str, int]: ...

    @property
    def traffic(self) -> Mapping[str, int]: ...


class Observed(Protocol):
    """What the health figures read of the coordinator (Coordinator is one): the
    coordinator imports this module, so it is named here by what it offers."""

    @property
    def health(self) -> Health: ...

    @property
    def state(self) -> CoordinatorState: ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def executors(self) -> Mapping[str, StepExecutor]: ...

    @property
    def reconciler(self) -> Reconciling: ...

    @property
    def turns(self) -> int: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def store(self) -> RunLedger: ...


def ages(coordinator: Observed, now: datetime) -> tuple[float, float]:
    """The age of the oldest queued run (as the store last said) and of the oldest running
    attempt since its dispatch (memory: at most the pools' windows of attempts), in
    seconds; 0 for none."""
    health = coordinator.health
    queued_at = health.store.oldest_queued_run_at
    oldest_queued = 0.0 if queued_at is None else max(0.0, (now - queued_at).total_seconds())
    started = [a.queued_at for a in coordinator.state.attempts.values()]
    oldest_running = max(0.0, (now - min(started)).total_seconds()) if started else 0.0
    return oldest_queued, oldest_running


def report(coordinator: Observed, now: datetime) -> dict[str, Any]:
    """The health an operator reads (`/healthz` with a read token, `stats()["health"]`):
    small and bounded, whatever the load (one entry per executor and start cause)."""
    health, state = coordinator.health, coordinator.state
    oldest_queued, oldest_running = ages(coordinator, now)
    up_s = 0.0 if health.started_at is None else (now - health.started_at).total_seconds()
    totals = getattr(coordinator.metrics, "totals", {})
    failures = {
        dict(tags)["kind"]: int(value)
        for (name, tags), value in totals.items()
        if name == "coordinator_commit_failures_total"
    }
    quarantined = {
        dict(tags)["reason"]: int(value)
        for (name, tags), value in totals.items()
        if name == "outcomes_quarantined_total"
    }
    executors = sorted(coordinator.executors)
    return {
        "started_at": None if health.started_at is None else health.started_at.isoformat(),
        "uptime_s": round(up_s, 3),
        "start_cause": health.start_cause,
        "starts": dict(health.starts),
        "turns": coordinator.turns,
        "last_turn_s": round(health.last_turn_s, 6),
        "commit_failures": failures,
        "outcomes_quarantined": quarantined,
        "attempts_in_flight": {e: state.running_on.get(e, 0) for e in executors},
        "outbox_outcomes": {e: coordinator.reconciler.outbox_sizes.get(e, 0) for e in executors},
        "queued_tasks": state.queued_count,
        "oldest_queued_run_age_s": round(oldest_queued, 3),
        "oldest_running_attempt_age_s": round(oldest_running, 3),
        "store_bytes": health.store.size_bytes,
    }


def stats(coordinator: Observed) -> dict[str, object]:
    """What `Client.stats()` answers: the coordinator's memory, traffic, metrics, health."""
    memory = coordinator.state
    snapshot = getattr(coordinator.metrics, "snapshot", None)
    return {
        "runs_in_memory": len(memory.runs),
        "tasks_held": memory.queues.held,
        "running_attempts": len(memory.attempts),
        "running_by_executor": {e: n for e, n in memory.running_on.items() if n},
        "queued": memory.queued_count,
        "fanning_out": len(memory.fanning),
        "timers": len(memory.timers),
        "turns": coordinator.turns,
        "traffic": dict(coordinator.reconciler.traffic),
        "queues": memory.queues.depth(),
        "metrics": snapshot() if snapshot is not None else {},
        "health": report(coordinator, coordinator.clock.now()),
    }


def set_gauges(coordinator: Observed, now: datetime) -> None:
    """The health figures as gauges in the metrics buffer (the exporter calls it)."""
    gauge = getattr(coordinator.metrics, "gauge", None)
    if gauge is None:
        return
    health, state = coordinator.health, coordinator.state
    oldest_queued, oldest_running = ages(coordinator, now)
    gauge("oldest_queued_run_age_seconds", oldest_queued)
    gauge("oldest_running_attempt_age_seconds", oldest_running)
    gauge("queued_tasks", float(state.queued_count))
    if health.started_at is not None:
        gauge("coordinator_uptime_seconds", (now - health.started_at).total_seconds())
    for cause, count in health.starts.items():
        gauge("coordinator_starts", float(count), cause=cause)
    for executor in coordinator.executors:
        gauge(
            "executor_attempts_in_flight",
            float(state.running_on.get(executor, 0)),
            executor=executor,
        )
        held = float(coordinator.reconciler.outbox_sizes.get(executor, 0))
        gauge("executor_outbox_outcomes", held, executor=executor)
    if health.store.size_bytes is not None:
        gauge("store_bytes", float(health.store.size_bytes))


async def measure_store(coordinator: Observed, now: datetime) -> None:
    """Ask the store for its facts, if they are older than STORE_FACTS_EVERY_S (in a
    thread; an outage leaves the last facts in place)."""
    health = coordinator.health
    measured = health.store_measured_at
    if measured is not None and (now - measured).total_seconds() < STORE_FACTS_EVERY_S:
        return
    health.store_measured_at = now
    health.store = await asyncio.to_thread(coordinator.store.store_facts)
