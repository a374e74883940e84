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


class Metrics(Protocol):
    def run_finished(self, workflow: str, status: str) -> None: ...
    def attempt_finished(
        self, workflow: str, step: str, kind: str, status: str, duration_s: float | None
    ) -> None: ...
    def retry_scheduled(self, workflow: str, step: str) -> None: ...
    def queue_levels(self, levels: dict[str, tuple[int, int]]) -> None: ...
    def schedule_lag(self, schedule: str, lag_s: float) -> None: ...
    def outcome_set_aside(self, status: str) -> None: ...


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
            self.samples[("step_duration_seconds", tags[:2])].append(duration_s)

    def retry_scheduled(self, workflow: str, step: str) -> None:
        self._count("retries_total", (("workflow", workflow), ("step", step)))

    def queue_levels(self, levels: dict[str, tuple[int, int]]) -> None:
        for queue, (depth, running) in levels.items():
            self.gauges[("queue_depth", (("queue", queue),))] = depth
            self.gauges[("queue_running", (("queue", queue),))] = running

    def schedule_lag(self, schedule: str, lag_s: float) -> None:
        self.samples[("schedule_lag_seconds", (("schedule", schedule),))].append(lag_s)
        self.gauges[("schedule_last_lag_seconds", (("schedule", schedule),))] = lag_s

    def outcome_set_aside(self, status: str) -> None:
        """An outcome was refused by the database or quarantined (application/poison.py)."""
        self._count("outcomes_quarantined_total", (("reason", status),))

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
