"""wfray's metrics on Ray's metrics export endpoint (Prometheus text), scraped for real."""

from __future__ import annotations

import re
import time
import urllib.request
from typing import Any

from tests.conftest import RAY_METRICS_PORT
from tests.fixtures import flows


def scrape() -> str:
    url = f"http://127.0.0.1:{RAY_METRICS_PORT}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def value(text: str, name: str, **tags: str) -> float:
    """The sum of a metric's samples whose tags include `tags` (0 if none)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(f"ray_{name}{{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line[: line.rindex("}") + 1]))
        if all(labels.get(k) == v for k, v in tags.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def eventually(name: str, at_least: float, timeout_s: float = 30, **tags: str) -> float:
    deadline = time.monotonic() + timeout_s
    while True:
        seen = value(scrape(), name, **tags)
        if seen >= at_least or time.monotonic() > deadline:
            return seen
        time.sleep(0.5)


def test_the_figures_move_when_runs_complete(client: Any) -> None:
    before = value(scrape(), "wfray_runs_total", workflow="numbers", status="completed")
    runs = client.submit_many(flows.numbers, [{"count": 3}] * 4)
    views = client.wait([r.run_id for r in runs], timeout=60)
    assert all(v.status.value == "completed" for v in views)

    completed = eventually("wfray_runs_total", before + 4, workflow="numbers", status="completed")
    assert completed >= before + 4
    attempts = eventually("wfray_attempts_total", 4 * 5, workflow="numbers", status="succeeded")
    assert attempts >= 4 * 5  # make + 3 squares + total, per run
    text = scrape()
    assert value(text, "wfray_step_duration_seconds_count", workflow="numbers", step="square") >= 12
    assert "ray_wfray_queue_depth{" in text
