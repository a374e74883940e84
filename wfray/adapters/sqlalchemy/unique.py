"""The runs holding uniqueness keys, in one windowed query per chunk of keys."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from wfray.adapters.sqlalchemy import rows
from wfray.adapters.sqlalchemy.tables import runs
from wfray.domain.records import RunRecord
from wfray.domain.status import RUN_FINISHED

CHUNK = 500
UniqueRef = tuple[str, str]  # (workflow, uniqueness key)


def find_unique_runs(conn: sa.Connection, keys: Sequence[UniqueRef]) -> dict[UniqueRef, RunRecord]:
    """Per (workflow, key): the run not finished if there is one, else the newest; a key
    whose runs finished long ago reads one row, however many runs it had."""
    wanted = list(dict.fromkeys(keys))
    found: dict[UniqueRef, RunRecord] = {}
    finished = [status.value for status in RUN_FINISHED]
    for start in range(0, len(wanted), CHUNK):
        chunk = wanted[start : start + CHUNK]
        rank = (
            sa.func.row_number()
            .over(
                partition_by=(runs.c.workflow, runs.c.unique_key),
                order_by=(
                    sa.case((runs.c.status.in_(finished), 1), else_=0),
                    runs.c.created_at.desc(),
                    runs.c.run_id.desc(),
                ),
            )
            .label("rank")
        )
        ranked = (
            sa.select(runs, rank)
            .where(runs.c.unique_key.in_({key for _, key in chunk}))
            .where(runs.c.workflow.in_({workflow for workflow, _ in chunk}))
            .subquery()
        )
        query = sa.select(*(ranked.c[c.name] for c in runs.c)).where(ranked.c.rank == 1)
        for run in rows.to_runs(conn.execute(query)):
            ref = (run.workflow, run.unique_key or "")
            if ref in chunk:
                found[ref] = run
    return {ref: found[ref] for ref in keys if ref in found}
