"""The composition root: the one place that picks adapters and wires them together."""

from __future__ import annotations

from datetime import UTC, datetime

from wfray.application.coordinator import Coordinator, CoordinatorSettings
from wfray.application.ports import RunLedger, RunStore, StepExecutor
from wfray.application.storable import TextLimits
from wfray.config import Settings

MEMORY_URL = "memory://"


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def build_store(settings: Settings) -> RunStore:
    """The RunStore named by the settings' database URL (migrated to the latest schema)."""
    if settings.database_url == MEMORY_URL:
        from wfray.adapters.memory.store import InMemoryRunStore

        return InMemoryRunStore()
    from wfray.adapters.sqlalchemy.store import SqlRunStore

    return SqlRunStore(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)


def coordinator_settings(settings: Settings) -> CoordinatorSettings:
    return CoordinatorSettings(
        queues=settings.queues,
        pool_windows={"cpu": settings.cpu_window, "io": settings.io_window},
        memory_cap=settings.memory_cap,
        max_backlog=settings.max_backlog,
        max_map_items=settings.max_map_items,
        quarantine_after_deaths=settings.quarantine_after_deaths,
        default_retry=settings.default_retry,
        share_short_steps=settings.cpu_attempts_per_task > 1,
        short_step_s=settings.short_step_s,
        text_limits=TextLimits(
            error_chars=settings.max_error_chars,
            traceback_chars=settings.max_traceback_chars,
            log_line_chars=settings.max_log_line_chars,
        ),
    )


def build_coordinator(
    settings: Settings, store: RunLedger, executors: dict[str, StepExecutor]
) -> Coordinator:
    return Coordinator(store, executors, SystemClock(), coordinator_settings(settings))
