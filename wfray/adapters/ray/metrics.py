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

from wfray.application.metrics import COUNTERS, GAUGES, HISTOGRAMS, MetricsBuffer
from wfray.coordinator import health
from wfray.coordinator.coordinator import Coordinator

log = logging.getLogger("wfray.metrics")


class RayMetricsExporter:
    def __init__(self) -> None:
        self._metrics: dict[str, Any] = {}
        for name, (text, keys) in COUNTERS.items():
            self._metrics[name] = ray_metrics.Counter(
                f"wfray_{name}", description=text, tag_keys=keys
            )
        for name, (text, keys) in GAUGES.items():
            self._metrics[name] = ray_metrics.Gauge(
                f"wfray_{name}", description=text, tag_keys=keys
            )
        for name, (text, keys, buckets) in HISTOGRAMS.items():
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
            now = coordinator.clock.now()
            buffer.queue_levels(coordinator.state.queues.depth())
            health.set_gauges(coordinator, now)
            exporter.export(buffer)
            await health.measure_store(coordinator, now)  # every few seconds, in a thread
        except Exception:  # metrics must never take the coordinator down
            log.exception("exporting metrics failed")
