"""Prometheus text for `/metrics`: the coordinator's stats as gauges, and the API's requests.

The gauges are built afresh from `Client.stats()` on each scrape (a collector, not state kept
in the replica), so several API replicas never report stale or double-counted numbers.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

StatsSource = Callable[[], Mapping[str, Any]]


class StatsCollector(Collector):
    """Reads the coordinator's stats at scrape time and yields them as gauges."""

    def __init__(self, stats: StatsSource) -> None:
        self.stats = stats

    def collect(self) -> Iterable[Metric]:
        stats = self.stats()
        for key, help_text in (
            ("queued", "tasks waiting in the backlog"),
            ("runs_in_memory", "runs the coordinator holds in memory"),
            ("running_attempts", "attempts running now"),
            ("timers", "retries and deadlines waiting for their time"),
        ):
            if key in stats:
                yield GaugeMetricFamily(f"wfray_{key}", help_text, value=float(stats[key]))
        depth = GaugeMetricFamily(
            "wfray_queue_depth", "ready tasks held for dispatch, by queue", labels=["queue"]
        )
        running = GaugeMetricFamily(
            "wfray_queue_running", "tasks running, by queue", labels=["queue"]
        )
        for name, (held, active) in sorted(stats.get("queues", {}).items()):
            depth.add_metric([name], float(held))
            running.add_metric([name], float(active))
        yield depth
        yield running
        yield from _coordinator_metrics(stats.get("metrics", {}))
        # Counting runs by status is a store query the coordinator may offer in its stats.
        by_status = stats.get("runs_by_status")
        if isinstance(by_status, Mapping):
            runs = GaugeMetricFamily("wfray_runs", "runs by status", labels=["status"])
            for status, count in sorted(by_status.items()):
                runs.add_metric([str(status)], float(count))
            yield runs


def _coordinator_metrics(snapshot: Mapping[str, Any]) -> Iterable[Metric]:
    """The coordinator's own counters (the figures Ray exports too), since it started."""
    for name, samples in sorted(snapshot.items()):
        if name.startswith("queue_") or not samples:
            continue  # queue levels come from the stats above
        labels = sorted({key for tags, _ in samples for key in tags})
        family: Any
        if name.endswith("_total"):
            family = CounterMetricFamily(f"wfray_{name[: -len('_total')]}", name, labels=labels)
        else:
            family = GaugeMetricFamily(f"wfray_{name}", name, labels=labels)
        for tags, value in samples:
            family.add_metric([str(tags.get(key, "")) for key in labels], float(value))
        yield family


class ApiMetrics:
    """The registry behind `/metrics`: the coordinator's gauges and the API's own requests."""

    def __init__(self, stats: StatsSource) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(StatsCollector(stats))
        self.requests = Counter(
            "wfray_http_requests",
            "HTTP requests answered, by method, route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "wfray_http_request_seconds",
            "HTTP request latency until the response starts, by route",
            ["route"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)

    async def middleware(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        # The route template, not the path: one time series per endpoint, not per run id.
        route = getattr(request.scope.get("route"), "path", "unmatched")
        self.latency.labels(route).observe(time.perf_counter() - started)
        self.requests.labels(request.method, route, str(response.status_code)).inc()
        return response
