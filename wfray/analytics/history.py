"""Realistic, deterministic run history for tests, demos and notebooks.

`generate_history` migrates the store with the project's migrations (so the schema is the
real one) and inserts finished runs of a few workflows, with retries, lost attempts,
failures, compensations (some of which fail), cancellations, log lines and the resources
each attempt held, spread over the last `days` days across a handful of nodes (one of
them slow). `active` adds runs still in flight at `now`, some of them stuck for hours.
Same seed and `now`, same rows.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from wfray.adapters.sqlalchemy.history_rows import SqlHistoryWriter
from wfray.analytics.history_catalog import (
    LOST,
    OUTCOMES,
    TRANSIENT,
    WORKFLOWS,
    Node,
    StepSpec,
    WorkflowSpec,
)
from wfray.domain.status import AttemptStatus, RunStatus, TaskStatus

FLUSH_ROWS = 5_000


@dataclass(frozen=True, slots=True)
class _AttemptKey:
    run_id: str
    step: str
    map_index: int
    number: int
    kind: str


class HistorySink(Protocol):
    """Where generated rows go: a store that inserts them (table name -> rows)."""

    def insert(self, rows: Mapping[str, Sequence[dict[str, Any]]]) -> None: ...


@dataclass
class HistorySummary:
    """What `generate_history` wrote: rows per table and runs per status."""

    runs: int = 0
    tasks: int = 0
    attempts: int = 0
    logs: int = 0
    run_statuses: Counter[str] = field(default_factory=Counter)


def generate_history(
    store_url: str,
    runs: int = 1_000,
    days: int = 30,
    seed: int = 0,
    *,
    active: int = 0,
    now: datetime | None = None,
) -> HistorySummary:
    """Write `runs` finished runs over the last `days` days, plus `active` runs in flight.

    The store is migrated first. Deterministic for a given seed and `now` (which defaults
    to the current time, whole seconds).
    """
    if runs < 0 or active < 0 or days < 1:
        raise ValueError(f"need runs >= 0, active >= 0, days >= 1; got {runs}, {active}, {days}")
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    store = SqlHistoryWriter(store_url)
    try:
        writer = _Writer(store, random.Random(seed), now)
        for index in range(runs):
            # an hour of margin: the last runs finish (retries and all) before `now`
            age = (
                timedelta(hours=1)
                + (timedelta(days=days) - timedelta(hours=1)) * writer.rng.random()
            )
            writer.finished_run(index, now - age)
        for index in range(active):
            writer.active_run(runs + index)
        writer.flush()
        return writer.summary
    finally:
        store.close()


class _Writer:
    def __init__(self, sink: HistorySink, rng: random.Random, now: datetime) -> None:
        self.sink = sink
        self.rng = rng
        self.now = now
        self.summary = HistorySummary()
        self.nodes = [
            Node(f"{rng.getrandbits(224):056x}", f"worker-{i}", 2.2 if i == 3 else 1.0)
            for i in range(1, 5)
        ]
        self.rows: dict[str, list[dict[str, Any]]] = {
            "runs": [],
            "tasks": [],
            "attempts": [],
            "logs": [],
        }
        self.seq = 0

    # -- runs -------------------------------------------------------------------------

    def finished_run(self, index: int, created_at: datetime) -> None:
        workflow = self.rng.choices(WORKFLOWS, [w.weight for w in WORKFLOWS])[0]
        outcome = self.rng.choices([o for o, _ in OUTCOMES], [w for _, w in OUTCOMES])[0]
        failing = self.rng.randrange(len(workflow.steps))
        if outcome in {RunStatus.COMPENSATED, RunStatus.COMPENSATION_FAILED}:
            # compensation needs a compensable step that completed before the failure
            first_undoable = next(i for i, s in enumerate(workflow.steps) if s.compensable)
            failing = max(failing, first_undoable + 1)
        run_id = self._run_id(index)
        clock = created_at + timedelta(seconds=self.rng.expovariate(2.0))
        started = clock
        done: list[tuple[StepSpec, int, int]] = []  # (step, map_index, attempts used)
        for position, step in enumerate(workflow.steps):
            if position < failing or outcome is RunStatus.COMPLETED:
                for map_index in self._items(step):
                    clock, used = self._task(run_id, step, map_index, clock, TaskStatus.COMPLETED)
                    done.append((step, map_index, used))
            elif position == failing:
                status = (
                    TaskStatus.CANCELLED if outcome is RunStatus.CANCELLED else TaskStatus.FAILED
                )
                clock, _ = self._task(run_id, step, -1, clock, status)
            else:
                self._task(run_id, step, -1, clock, TaskStatus.SKIPPED)
        if outcome in {RunStatus.COMPENSATED, RunStatus.COMPENSATION_FAILED}:
            for step, map_index, used in reversed(done):
                if step.compensable:
                    clock = self._compensate(run_id, step, map_index, used, clock, outcome)
        error = None if outcome is RunStatus.COMPLETED else f"step {workflow.steps[failing].name}"
        self._run(run_id, workflow, outcome, created_at, started, clock, error)

    def active_run(self, index: int) -> None:
        workflow = self.rng.choice(WORKFLOWS)
        run_id = self._run_id(index)
        stuck = index % 3 == 0  # every third active run has been running for hours
        age = timedelta(hours=self.rng.uniform(3, 30)) if stuck else timedelta(seconds=30)
        created_at = self.now - age - timedelta(seconds=5)
        clock = created_at + timedelta(seconds=1)
        first = workflow.steps[0]
        if index % 2 == 0:
            self._task(run_id, first, -1, clock, TaskStatus.RUNNING)
            status = RunStatus.RUNNING
        else:
            self._add_task(run_id, first, -1, TaskStatus.QUEUED, created_at, queued_at=clock)
            status = RunStatus.QUEUED
        for step in workflow.steps[1:]:
            self._add_task(run_id, step, -1, TaskStatus.PENDING, created_at)
        started = clock if status is RunStatus.RUNNING else None
        self._run(run_id, workflow, status, created_at, started, None, None)

    def _run_id(self, index: int) -> str:
        return f"run-{index:07d}-{self.rng.getrandbits(32):08x}"

    def _items(self, step: StepSpec) -> list[int]:
        return list(range(self.rng.randint(1, step.fan_out))) if step.fan_out else [-1]

    def _run(
        self,
        run_id: str,
        workflow: WorkflowSpec,
        status: RunStatus,
        created_at: datetime,
        started_at: datetime | None,
        finished_at: datetime | None,
        error: str | None,
    ) -> None:
        self.summary.run_statuses[status.value] += 1
        self._add(
            "runs",
            run_id=run_id,
            workflow=workflow.name,
            version="v1",
            status=status.value,
            input_json=json.dumps({"customer": self.rng.randint(1, 400)}),
            created_at=created_at,
            queue="default",
            priority=0,
            trigger=workflow.trigger,
            started_at=started_at,
            finished_at=finished_at,
            result_json='{"ok": true}' if status is RunStatus.COMPLETED else None,
            error=error,
        )

    # -- tasks and attempts -----------------------------------------------------------

    def _task(
        self, run_id: str, step: StepSpec, map_index: int, clock: datetime, status: TaskStatus
    ) -> tuple[datetime, int]:
        """Attempts of one task ending in `status`; the clock after it and attempts used."""
        created_at = clock
        if status is TaskStatus.SKIPPED:
            self._add_task(run_id, step, map_index, status, created_at)
            return clock, 0
        retries = {TaskStatus.FAILED: 3, TaskStatus.CANCELLED: 0, TaskStatus.RUNNING: 0}.get(
            status, self.rng.choices([0, 1, 2], [0.9, 0.07, 0.03])[0]
        )
        failures = lost = 0
        started_at = None
        for number in range(1, retries + 2):
            last = number == retries + 1
            if not last:
                outcome = AttemptStatus.LOST if self.rng.random() < 0.2 else AttemptStatus.FAILED
            else:
                outcome = {
                    TaskStatus.COMPLETED: AttemptStatus.SUCCEEDED,
                    TaskStatus.FAILED: AttemptStatus.FAILED,
                    TaskStatus.CANCELLED: AttemptStatus.CANCELLED,
                    TaskStatus.RUNNING: AttemptStatus.RUNNING,
                }[status]
            lost += outcome is AttemptStatus.LOST
            failures += outcome is AttemptStatus.FAILED
            begun, clock = self._attempt(run_id, step, map_index, number, clock, outcome, "step")
            started_at = started_at or begun
            clock += timedelta(seconds=2**number * self.rng.uniform(0.5, 1.5))
        finished = None if status is TaskStatus.RUNNING else clock
        self._add_task(
            run_id,
            step,
            map_index,
            status,
            created_at,
            attempts=retries + 1,
            failures=failures,
            lost=lost,
            queued_at=created_at,
            started_at=started_at,
            finished_at=finished,
        )
        return clock, retries + 1

    def _compensate(
        self,
        run_id: str,
        step: StepSpec,
        map_index: int,
        used: int,
        clock: datetime,
        outcome: RunStatus,
    ) -> datetime:
        fails = outcome is RunStatus.COMPENSATION_FAILED
        tries = 3 if fails else 1
        for number in range(used + 1, used + tries + 1):
            status = AttemptStatus.FAILED if fails else AttemptStatus.SUCCEEDED
            _, clock = self._attempt(run_id, step, map_index, number, clock, status, "compensation")
        task = next(
            row
            for row in reversed(self.rows["tasks"])
            if (row["run_id"], row["step"], row["map_index"]) == (run_id, step.name, map_index)
        )
        task["status"] = (TaskStatus.COMPENSATION_FAILED if fails else TaskStatus.COMPENSATED).value
        return clock

    def _attempt(
        self,
        run_id: str,
        step: StepSpec,
        map_index: int,
        number: int,
        clock: datetime,
        status: AttemptStatus,
        kind: str,
    ) -> tuple[datetime, datetime]:
        """One attempt queued at `clock`, with its log lines; when it started and ended."""
        node = self.rng.choice(self.nodes)
        waited = self.rng.expovariate(5.0) + (self.rng.uniform(20, 120) if number > 3 else 0)
        started_at = clock + timedelta(seconds=waited)
        wall = step.seconds * node.speed * self.rng.lognormvariate(0, 0.35)
        running = status is AttemptStatus.RUNNING
        finished_at = None if running else started_at + timedelta(seconds=wall)
        error = self._error(step, status)
        self._add(
            "attempts",
            run_id=run_id,
            step=step.name,
            map_index=map_index,
            attempt=number,
            status=status.value,
            executor=f"{step.pool}-{self.rng.randrange(2)}",
            incarnation="inc-1",
            queued_at=clock,
            started_at=started_at,
            finished_at=finished_at,
            node_id=node.node_id,
            worker_id=f"{self.rng.getrandbits(112):028x}",
            host=node.host,
            pid=self.rng.randint(2_000, 60_000),
            error_type=error[0] if error else None,
            error_message=error[1] if error else None,
            traceback=f"Traceback (most recent call last):\n{error[0]}: {error[1]}"
            if error
            else None,
            kind=kind,
            resources_json=json.dumps(step.resources),
        )
        lines = [("INFO", f"{kind} {step.name} started on {node.host}")]
        if error:
            lines.append(("ERROR", f"{error[0]}: {error[1]}"))
        elif not running:
            lines.append(("INFO", f"{step.name} done in {wall:.2f}s"))
        key = _AttemptKey(run_id, step.name, map_index, number, kind)
        self._log_lines(key, lines, started_at, wall)
        return started_at, finished_at or started_at

    def _error(self, step: StepSpec, status: AttemptStatus) -> tuple[str, str] | None:
        """The error type and message an attempt ending in `status` records, if any."""
        if status is AttemptStatus.LOST:
            return LOST
        if status is AttemptStatus.FAILED:
            family = "send" if step.name.startswith("send") else step.pool
            return self.rng.choice(TRANSIENT[family])
        if status is AttemptStatus.CANCELLED:
            return ("CancelledError", "the run was cancelled")
        return None

    def _log_lines(
        self,
        key: _AttemptKey,
        lines: list[tuple[str, str]],
        started_at: datetime,
        wall: float,
    ) -> None:
        """The attempt's log lines, spread evenly over its wall time."""
        for offset, (level, message) in enumerate(lines):
            ts = started_at + timedelta(seconds=wall * offset / len(lines))
            identity = f"{key.run_id}|{key.step}|{key.map_index}|{key.number}|{key.kind}|{offset}"
            self._add(
                "logs",
                line_key=hashlib.sha256(identity.encode()).hexdigest()[:32],
                run_id=key.run_id,
                step=key.step,
                map_index=key.map_index,
                attempt=key.number,
                ts=ts,
                level=level,
                logger=f"wfray.step.{key.step}",
                message=message,
            )

    def _add_task(
        self,
        run_id: str,
        step: StepSpec,
        map_index: int,
        status: TaskStatus,
        created_at: datetime,
        **values: Any,
    ) -> None:
        self.seq += 1
        row = {
            "run_id": run_id,
            "step": step.name,
            "map_index": map_index,
            "status": status.value,
            "pool": step.pool,
            "created_at": created_at,
            "queue": "default",
            "priority": 0,
            "seq": self.seq,
            "attempts": 0,
            "failures": 0,
            "lost": 0,
        }
        row.update(values)
        self._add("tasks", **row)

    # -- writing ----------------------------------------------------------------------

    def _add(self, table: str, **row: Any) -> None:
        self.rows[table].append(row)
        setattr(self.summary, table, getattr(self.summary, table) + 1)
        # Flush between runs only, so a compensation can still find its task row.
        if table == "runs" and sum(len(rows) for rows in self.rows.values()) >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        self.sink.insert(self.rows)
        for rows in self.rows.values():
            rows.clear()
