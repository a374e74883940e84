"""The SQL store's side of erasure: finding a data subject's runs and deleting their rows.

Matching reads the runs in pages (their inputs are JSON text the database cannot search the
same way on SQLite and PostgreSQL); deleting is one write transaction that first checks that
every chosen run is still finished, so a run resumed meanwhile is never deleted under it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sqlalchemy as sa

from wfray.adapters.sqlalchemy.arrow import OpenedStore
from wfray.adapters.sqlalchemy.engine import unavailable_as_store_error
from wfray.adapters.sqlalchemy.retention import FINISHED, SqlRetentionBatch
from wfray.adapters.sqlalchemy.store_base import chunks
from wfray.adapters.sqlalchemy.tables import claims, runs

PAGE = 2000
PREV_COLUMNS = ("prev_run_id", "prev_step", "prev_map_index", "prev_attempt")
# (run id, status, input JSON, parent run id)
RunRow = tuple[str, str, str, str | None]


class SqlErasureStore(OpenedStore):
    """Erasure over a SQLite or PostgreSQL store whose schema is current."""

    def matching(self, wanted: Callable[[RunRow], bool]) -> dict[str, str]:
        """Run id -> status of the runs `wanted` picks, and of all their descendants."""
        found: dict[str, str] = {}
        children: dict[str, list[tuple[str, str]]] = {}
        after = ""
        columns = (runs.c.run_id, runs.c.status, runs.c.input_json, runs.c.parent_run_id)
        with unavailable_as_store_error(self._engine.url), self._engine.connect() as conn:
            while True:
                page = conn.execute(
                    sa.select(*columns)
                    .where(runs.c.run_id > after)
                    .order_by(runs.c.run_id)
                    .limit(PAGE)
                ).all()
                for run_id, status, input_json, parent in page:
                    if wanted((run_id, status, input_json, parent)):
                        found[run_id] = status
                    if parent is not None:
                        children.setdefault(parent, []).append((run_id, status))
                if len(page) < PAGE:
                    break
                after = page[-1][0]
        return _with_descendants(found, children)

    def delete(self, run_ids: Sequence[str]) -> dict[str, int]:
        """Delete the runs with their tasks, attempts, logs, claims and set-aside outcomes;
        rows per table. Refuses (ValueError, nothing deleted) if one is no longer finished."""
        deleted: dict[str, int] = {}
        with unavailable_as_store_error(self._engine.url), self._writer.begin() as conn:
            for part in chunks(list(run_ids)):
                chosen = sa.select(runs.c.run_id, runs.c.status).where(runs.c.run_id.in_(part))
                if conn.dialect.name == "postgresql":
                    # locked until the delete commits: the coordinator cannot resume one
                    # in between (SQLite's BEGIN IMMEDIATE already holds the write lock)
                    chosen = chosen.with_for_update()
                rows = conn.execute(chosen).all()
                still = [run_id for run_id, status in rows if status not in FINISHED]
                if still:
                    raise ValueError(f"runs became active again: {', '.join(still[:10])}")
                for table, count in SqlRetentionBatch(conn).delete_runs(part).items():
                    deleted[table] = deleted.get(table, 0) + count
                # a claim taken over from an erased holder keeps no trace of it
                conn.execute(
                    claims.update()
                    .where(claims.c.prev_run_id.in_(part))
                    .values(
                        prev_run_id=None, prev_step=None, prev_map_index=None, prev_attempt=None
                    )
                )
        return deleted


def _with_descendants(
    found: dict[str, str], children: dict[str, list[tuple[str, str]]]
) -> dict[str, str]:
    """The runs found and their children, grandchildren...: a child run of a subject's run
    works on the subject's data."""
    result = dict(found)
    waiting = list(found)
    while waiting:
        for child, status in children.get(waiting.pop(), []):
            if child not in result:
                result[child] = status
                waiting.append(child)
    return result
