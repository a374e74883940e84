"""Generated history (wfray.analytics.history) written into a SQL store.

Demo and test data only: the rows go straight into a store migrated with the project's
migrations, so the schema is the real one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from wfray.adapters.sqlalchemy import migrate
from wfray.adapters.sqlalchemy.engine import WRITE, create_engine
from wfray.adapters.sqlalchemy.tables import attempts, logs, runs, tasks

# Parents first: tasks reference runs, attempts reference tasks.
INSERT_ORDER = (runs, tasks, attempts, logs)


class SqlHistoryWriter:
    """Inserts rows of runs, tasks, attempts and logs into the store at `store_url`."""

    def __init__(self, store_url: str) -> None:
        self._engine = create_engine(store_url, sqlite_synchronous="NORMAL")
        try:
            migrate.upgrade(self._engine)
        except BaseException:
            self._engine.dispose()
            raise
        self._writer = self._engine.execution_options(**{WRITE: True})

    def insert(self, rows: Mapping[str, Sequence[dict[str, Any]]]) -> None:
        """Insert `rows` (table name -> rows) in one transaction."""
        with self._writer.begin() as conn:
            for table in INSERT_ORDER:
                batch = rows.get(table.name)
                if batch:
                    conn.execute(table.insert(), _uniform(batch))

    def close(self) -> None:
        self._engine.dispose()


def _uniform(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    # executemany wants the same keys in every row; missing optional columns are NULL.
    keys = {key for row in rows for key in row}
    return [{key: row.get(key) for key in keys} for row in rows]
