"""Engines for SQLite and PostgreSQL, and driver errors turned into StoreUnavailableError.

SQLite: every connection gets WAL, the requested `synchronous` level (FULL by default:
"completed" means fsynced), a busy timeout and foreign keys. pysqlite's own transaction
handling is switched off so that BEGIN is ours: reads open a deferred transaction and
writes `BEGIN IMMEDIATE`, which takes the write lock up front instead of failing with
SQLITE_BUSY halfway through a batch.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from wfray.domain.errors import StoreRejectedError, StoreUnavailableError

SYNCHRONOUS_LEVELS = frozenset({"OFF", "NORMAL", "FULL", "EXTRA"})
WRITE = "wfray_write"  # execution option: this transaction will write
CONNECT_TIMEOUT_S = 10
BUSY_TIMEOUT_MS = 10_000
_PASSWORD_IN_URL = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")

EXAMPLES = "'sqlite:////abs/path/wfray.db' or 'postgresql+psycopg://user:password@host:5432/db'"


def mask_url(url: str | sa.URL) -> str:
    """The URL with its password replaced by ***, even when it cannot be parsed."""
    if isinstance(url, sa.URL):
        return url.render_as_string(hide_password=True)
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return _PASSWORD_IN_URL.sub(r"\1***@", url)


def expectation(url: sa.URL) -> str:
    """What the store expected to find at `url`, for error messages."""
    if url.get_backend_name() == "sqlite":
        return f"a readable and writable SQLite database file at {url.database or ':memory:'}"
    where = f"{url.host or 'localhost'}:{url.port or 5432}"
    return f"a PostgreSQL server accepting connections at {where}, database {url.database!r}"


def create_engine(url: str | sa.URL, *, sqlite_synchronous: str = "FULL") -> sa.Engine:
    """A configured engine; a bad URL or a missing driver raises StoreUnavailableError."""
    masked = mask_url(url)
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise StoreUnavailableError(
            f"cannot parse the database URL {masked!r}: expected {EXAMPLES}"
        ) from exc
    backend = parsed.get_backend_name()
    kwargs: dict[str, Any] = {}
    if backend == "sqlite":
        level = sqlite_synchronous.upper()
        if level not in SYNCHRONOUS_LEVELS:
            raise StoreUnavailableError(
                f"sqlite_synchronous={sqlite_synchronous!r} is invalid: "
                f"expected one of {', '.join(sorted(SYNCHRONOUS_LEVELS))}"
            )
        _make_parent_folder(parsed)
    elif backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        kwargs["pool_pre_ping"] = True
        if "connect_timeout" not in parsed.query:
            kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    else:
        raise StoreUnavailableError(
            f"unsupported database {backend!r} in {masked!r}: expected {EXAMPLES}"
        )
    try:
        engine = sa.create_engine(parsed, **kwargs)
    except (sa.exc.NoSuchModuleError, ImportError) as exc:
        raise StoreUnavailableError(
            f"no database driver for {masked!r} ({exc}): expected {EXAMPLES} "
            "with its driver (psycopg) installed"
        ) from exc
    if engine.dialect.is_async:
        engine.dispose()
        raise StoreUnavailableError(
            f"{masked!r} names an async driver; the store is sync: expected {EXAMPLES}"
        )
    if backend == "sqlite":
        _configure_sqlite(engine, sqlite_synchronous.upper())
    return engine


def _make_parent_folder(url: sa.URL) -> None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    try:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreUnavailableError(
            f"cannot create the folder of the SQLite database {database!r}: {exc}"
        ) from exc


def _use_wal(cursor: Any) -> None:
    """Switch the file to WAL (the mode is stored in it, so once is enough).

    The switch waits for no busy timeout: it fails at once with "database is locked" while
    another connection holds a lock, as when several processes open a new file together.
    """
    if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
        return
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _configure_sqlite(engine: sa.Engine, synchronous: str) -> None:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            _use_wal(cursor)
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    def on_begin(connection: sa.Connection) -> None:
        write = connection.get_execution_options().get(WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", on_begin)


# SQLSTATE classes of PostgreSQL errors that pass: connection trouble (08), a transaction
# rolled back for a conflict (40), lack of resources (53), a lock not available (55), an
# operator's shutdown (57), the server's own I/O (58). Other classes are about the data
# (22 data exception, 23 integrity, 54 program limit: an index row too large) and retrying
# them changes nothing.
TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "55", "57", "58"})


def refused_data(exc: BaseException) -> bool:
    """Whether `exc` says the database refused this data (as opposed to an outage)."""
    if isinstance(exc, StoreRejectedError):
        return True
    if isinstance(exc, sa.exc.DBAPIError):
        if exc.connection_invalidated or isinstance(exc, sa.exc.InterfaceError):
            return False
        sqlstate = getattr(exc.orig, "sqlstate", None)
        if isinstance(sqlstate, str) and len(sqlstate) == 5:
            return sqlstate[:2] not in TRANSIENT_SQLSTATE_CLASSES
        return isinstance(exc, sa.exc.DataError | sa.exc.IntegrityError)
    # raised while binding values: a lone surrogate, an integer past 64 bits
    return isinstance(exc, ValueError | UnicodeError | OverflowError)


def refusal_reason(exc: BaseException) -> str:
    """The database's own words, on one line, without the SQL and parameters."""
    cause = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
    return " ".join(str(cause).split())[:1000]


@contextmanager
def unavailable_as_store_error(url: sa.URL) -> Iterator[None]:
    """Turn "cannot reach the database" driver errors into StoreUnavailableError, and
    refusals of the data itself into StoreRejectedError."""
    try:
        yield
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        if refused_data(exc):
            raise StoreRejectedError(refusal_reason(exc)) from exc
        raise StoreUnavailableError(_describe(url, exc)) from exc
    except sa.exc.DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        raise StoreUnavailableError(_describe(url, exc)) from exc


def _describe(url: sa.URL, exc: sa.exc.DBAPIError) -> str:
    detail = " ".join(str(exc.orig).split())  # one line; libpq's hints span several
    if url.password and len(str(url.password)) >= 4:  # shorter would garble, not protect
        detail = detail.replace(str(url.password), "***")
    return f"database {mask_url(url)} is unavailable ({detail}); expected {expectation(url)}"
