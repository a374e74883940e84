"""What both sides of SqlRunStore share: the engines, the dialect's insert, error mapping."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from wfray.adapters.sqlalchemy.engine import WRITE, create_engine, unavailable_as_store_error
from wfray.adapters.sqlalchemy.tables import runs

CHUNK = 500  # keys per IN (...) list: far below SQLite's host-parameter limit


class SqlStoreBase:
    """The engine (reads), its write-flagged twin (writes) and what both sides need."""

    def __init__(self, url: str, *, sqlite_synchronous: str = "FULL") -> None:
        self._engine = create_engine(url, sqlite_synchronous=sqlite_synchronous)
        self._writer = self._engine.execution_options(**{WRITE: True})
        self._url = self._engine.url
        dialect = self._engine.dialect.name
        self._insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        self._run_id_order: Any = runs.c.run_id
        if dialect == "postgresql":
            # Byte order, like Python's sort and SQLite's BINARY, whatever the locale.
            self._run_id_order = runs.c.run_id.collate("C")

    @property
    def engine(self) -> sa.Engine:
        return self._engine

    def _errors(self) -> AbstractContextManager[None]:
        return unavailable_as_store_error(self._url)


def chunks(items: list[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
