"""The reads on the coordinator's path to a step: a page of the backlog (where its tasks
stand, their runs, the runs' live tasks), and what callers waiting for runs are told."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from wfray.adapters.sqlalchemy import rows
from wfray.adapters.sqlalchemy.fanout_reads import SqlFanOutReader
from wfray.adapters.sqlalchemy.store_base import chunks
from wfray.adapters.sqlalchemy.tables import runs, tasks
from wfray.application.messages import RunView
from wfray.domain.code_env import shown_version
from wfray.domain.records import QueuedTask, RunRecord, TaskRecord
from wfray.domain.status import RunStatus, TaskStatus

QUEUED = TaskStatus.QUEUED.value
COMPLETED = TaskStatus.COMPLETED.value
# a wide fan-out's items that stay in the store when its run is loaded (paged in if undone)
AT_REST = (COMPLETED, TaskStatus.COMPENSATED.value)
# what a view shows of a run: never its input, which may be large
VIEWED = (
    runs.c.run_id,
    runs.c.workflow,
    runs.c.status,
    runs.c.result_json,
    runs.c.result_ref,
    runs.c.error,
    runs.c.version,
    runs.c.env_hash,
)


class SqlPagingReader(SqlFanOutReader):
    def _rows_in(
        self, query: sa.Select[Any], column: sa.ColumnElement[Any], keys: Sequence[str]
    ) -> list[sa.Row[Any]]:
        """The rows of `query` whose `column` is one of `keys`, each key asked once, in
        chunks (a database bounds the parameters of one statement)."""
        found: list[sa.Row[Any]] = []
        with self._errors(), self._engine.connect() as conn:
            for chunk in chunks(list(dict.fromkeys(keys))):
                found.extend(conn.execute(query.where(column.in_(chunk))))
        return found

    def find_runs(self, run_ids: Sequence[str]) -> dict[str, RunRecord]:
        found = self._rows_in(sa.select(runs), runs.c.run_id, run_ids)
        by_id = {run.run_id: run for run in rows.to_runs(found)}
        return {rid: by_id[rid] for rid in run_ids if rid in by_id}

    def find_views(self, run_ids: Sequence[str]) -> dict[str, RunView]:
        by_id: dict[str, RunView] = {}
        for row in self._rows_in(sa.select(*VIEWED), runs.c.run_id, run_ids):
            rid, workflow, status, result_json, result_ref, error, version, env_hash = tuple(row)
            shown = shown_version(version, env_hash)
            status = RunStatus(status)
            by_id[rid] = RunView(rid, workflow, status, result_json, result_ref, error, shown)
        return {rid: by_id[rid] for rid in run_ids if rid in by_id}

    def live_tasks(
        self, run_ids: Sequence[str], window: int
    ) -> tuple[list[TaskRecord], dict[tuple[str, str], tuple[int, int]]]:
        found: list[TaskRecord] = []
        counts: dict[tuple[str, str], tuple[int, int]] = {}
        with self._errors(), self._engine.connect() as conn:
            for chunk in chunks(list(dict.fromkeys(run_ids))):
                whole = sa.select(tasks).where(tasks.c.run_id.in_(chunk), tasks.c.map_index < 0)
                groups = rows.to_tasks(conn.execute(whole))
                found.extend(groups)
                # only a step with a map count has items: runs without one need no more reads
                # (most of a backlog: two queries fewer per chunk of its runs)
                mapped = [g for g in groups if g.map_count is not None]
                if mapped:
                    found.extend(self._live_items(conn, mapped, window, counts))
        found.sort(key=rows.task_order)
        return found, counts

    @staticmethod
    def _live_items(
        conn: sa.Connection,
        groups: list[TaskRecord],
        window: int,
        counts: dict[tuple[str, str], tuple[int, int]],
    ) -> list[TaskRecord]:
        """The items of these fan-outs less the completed (and undone) ones of those wider
        than `window`, which stay in the store and are counted in `counts` instead."""
        mine = tasks.c.run_id.in_(sorted({g.run_id for g in groups}))
        done = sa.func.sum(sa.case((tasks.c.status == COMPLETED, 1), else_=0))
        counted = (
            sa.select(tasks.c.run_id, tasks.c.step, sa.func.count(), done)
            .where(mine, tasks.c.map_index >= 0)
            .group_by(tasks.c.run_id, tasks.c.step)
        )
        for run_id, step, stored, completed in conn.execute(counted):
            counts[(run_id, step)] = (int(stored), int(completed or 0))
        wide = [
            (g.run_id, g.step) for g in groups if g.map_count is not None and g.map_count > window
        ]
        items = sa.select(tasks).where(mine, tasks.c.map_index >= 0)
        if wide:  # their completed (or undone) items stay in the store (counted)
            narrow = sa.tuple_(tasks.c.run_id, tasks.c.step).not_in(wide)
            items = items.where(sa.or_(tasks.c.status.not_in(AT_REST), narrow))
        return rows.to_tasks(conn.execute(items))

    def page_queued(
        self, queue: str, after: tuple[int, int] | None, limit: int
    ) -> list[QueuedTask]:
        # where they stand only: their rows come with their runs' (live_tasks), read once
        place = (tasks.c.run_id, tasks.c.step, tasks.c.map_index, tasks.c.priority, tasks.c.seq)
        query = sa.select(*place).where(tasks.c.status == QUEUED, tasks.c.queue == queue)
        if after is not None:
            priority, seq = after
            query = query.where(
                sa.or_(
                    tasks.c.priority < priority,
                    sa.and_(tasks.c.priority == priority, tasks.c.seq > seq),
                )
            )
        query = query.order_by(tasks.c.priority.desc(), tasks.c.seq.asc()).limit(limit)
        with self._errors(), self._engine.connect() as conn:
            return [QueuedTask(*row) for row in conn.execute(query)]
