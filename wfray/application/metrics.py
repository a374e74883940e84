"""What wfray counts while it works: runs, attempts, retries, compensations, queues, lag.

The coordinator reports through the `Metrics` port; `MetricsBuffer` aggregates in memory
(cheap on the hot path: a dict increment per event) and keeps cumulative totals, which the
Ray adapter exports through `ray.util.metrics` and the HTTP API renders for `/metrics`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Protocol

Tags = tuple[tuple[str, str], ...]

# Step duration buckets, in seconds: no-op steps to hour-long ones.
DURATION_BUCKETS = (0.005, 0.025, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0, 3600.0)
# The coordinator's loop turns and commits: a fraction of a millisecond to a stuck database.
TURN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Samples kept between two exports per series: an exporter that does not run (an in-process
# coordinator) costs bounded memory; one that runs every second never reaches it.
MAX_SAMPLES = 10_000
_NO_TAGS: Tags = ()

# What wfray exports (the Ray adapter makes one `ray.util.metrics` instrument of each, named
# `wfray_<name>`): description, tag keys (and histogram boundaries).
COUNTERS = {
    "runs_total": ("runs that ended, by workflow and final status", ("workflow", "status")),
    "attempts_total": ("step attempts that ended, by status", ("workflow", "step", "status")),
    "retries_total": ("retries scheduled", ("workflow", "step")),
    "compensations_total": ("compensation attempts that ended", ("workflow", "step", "status")),
    "outcomes_quarantined_total": (
        "outcomes quarantined: refused by the database, or coordinators died applying them",
        ("reason",),
    ),
    "coordinator_commit_failures_total": (
        "commits that failed: unavailable (retried), refused or stale_write (quarantined)",
        ("kind",),
    ),
}
GAUGES = {
    "queue_depth": ("tasks waiting in a queue (held in memory)", ("queue",)),
    "queue_running": ("tasks of a queue running now", ("queue",)),
    "schedule_last_lag_seconds": ("how late the last tick of a schedule started", ("schedule",)),
    # the coordinator's own health (coordinator/health.py)
    "coordinator_starts": ("coordinator starts over the store's life, by cause", ("cause",)),
    "coordinator_uptime_seconds": ("seconds since this coordinator started", ()),
    "executor_attempts_in_flight": ("attempts running on an executor", ("executor",)),
    "executor_outbox_outcomes": (
        "outcomes an executor holds, not yet acknowledged (as of its last drain)",
        ("executor",),
    ),
    "queued_tasks": ("tasks queued, in memory or paged out to the store", ()),
    "oldest_queued_run_age_seconds": ("age of the oldest queued run (0: none)", ()),
    "oldest_running_attempt_age_seconds": ("age of the oldest running attempt (0: none)", ()),
    "store_bytes": ("size of the store's database", ()),
}
HISTOGRAMS = {
    "step_duration_seconds": ("step attempt wall time", ("workflow", "step"), DURATION_BUCKETS),
    "schedule_lag_seconds": (
        "how late schedule ticks started",
        ("schedule",),
        (0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0),
    ),
    "coordinator_turn_seconds": ("coordinator loop turn: decide, commit, act", (), TURN_BUCKETS),
    "coordinator_commit_seconds": ("coordinator commit of a turn's batch", (), TURN_BUCKETS),
}


def exported_names() -> set[str]:
    """Every name wfray exports through Ray, as Prometheus sees it (`ray_` prefix, histograms
    with their `_bucket`, `_sum`, `_count` series): what dashboards and alerts may use."""
    names = {f"ray_wfray_{name}" for name in [*COUNTERS, *GAUGES]}
    for name in HISTOGRAMS:
        names |= {f"ray_wfray_{name}_{part}" for part in ("bucket", "sum", "count")}
    return names


class Metrics(Protocol):
    def run_finished(self, workflow: str, status: str) -> None: ...
    def attempt_finished(
        self, workflow: str, step: str, kind: str, status: str, duration_s: float | None
    ) -> None: ...
    def retry_scheduled(self, workflow: str, step: str) -> None: ...
    def queue_levels(self, levels: dict[str, tuple[int, int]]) -> None: ...
    def schedule_lag(self, schedule: str, lag_s: float) -> None: ...
    def outcome_quarantined(self, status: str) -> None: ...
    def turn_took(self, seconds: float) -> None: ...
    def commit_took(self, seconds: float) -> None: ...
    def commit_failed(self, kind: str) -> None: ...


@dataclass
class MetricsBuffer:
    """Counts since the last export (`take`) and since the start (`totals`)."""

    counts: dict[tuple[str, Tags], float] = field(default_factory=lambda: defaultdict(float))
    totals: dict[tuple[str, Tags], float] = field(default_factory=lambda: defaultdict(float))
    samples: dict[tuple[str, Tags], list[float]] = field(default_factory=lambda: defaultdict(list))
    gauges: dict[tuple[str, Tags], float] = field(default_factory=dict)

    def _count(self, name: str, tags: Tags, amount: float = 1.0) -> None:
        self.counts[(name, tags)] += amount
        self.totals[(name, tags)] += amount

    def run_finished(self, workflow: str, status: str) -> None:
        self._count("runs_total", (("workflow", workflow), ("status", status)))

    def attempt_finished(
        self, workflow: str, step: str, kind: str, status: str, duration_s: float | None
    ) -> None:
        tags = (("workflow", workflow), ("step", step), ("status", status))
        if kind == "compensation":
            self._count("compensations_total", tags)
            return
        self._count("attempts_total", tags)
        if duration_s is not None:
            self._sample("step_duration_seconds", tags[:2], duration_s)

    def _sample(self, name: str, tags: Tags, value: float) -> None:
        samples = self.samples[(name, tags)]
        if len(samples) < MAX_SAMPLES:
            samples.append(value)

    def retry_scheduled(self, workflow: str, step: str) -> None:
        self._count("retries_total", (("workflow", workflow), ("step", step)))

    def queue_levels(self, levels: dict[str, tuple[int, int]]) -> None:
        for queue, (depth, running) in levels.items():
            self.gauges[("queue_depth", (("queue", queue),))] = depth
            self.gauges[("queue_running", (("queue", queue),))] = running

    def schedule_lag(self, schedule: str, lag_s: float) -> None:
        self._sample("schedule_lag_seconds", (("schedule", schedule),), lag_s)
        self.gauges[("schedule_last_lag_seconds", (("schedule", schedule),))] = lag_s

    def outcome_quarantined(self, status: str) -> None:
        """An outcome was quarantined: refused by the database, or coordinators died
        applying it (coordinator/poison.py)."""
        self._count("outcomes_quarantined_total", (("reason", status),))

    def turn_took(self, seconds: float) -> None:
        """A loop turn took this long (decide, commit, act), wall time."""
        self._sample("coordinator_turn_seconds", _NO_TAGS, seconds)

    def commit_took(self, seconds: float) -> None:
        """A turn's commit took this long, outages waited out included."""
        self._sample("coordinator_commit_seconds", _NO_TAGS, seconds)

    def commit_failed(self, kind: str) -> None:
        """A commit failed: `unavailable` (an outage, retried), `refused` or `stale_write`
        (rows refused for what they hold, quarantined: coordinator/poison.py)."""
        self._count("coordinator_commit_failures_total", (("kind", kind),))

    def gauge(self, name: str, value: float, **tags: str) -> None:
        """Set a gauge (the coordinator's health, measured by the exporter: health.py)."""
        self.gauges[(name, tuple(sorted(tags.items())))] = value

    def take(
        self,
    ) -> tuple[dict[tuple[str, Tags], float], dict[tuple[str, Tags], list[float]]]:
        """The counts and samples since the last take (for an exporter)."""
        counts, self.counts = self.counts, defaultdict(float)
        samples, self.samples = self.samples, defaultdict(list)
        return dict(counts), dict(samples)

    def snapshot(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        """Cumulative counters and current gauges, by metric name (for `/metrics`)."""
        out: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
        for (name, tags), value in [*self.totals.items(), *self.gauges.items()]:
            out[name].append((dict(tags), value))
        return dict(out)
