"""wfray's metrics on Ray's metrics export endpoint (Prometheus text), scraped for real."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from typing import Any

from tests.conftest import RAY_METRICS_PORT
from tests.fixtures import flows
from wfray.observability import GRAFANA_DASHBOARD


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


def test_cpu_steps_run_under_their_workflow_and_step_name(client: Any) -> None:
    (run,) = client.submit_many(flows.named, [None])
    assert client.wait([run.run_id], timeout=60)[0].status.value == "completed"
    assert client.detail(run.run_id).run.result_json == '"wfray:named.whoami"'


# Counters Ray exports only once something happened (a retry, a refused commit...).
EVENT_COUNTERS = {
    "ray_wfray_retries_total",
    "ray_wfray_compensations_total",
    "ray_wfray_outcomes_quarantined_total",
    "ray_wfray_coordinator_commit_failures_total",
}


def test_the_coordinators_health_is_exported_under_the_dashboards_names(client: Any) -> None:
    runs = client.submit_many(flows.numbers, [{"count": 2}] * 3)
    assert all(v.status.value == "completed" for v in client.wait([r.run_id for r in runs], 60))

    assert eventually("wfray_coordinator_turn_seconds_count", 1) >= 1
    assert eventually("wfray_coordinator_commit_seconds_count", 1) >= 1
    assert eventually("wfray_store_bytes", 1) > 0  # SQLite's size, measured in a thread
    assert eventually("wfray_coordinator_starts", 1, cause="first_start") >= 1
    text = scrape()
    scraped = set(re.findall(r"^(ray_wfray_[a-z_]+)\{", text, re.MULTILINE))
    board = json.loads(GRAFANA_DASHBOARD.read_text())
    used = {
        name
        for panel in board["panels"]
        for target in panel.get("targets", [])
        for name in re.findall(r"\bray_wfray_[a-z_]+\b", target["expr"])
    }
    schedules = {n for n in used if "schedule" in n}  # no schedule ran here
    missing = used - scraped - EVENT_COUNTERS - schedules
    assert not missing, f"the dashboard shows metrics this instance does not export: {missing}"

    health = client.stats()["health"]  # what /healthz shows a reader
    assert health["start_cause"] == "first_start" and health["starts"]["first_start"] == 1
    assert health["turns"] > 0 and set(health["attempts_in_flight"]) >= {"cpu", "io"}
    assert health["store_bytes"] > 0 and health["oldest_queued_run_age_s"] == 0
