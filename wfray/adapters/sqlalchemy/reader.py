"""The read side of SqlRunStore: runs, tasks, attempts, logs, workflows, claims, marks.

Each call is one connection of the read engine; lists keyed by many ids are read in chunks
that stay under the database's parameter limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa

from wfray.adapters.sqlalchemy import claims, quarantine, rows, unique
from wfray.adapters.sqlalchemy.paging_reads import SqlPagingReader
from wfray.adapters.sqlalchemy.tables import (
    attempts,
    counters,
    logs,
    runs,
    runtime_envs,
    tasks,
    workflows,
)
from wfray.application.quarantine import QuarantinedOutcome
from wfray.application.views import StoreFacts
from wfray.domain.claims import ClaimRecord
from wfray.domain.reads import LogQuery, RunFilter
from wfray.domain.records import AttemptRecord, LogRecord, RunRecord, TaskRecord
from wfray.domain.status import ACTIVE_RUNS, AttemptStatus, RunStatus, TaskStatus
from wfray.domain.workflow import WorkflowSchema

QUEUED = TaskStatus.QUEUED.value
QUEUED_RUN = RunStatus.QUEUED.value


# True when the current database sorts text as C does (libc provider, C or C.UTF-8 locale).
BYTEWISE_DATABASE = """
SELECT datcollate IN ('C', 'POSIX', 'C.UTF-8', 'C.utf8')
       AND to_jsonb(d) ->> 'datlocprovider' IS DISTINCT FROM 'i'
