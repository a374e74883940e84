"""The coordinator's hot writes on SQLite: executemany over tuples on the DBAPI cursor.

SQLAlchemy Core builds and processes a parameter dict per row (tens of microseconds each),
and a step costs six row writes. Here each statement is still SQLAlchemy's own, compiled
once for the dialect, and each value still goes through its column type's bind processor,
so what is stored, and read back through Core, is exactly what Core would have stored; only
the per-row bookkeeping is skipped. Used on SQLite, whose driver takes positional tuples;
PostgreSQL keeps Core (psycopg batches executemany itself).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import sqlalchemy as sa


class CompiledWrite:
    """One INSERT or compare-and-set UPDATE, compiled once, bound from records."""

    def __init__(
        self, stmt: Any, table: sa.Table, dialect: sa.Dialect, columns: Sequence[str] | None
    ) -> None:
        keys = None if columns is None else list(columns)
        compiled = stmt.compile(dialect=dialect, column_keys=keys)
        if compiled.positiontup is None:
            raise ValueError(f"{dialect.name} does not take positional parameters")
        self.sql = str(compiled)
        names: list[str] = list(compiled.positiontup)
        # every value is an attribute of the record, read in one C call; `k_expected` is
        # the status the row must hold now, filled in per item
        attributes = [_attribute(name) for name in names]
        self._fetch = operator.attrgetter(*attributes)
        self._expected = names.index("k_expected") if "k_expected" in names else None
        self._enums = [i for i, a in enumerate(attributes) if a == "status"]
        self._processed: list[tuple[int, Callable[[Any], Any]]] = []
        for i, attribute in enumerate(attributes):
            # the dialect's own implementation, as Core uses it (SQLite formats datetimes)
            process = table.c[attribute].type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None and attribute != "status":
                self._processed.append((i, process))

    def rows(self, items: Iterable[tuple[Any, str]]) -> list[tuple[Any, ...]]:
        """Bound values for (record, expected status) pairs (inserts ignore the status)."""
        fetch, enums, processed, expected_at = (
            self._fetch,
            self._enums,
            self._processed,
            self._expected,
        )
        memo: dict[tuple[int, Any], Any] = {}  # a turn stamps many rows with one `now`
        bound = []
        for record, expected in items:
            values = list(fetch(record))
            for i in enums:
                values[i] = values[i].value
            for i, process in processed:
                value = values[i]
                if value is not None:
                    key = (i, value)
                    if key not in memo:
                        memo[key] = process(value)
                    values[i] = memo[key]
            if expected_at is not None:
                values[expected_at] = expected
            bound.append(tuple(values))
        return bound

    def run(self, conn: sa.Connection, items: Iterable[tuple[Any, str]]) -> int:
        """Execute for every item in the connection's transaction; rows changed in all."""
        cursor = conn.connection.cursor()
        dbapi = conn.dialect.loaded_dbapi
        try:
            cursor.executemany(self.sql, self.rows(items))
            return int(cursor.rowcount)
        except dbapi.Error as exc:  # as Core would raise it: IntegrityError, OperationalError...
            raise sa.exc.DBAPIError.instance(self.sql, None, exc, dbapi.Error) from exc
        finally:
            cursor.close()


def _attribute(name: str) -> str:
    """The record attribute behind a bound parameter (`k_*` name the row being updated)."""
    if name in ("k_expected", "k_new"):
        return "status"
    return name[2:] if name.startswith("k_") else name
