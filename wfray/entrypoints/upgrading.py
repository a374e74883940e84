"""An upgrade of wfray as the CLI and the HTTP API run it: the store migrated and the actors
replaced (adapters/ray/upgrade.py), and the audit trail told who did it and what came of it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from wfray.adapters.ray.upgrade import UpgradeReport, upgrade
from wfray.adapters.sqlalchemy.audit import SqlAuditLog
from wfray.adapters.sqlalchemy.migrate import upgrade_reporting
from wfray.config import Settings
from wfray.domain.audit import Origin, audit_entry

log = logging.getLogger("wfray.upgrade")


def upgrade_here(
    settings: Settings,
    origin: Origin,
    timeout_s: float,
    *,
    restart: bool = False,
    say: Callable[[str], None] = lambda _: None,
) -> UpgradeReport:
    """Upgrade the store and the actors of `settings` to this wfray, recorded as `origin`'s
    action. The process must be attached to the Ray cluster."""
    params = {"namespace": settings.namespace, "timeout_s": timeout_s, "restart": restart}
    try:
        report = upgrade(
            settings,
            lambda: upgrade_reporting(settings.database_url),
            timeout_s,
            restart=restart,
            say=say,
        )
    except Exception as exc:
        try:  # the failure is what the caller must hear of, not the trail's
            _record(settings, origin, params, f"error: {type(exc).__name__}: {exc}")
        except Exception as unrecorded:
            log.warning("the failed upgrade could not be recorded: %s", unrecorded)
        raise
    _record(settings, origin, params, "; ".join(report.lines()))
    return report


def _record(settings: Settings, origin: Origin, params: dict[str, object], outcome: str) -> None:
    audit = SqlAuditLog(settings.database_url, create=False)
    try:
        entry = audit_entry(datetime.now(UTC), origin, "upgrade", (), params, outcome)
        audit.record([entry])
    finally:
        audit.close()
