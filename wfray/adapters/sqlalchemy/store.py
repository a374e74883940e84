"""SqlRunStore: the RunStore port on SQLite or PostgreSQL, in SQLAlchemy Core.

Both sides of the port on one engine: the coordinator's writes (writer.py) and the reads
(reader.py). The composition root builds one and hands each consumer the side it uses.
"""

from __future__ import annotations

from wfray.adapters.sqlalchemy import migrate
from wfray.adapters.sqlalchemy.reader import SqlRunReader
from wfray.adapters.sqlalchemy.subscriptions import SqlSubscriptions
from wfray.adapters.sqlalchemy.writer import SqlRunWriter


class SqlRunStore(SqlRunWriter, SqlRunReader, SqlSubscriptions):
    """The truth about runs, in a SQL database.

    Args:
        url: `sqlite:////abs/path/wfray.db` or `postgresql+psycopg://user:pw@host/db`.
        create: migrate the schema to the current revision (under a lock) on start;
            otherwise only check that it is current (SchemaOutdatedError if not).
        sqlite_synchronous: SQLite's `synchronous` pragma; FULL fsyncs every commit.
    """

    def __init__(self, url: str, *, create: bool = True, sqlite_synchronous: str = "FULL") -> None:
        super().__init__(url, sqlite_synchronous=sqlite_synchronous)
        migrate.prepare(self._engine, create)

    def __repr__(self) -> str:
        return f"SqlRunStore({self._url.render_as_string(hide_password=True)!r})"

    def close(self) -> None:
        self._engine.dispose()
