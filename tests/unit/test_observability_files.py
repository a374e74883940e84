"""The shipped Grafana dashboard and Prometheus alert rules use only metrics wfray exports.

The names come from the Ray metrics adapter's declarations (what `RayMetricsExporter`
creates); tests/integration/test_metrics_on_ray.py checks the same names in a real scrape.
`promtool check rules` runs too where Prometheus is installed (Debian's `prometheus`).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from wfray.application.metrics import exported_names
from wfray.observability import ALERT_RULES, GRAFANA_DASHBOARD

METRIC = re.compile(r"\bray_wfray_[a-z_]+\b")


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(GRAFANA_DASHBOARD.read_text())
    return loaded


def panel_queries() -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in dashboard()["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


def alert_rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(ALERT_RULES.read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def test_every_panel_queries_only_metrics_wfray_exports() -> None:
    exported = exported_names()
    for title, expr in panel_queries():
        used = set(METRIC.findall(expr))
        assert used, f"panel {title!r} queries no wfray metric: {expr}"
        assert used <= exported, f"panel {title!r} uses unknown metrics {used - exported}"


def test_every_alert_rule_uses_only_metrics_wfray_exports() -> None:
    exported = exported_names()
    rules = alert_rules()
    assert {r["alert"] for r in rules} >= {
        "WfrayCoordinatorRestarting",
        "WfrayBacklogAgeGrowing",
        "WfrayCommitsRefused",
        "WfrayScheduleLagging",
    }
    for rule in rules:
        used = set(METRIC.findall(rule["expr"]))
        assert used and used <= exported, f"{rule['alert']}: unknown metrics {used - exported}"
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]


def test_the_dashboard_covers_the_coordinators_health() -> None:
    used = {m for _, expr in panel_queries() for m in METRIC.findall(expr)}
    for name in (
        "ray_wfray_coordinator_turn_seconds_bucket",
        "ray_wfray_coordinator_commit_seconds_bucket",
        "ray_wfray_coordinator_commit_failures_total",
        "ray_wfray_coordinator_starts",
        "ray_wfray_executor_outbox_outcomes",
        "ray_wfray_executor_attempts_in_flight",
        "ray_wfray_oldest_queued_run_age_seconds",
        "ray_wfray_oldest_running_attempt_age_seconds",
        "ray_wfray_outcomes_quarantined_total",
        "ray_wfray_store_bytes",
    ):
        assert name in used, f"no panel shows {name}"


def test_the_dashboard_is_importable_grafana_json() -> None:
    board = dashboard()
    assert board["uid"] == "wfray" and board["title"]
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"] for v in board["templating"]["list"]}
    assert {"datasource", "SessionName"} <= variables
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == "${datasource}"
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"])
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids))


def test_the_files_ship_as_package_data() -> None:
    pyproject = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    assert '"observability/*.json"' in pyproject and '"observability/*.yml"' in pyproject


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_accepts_the_alert_rules() -> None:
    checked = subprocess.run(
        ["promtool", "check", "rules", str(ALERT_RULES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in checked.stdout
