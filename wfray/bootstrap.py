"""The composition root: the one place that picks adapters and wires them together.

`build_system` makes everything the coordinator actor runs from the settings: the store, the
executors, the coordinator, the read side, the scheduler and the loops beside them. Adapters
are imported where they are picked, so that importing this module pulls in neither Ray nor a
database driver.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from wfray.application.ports import AuditLog, RunLedger, RunStore, ScheduleStore, StepExecutor
from wfray.application.queries import Queries
from wfray.application.storable import TextLimits
from wfray.config import Settings
from wfray.coordinator.coordinator import Coordinator, CoordinatorSettings
from wfray.coordinator.scheduler import Scheduler

MEMORY_URL = "memory://"
SCHEDULER_TICK_S = 1.0

# A loop to run beside the coordinator while it lives: its task name, and how to start it.
Loop = tuple[str, Callable[[], Coroutine[Any, Any, None]]]


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class System:
    """wfray wired: what the coordinator actor starts and answers its clients with."""

    store: RunStore
    coordinator: Coordinator
    queries: Queries
    scheduler: Scheduler
    loops: tuple[Loop, ...]
    audit: AuditLog


async def build_system(settings: Settings) -> System:
    """Everything from the settings. The store comes first (migrated, off the event loop):
    a database that cannot be reached starts no executor actors."""
    store = await asyncio.to_thread(build_store, settings)
    coordinator = build_coordinator(settings, store, await build_executors(settings))
    scheduler = Scheduler(build_schedule_store(settings, store), coordinator, SystemClock())
    audit = build_audit_log(settings, store)
    loops = (*build_loops(settings, coordinator, scheduler), *audit_loops(settings, audit))
    return System(
        store=store,
        coordinator=coordinator,
        queries=Queries(store),
        scheduler=scheduler,
        loops=loops,
        audit=audit,
    )


def build_store(settings: Settings) -> RunStore:
    """The RunStore named by the settings' database URL (migrated to the latest schema)."""
    if settings.database_url == MEMORY_URL:
        from wfray.adapters.memory.store import InMemoryRunStore

        return InMemoryRunStore()
    from wfray.adapters.sqlalchemy.store import SqlRunStore

    return SqlRunStore(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)


def build_schedule_store(settings: Settings, runs: RunStore) -> ScheduleStore:
    """The schedule store beside the run store: the same database (and engine) or memory."""
    if settings.database_url == MEMORY_URL:
        from wfray.adapters.memory.schedule_store import InMemoryScheduleStore

        return InMemoryScheduleStore()
    from wfray.adapters.sqlalchemy.schedule_store import SqlScheduleStore
    from wfray.adapters.sqlalchemy.store import SqlRunStore

    if isinstance(runs, SqlRunStore):
        return SqlScheduleStore(runs.engine)
    return SqlScheduleStore(settings.database_url)


def build_audit_log(settings: Settings, runs: RunStore | None = None) -> AuditLog:
    """The audit trail beside the run store: the same database (and engine) or memory."""
    if settings.database_url == MEMORY_URL:
        from wfray.adapters.memory.audit import InMemoryAuditLog

        return InMemoryAuditLog()
    from wfray.adapters.sqlalchemy.audit import SqlAuditLog
    from wfray.adapters.sqlalchemy.store import SqlRunStore

    if isinstance(runs, SqlRunStore):
        return SqlAuditLog(runs.engine)
    return SqlAuditLog(settings.database_url)


def audit_loops(settings: Settings, audit: AuditLog) -> tuple[Loop, ...]:
    """The audit trail's own retention (WFRAY_AUDIT_RETENTION_DAYS; 0 keeps it all)."""
    from wfray.coordinator.audit_retention import purge_forever

    if settings.audit_retention_days <= 0:
        return ()
    keep = timedelta(days=settings.audit_retention_days)
    return (("wfray-audit-retention", lambda: purge_forever(audit, SystemClock(), keep)),)


def coordinator_actor(settings: Settings, runtime_env: dict[str, Any] | None = None) -> Any:
    """The coordinator actor of the cluster (got, or created to host what `build_system`
    builds; in `runtime_env` if given: an upgrade's new code)."""
    from wfray.adapters.ray import actors

    return actors.coordinator_actor(settings, build_system, runtime_env=runtime_env)


async def build_executors(settings: Settings) -> dict[str, StepExecutor]:
    """The detached executor actors by id: cpu, io, io.1, ... (each got if it already runs
    and runs this wfray)."""
    from wfray.adapters.ray.actors import step_executors

    return await step_executors(settings)


def coordinator_settings(settings: Settings) -> CoordinatorSettings:
    return CoordinatorSettings(
        queues=settings.queues,
        pool_windows={"cpu": settings.cpu_window, "io": settings.io_window},
        memory_cap=settings.memory_cap,
        max_backlog=settings.max_backlog,
        max_map_items=settings.max_map_items,
        max_result_bytes=settings.max_result_bytes,
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
    from wfray.adapters.ray.packages import RayPackageKeeper

    return Coordinator(
        store,
        executors,
        SystemClock(),
        coordinator_settings(settings),
        packages=RayPackageKeeper(settings.blob_root),
    )


def build_loops(
    settings: Settings, coordinator: Coordinator, scheduler: Scheduler
) -> tuple[Loop, ...]:
    """The scheduler's ticks, the metrics export, and (when some pool may grow) the requests
    to Ray's autoscaler."""
    from wfray.adapters.ray.autoscale import BacklogScaler, enabled, max_bundles
    from wfray.adapters.ray.metrics import export_forever

    loops: list[Loop] = [
        ("wfray-scheduler-loop", lambda: scheduler.run_forever(SCHEDULER_TICK_S)),
        ("wfray-metrics-export", lambda: export_forever(coordinator)),
    ]
    if enabled(settings):
        scaler = BacklogScaler(coordinator, max_bundles(settings))
        interval_s = settings.autoscale_interval_s
        loops.append(("wfray-autoscale-loop", lambda: scaler.run_forever(interval_s)))
    return tuple(loops)
