"""Exports the coordinator's metrics through `ray.util.metrics`.

Ray serves them on each node's metrics export port in Prometheus format (prefixed `ray_`),
where Prometheus scrapes them and the Ray Dashboard's Grafana charts read them. Counts are
aggregated by the coordinator and exported once a second, off its hot path.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ray.util import metrics as ray_metrics

from wfray.application.metrics import DURATION_BUCKETS, MetricsBuffer
from wfray.coordinator.coordinator import Coordinator

log = logging.getLogger("wfray.metrics")

_COUNTERS = {
    "runs_total": ("runs that ended, by workflow and final status", ("workflow", "status")),
    "attempts_total": ("step attempts that ended, by status", ("workflow", "step", "status")),
    "retries_total": ("retries scheduled", ("workflow", "step")),
    "compensations_total": ("compensation attempts that ended", ("workflow", "step", "status")),
    "outcomes_quarantined_total": (
        "outcomes set aside: refused by the database, or undelivered at two starts",
        ("reason",),
    ),
}
_GAUGES = {
    "queue_depth": ("tasks waiting in a queue (held in memory)", ("queue",)),
    "queue_running": ("tasks of a queue running now", ("queue",)),
    "schedule_last_lag_seconds": ("how late the last tick of a schedule started", ("schedule",)),
}
_HISTOGRAMS = {
    "step_duration_seconds": ("step attempt wall time", ("workflow", "step"), DURATION_BUCKETS),
    "schedule_lag_seconds": (
        "how late schedule ticks started",
        ("schedule",),
        (0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0),
    ),
}


class RayMetricsExporter:
    def __init__(self) -> None:
        self._metrics: dict[str, Any] = {}
        for name, (text, keys) in _COUNTERS.items():
            self._metrics[name] = ray_metrics.Counter(
                f"wfray_{name}", description=text, tag_keys=keys
            )
        for name, (text, keys) in _GAUGES.items():
            self._metrics[name] = ray_metrics.Gauge(
                f"wfray_{name}", description=text, tag_keys=keys
            )
        for name, (text, keys, buckets) in _HISTOGRAMS.items():
            self._metrics[name] = ray_metrics.Histogram(
                f"wfray_{name}", description=text, boundaries=list(buckets), tag_keys=keys
            )

    def export(self, buffer: MetricsBuffer) -> None:
        counts, samples = buffer.take()
        for (name, tags), value in counts.items():
            self._metrics[name].inc(value, tags=dict(tags))
        for (name, tags), values in samples.items():
            histogram = self._metrics[name]
            for value in values:
                histogram.observe(value, tags=dict(tags))
        for (name, tags), value in buffer.gauges.items():
            self._metrics[name].set(value, tags=dict(tags))


async def export_forever(coordinator: Coordinator, interval_s: float = 1.0) -> None:
    buffer = coordinator.metrics
    if not isinstance(buffer, MetricsBuffer):
        return
    exporter = RayMetricsExporter()
    while True:
        await asyncio.sleep(interval_s)
        try:
            buffer.queue_levels(coordinator.state.queues.depth())
            exporter.export(buffer)
        except Exception:  # metrics must never take the coordinator down
            log.exception("exporting metrics failed")
