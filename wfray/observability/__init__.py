"""What operators load into their monitoring: a Grafana dashboard of wfray's metrics
(`GRAFANA_DASHBOARD`) and Prometheus alert rules (`ALERT_RULES`), shipped as package data.

Both use the names Ray's metrics export gives wfray's metrics (`ray_wfray_...`, declared in
wfray/adapters/ray/metrics.py); tests/unit/test_observability_files.py checks that every
name they use is one wfray exports.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
GRAFANA_DASHBOARD = HERE / "grafana_dashboard.json"
ALERT_RULES = HERE / "alerts.yml"

__all__ = ["ALERT_RULES", "GRAFANA_DASHBOARD"]