FROM pg_database AS d WHERE datname = current_database()
"""


class SqlRunReader(SqlPagingReader):
    """Reads through the plain engine; writes nothing."""

    _bytewise_collation: bool | None = None

    def get_workflow(self, name: str, version: str | None = None) -> WorkflowSchema | None:
        query = sa.select(workflows.c.schema_json).where(workflows.c.name == name)
        if version is not None:
            query = query.where(workflows.c.version == version)
        query = query.order_by(workflows.c.seq.desc()).limit(1)
        with self._errors(), self._engine.connect() as conn:
            text = conn.execute(query).scalar_one_or_none()
        return None if text is None else WorkflowSchema.model_validate_json(text)

    def get_runtime_envs(self, env_hashes: Sequence[str]) -> dict[str, str]:
        if not env_hashes:
            return {}
        query = sa.select(runtime_envs.c.env_hash, runtime_envs.c.env_json).where(
            runtime_envs.c.env_hash.in_(sorted(set(env_hashes)))
        )
        with self._errors(), self._engine.connect() as conn:
            return {row.env_hash: row.env_json for row in conn.execute(query)}

    def list_workflows(self) -> list[WorkflowSchema]:
        latest = (
            sa.select(workflows.c.name, sa.func.max(workflows.c.seq).label("seq"))
            .group_by(workflows.c.name)
            .subquery()
        )
        query = sa.select(workflows.c.name, workflows.c.schema_json).join(
            latest, sa.and_(workflows.c.name == latest.c.name, workflows.c.seq == latest.c.seq)
        )
        with self._errors(), self._engine.connect() as conn:
            found = conn.execute(query).all()
        return [WorkflowSchema.model_validate_json(row.schema_json) for row in sorted(found)]

    def find_idempotency_keys(self, keys: Sequence[str]) -> dict[str, str]:
        query = sa.select(runs.c.idempotency_key, runs.c.run_id)
        found = {
            row.idempotency_key: row.run_id
            for row in self._rows_in(query, runs.c.idempotency_key, keys)
        }
        return {key: found[key] for key in keys if key in found}

    def find_unique_runs(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], RunRecord]:
        with self._errors(), self._engine.connect() as conn:
            return unique.find_unique_runs(conn, keys)

    def list_runs(self, wanted: RunFilter) -> list[RunRecord]:
        query = sa.select(runs)
        if wanted.position is not None:
            at, run_id = wanted.position
            query = query.where(
                sa.or_(
                    runs.c.created_at < at,
                    sa.and_(runs.c.created_at == at, self._run_id_order < run_id),
                )
            )
        if wanted.created_after is not None:
            query = query.where(runs.c.created_at >= wanted.created_after)
        if wanted.created_before is not None:
            query = query.where(runs.c.created_at < wanted.created_before)
        if wanted.workflow is not None:
            query = query.where(runs.c.workflow == wanted.workflow)
        if wanted.status is not None:
            query = query.where(runs.c.status == wanted.status.value)
        newest_first = (runs.c.created_at.desc(), self._run_id_order.desc())
        query = query.order_by(*newest_first).limit(wanted.limit)
        with self._errors(), self._engine.connect() as conn:
            return rows.to_runs(conn.execute(query))

    def run_ids_starting(self, prefix: str, limit: int) -> list[str]:
        """A range on the primary key in byte order (`id >= prefix AND id < successor`), not
        LIKE: `_` is a wildcard there and SQLite's LIKE ignores case."""
        with self._errors(), self._engine.connect() as conn:
            column = runs.c.run_id if self._sorts_bytewise(conn) else runs.c.run_id.collate("C")
            query = sa.select(runs.c.run_id).where(column >= prefix)
            upper = successor(prefix)
            if upper is not None:
                query = query.where(column < upper)
            found = conn.execute(query.order_by(column).limit(limit)).scalars().all()
        return [rid for rid in found if rid.startswith(prefix)]

    def _sorts_bytewise(self, conn: sa.Connection) -> bool:
        """Whether the database's own collation is byte order, so that a range on run_id
        walks its primary key index. SQLite's BINARY is; a PostgreSQL database is when its
        collation is C (or glibc's C.UTF-8, code point order). On any other PostgreSQL the
        range is taken under COLLATE "C", which no index of the schema serves: it scans."""
        if self._bytewise_collation is None:
            self._bytewise_collation = conn.dialect.name != "postgresql" or bool(
                conn.execute(sa.text(BYTEWISE_DATABASE)).scalar()
            )
        return self._bytewise_collation

    def child_runs(
        self, parent_run_ids: Sequence[str], limit: int | None = None
    ) -> list[RunRecord]:
        if limit is None:
            found = rows.to_runs(
                self._rows_in(sa.select(runs), runs.c.parent_run_id, parent_run_ids)
            )
            return sorted(found, key=lambda r: (r.created_at, r.run_id))
        parents = runs.c.parent_run_id.in_(list(dict.fromkeys(parent_run_ids)))  # a run shown
        oldest = (runs.c.created_at, self._run_id_order)
        with self._errors(), self._engine.connect() as conn:
            return rows.to_runs(
                conn.execute(sa.select(runs).where(parents).order_by(*oldest).limit(limit))
            )

    def get_tasks(self, run_ids: Sequence[str]) -> list[TaskRecord]:
        found = rows.to_tasks(self._rows_in(sa.select(tasks), tasks.c.run_id, run_ids))
        found.sort(key=rows.task_order)
        return found

    def get_attempts(self, run_id: str) -> list[AttemptRecord]:
        query = sa.select(attempts).where(attempts.c.run_id == run_id)
        with self._errors(), self._engine.connect() as conn:
            found = rows.to_attempts(conn.execute(query))
        found.sort(key=rows.attempt_order)
        return found

    def page_tasks(
        self, run_id: str, after: tuple[str, int] | None, limit: int
    ) -> list[TaskRecord]:
        # In the primary key's own order and collation, so that a page is a range of its
        # index: ordering by `step COLLATE "C"` made PostgreSQL read and sort every row of
        # the run (there, of the table) for each page: 275 ms a page of a run of 100,000
        # attempts, 0.1 ms by the index. Step names then follow the database's collation
        # (byte order under C and C.UTF-8); the cursor compares in the same one, so the
        # pages still hold every row once.
        step = tasks.c.step
        query = sa.select(tasks).where(tasks.c.run_id == run_id)
        if after is not None:
            query = query.where(sa.tuple_(step, tasks.c.map_index) > sa.tuple_(*after))
        query = query.order_by(step, tasks.c.map_index).limit(limit)
        with self._errors(), self._engine.connect() as conn:
            return rows.to_tasks(conn.execute(query))

    def running_attempts(self, run_ids: Sequence[str]) -> list[AttemptRecord]:
        running = sa.select(attempts).where(attempts.c.status == AttemptStatus.RUNNING.value)
        return rows.to_attempts(self._rows_in(running, attempts.c.run_id, run_ids))

    def page_attempts(
        self, run_id: str, after: tuple[str, int, int] | None, limit: int
    ) -> list[AttemptRecord]:
        step = attempts.c.step  # the primary key's order: see page_tasks
        key = sa.tuple_(step, attempts.c.map_index, attempts.c.attempt)
        query = sa.select(attempts).where(attempts.c.run_id == run_id)
        if after is not None:
            query = query.where(key > sa.tuple_(*after))
        query = query.order_by(step, attempts.c.map_index, attempts.c.attempt).limit(limit)
        with self._errors(), self._engine.connect() as conn:
            return rows.to_attempts(conn.execute(query))

    def count_history(self, run_id: str) -> tuple[int, int]:
        count = sa.func.count()
        with self._errors(), self._engine.connect() as conn:
            found_tasks = conn.scalar(sa.select(count).where(tasks.c.run_id == run_id))
            found_attempts = conn.scalar(sa.select(count).where(attempts.c.run_id == run_id))
        return int(found_tasks or 0), int(found_attempts or 0)

    def get_logs(self, wanted: LogQuery) -> list[LogRecord]:
        query = sa.select(logs).where(logs.c.run_id == wanted.run_id)
        if wanted.step is not None:
            query = query.where(logs.c.step == wanted.step)
        if wanted.after_id is not None:
            query = query.where(logs.c.id > wanted.after_id)
        query = query.order_by(logs.c.id)
        if wanted.limit is not None:
            query = query.limit(wanted.limit)
        with self._errors(), self._engine.connect() as conn:
            return [rows.to_log(row._mapping) for row in conn.execute(query)]

    def load_active(
        self, with_tasks: bool = True
    ) -> tuple[list[RunRecord], list[TaskRecord], list[AttemptRecord]]:
        active = [status.value for status in ACTIVE_RUNS]
        active_ids = sa.select(runs.c.run_id).where(runs.c.status.in_(active))
        with self._errors(), self._engine.connect() as conn:
            found_runs = rows.to_runs(
                conn.execute(sa.select(runs).where(runs.c.status.in_(active)))
            )
            found_tasks = (
                rows.to_tasks(conn.execute(sa.select(tasks).where(tasks.c.run_id.in_(active_ids))))
                if with_tasks
                else []
            )
            query = sa.select(attempts).where(attempts.c.status == AttemptStatus.RUNNING.value)
            found_attempts = rows.to_attempts(conn.execute(query))
        found_runs.sort(key=lambda run: (run.created_at, run.run_id))
        found_tasks.sort(key=rows.task_order)
        found_attempts.sort(key=lambda a: (a.run_id, *rows.attempt_order(a)))
        return found_runs, found_tasks, found_attempts

    def pending_deadlines(self) -> list[tuple[str, datetime]]:
        unfinished = [s.value for s in RunStatus if not s.finished]
        query = sa.select(runs.c.run_id, runs.c.deadline_at).where(
            runs.c.deadline_at.is_not(None), runs.c.status.in_(unfinished)
        )
        with self._errors(), self._engine.connect() as conn:
            return [(row.run_id, row.deadline_at) for row in conn.execute(query)]

    def count_queued(self) -> int:
        query = sa.select(sa.func.count()).select_from(tasks).where(tasks.c.status == QUEUED)
        with self._errors(), self._engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def queued_queues(self) -> list[str]:
        query = sa.select(tasks.c.queue).where(tasks.c.status == QUEUED).distinct()
        with self._errors(), self._engine.connect() as conn:
            return sorted(conn.execute(query).scalars())

    def counters(self, prefix: str) -> dict[str, int]:
        query = sa.select(counters.c.name, counters.c.value).where(
            sa.func.substr(counters.c.name, 1, len(prefix)) == prefix
        )
        with self._errors(), self._engine.connect() as conn:
            return {name: int(value) for name, value in conn.execute(query)}

    def store_facts(self) -> StoreFacts:
        # one index seek per workflow (workflow, status, created_at), never a scan of the
        # backlog: a million queued runs cost what ten do
        per_flow = sa.select(workflows.c.name).distinct()
        with self._errors(), self._engine.connect() as conn:
            firsts = []
            for (name,) in conn.execute(per_flow):
                query = sa.select(sa.func.min(runs.c.created_at)).where(
                    runs.c.workflow == name, runs.c.status == QUEUED_RUN
                )
                first = conn.execute(query).scalar_one_or_none()
                if first is not None:
                    firsts.append(first)
            size = self._size_bytes(conn)
        return StoreFacts(min(firsts, default=None), size)

    def _size_bytes(self, conn: sa.Connection) -> int | None:
        dialect = self._engine.dialect.name
        if dialect == "sqlite":
            pages = conn.exec_driver_sql("PRAGMA page_count").scalar_one()
            page_size = conn.exec_driver_sql("PRAGMA page_size").scalar_one()
            return int(pages) * int(page_size)
        if dialect == "postgresql":
            size = conn.exec_driver_sql("SELECT pg_database_size(current_database())")
            return int(size.scalar_one())
        return None

    def max_task_seq(self) -> int:
        query = sa.select(sa.func.coalesce(sa.func.max(tasks.c.seq), 0))
        with self._errors(), self._engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def get_claim(self, key: str) -> ClaimRecord | None:
        with self._errors(), self._engine.connect() as conn:
            return claims.get(conn, key)

    def claims_of(self, run_ids: Sequence[str], limit: int | None = None) -> list[ClaimRecord]:
        with self._errors(), self._engine.connect() as conn:
            return claims.of_runs(conn, run_ids, limit)

    def quarantined_outcomes(self) -> list[QuarantinedOutcome]:
        with self._errors(), self._engine.connect() as conn:
            return quarantine.listed(conn)


def successor(prefix: str) -> str | None:
    """The least string greater than every string starting with `prefix` (None: no bound).

    Its last character plus one, past the surrogates that UTF-8 cannot hold."""
    while prefix:
        last = ord(prefix[-1]) + 1
        if last == 0xD800:
            last = 0xE000
        if last <= 0x10FFFF:
            return prefix[:-1] + chr(last)
        prefix = prefix[:-1]
    return None
