"""The audit trail's retention: entries older than their keep period go, once an hour.

Separate from the runs' retention (`wfray retention`): an audit trail usually outlives the
runs it speaks of (WFRAY_AUDIT_RETENTION_DAYS, a year by default).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from wfray.application.ports import AuditLog, Clock

PURGE_EVERY_S = 3600.0
log = logging.getLogger(__name__)


async def purge_once(audit: AuditLog, clock: Clock, keep: timedelta) -> int:
    """Delete the entries recorded more than `keep` ago; how many went."""
    return await asyncio.to_thread(audit.purge, clock.now() - keep)


async def purge_forever(
    audit: AuditLog, clock: Clock, keep: timedelta, every_s: float = PURGE_EVERY_S
) -> None:
    while True:
        try:
            gone = await purge_once(audit, clock, keep)
            if gone:
                log.info("audit retention: %d entries older than %s deleted", gone, keep)
        except Exception:  # an outage: the next hour tries again; the loop must not die
            log.warning("audit retention failed; trying again in %.0f s", every_s, exc_info=True)
        await asyncio.sleep(every_s)
