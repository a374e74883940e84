"""Consistent copies of the store, and their restore (the database half of `wfray backup`).

SQLite: the online backup API (`sqlite3.Connection.backup`) copies the whole file in one
step, inside one read transaction: in WAL mode the coordinator keeps committing meanwhile,
and the copy is the database as of one commit. PostgreSQL: `pg_dump --format=custom` of
wfray's tables, which reads them in one repeatable-read snapshot; `pg_restore` loads them
back in one transaction. The password travels in PGPASSWORD, never on a command line.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import sqlalchemy as sa

from wfray.adapters.sqlalchemy import migrate
from wfray.adapters.sqlalchemy.engine import BUSY_TIMEOUT_MS, create_engine, mask_url
from wfray.adapters.sqlalchemy.tables import metadata, runs, tasks
from wfray.domain.errors import BackupError

SQLITE_FILE = "store.sqlite"
POSTGRES_FILE = "store.pgdump"
# Rows there do not make a store "in use": the workflows wfray registers when it starts.
NOT_CONTENT = frozenset({"workflows", "meta"})
PG_TOOLS_HINT = (
    "install the PostgreSQL client tools (of the server's major version or newer) or set "
    "WFRAY_PG_BIN_DIR to their folder; the README's 'Backup and restore' shows the commands "
    "to run by hand"
)


def database_kind(url: str) -> str:
    """'sqlite' or 'postgresql'."""
    return sa.make_url(url).get_backend_name()


def revisions(url: str) -> list[str]:
    """The schema revisions the database is stamped with."""
    engine = create_engine(url)
    try:
        return sorted(migrate.current_revisions(engine))
    finally:
        engine.dispose()


def dump(url: str, folder: Path, pg_bin_dir: str | None = None) -> str:
    """Write a consistent copy of the store into `folder`; returns its file name."""
    if database_kind(url) == "sqlite":
        _sqlite_copy(_sqlite_path(url), folder / SQLITE_FILE)
        return SQLITE_FILE
    _pg_tool("pg_dump", pg_bin_dir, url, "--format=custom", f"--file={folder / POSTGRES_FILE}")
    return POSTGRES_FILE


def load(url: str, copy: Path, pg_bin_dir: str | None = None) -> None:
    """Replace the store's content by the copy `dump` wrote (the caller checked it may)."""
    if database_kind(url) == "sqlite":
        target = _sqlite_path(url)
        target.parent.mkdir(parents=True, exist_ok=True)
        _sqlite_copy(copy, target, into_wal=True)
        return
    engine = create_engine(url)
    try:  # a migrated but empty schema is in the way of the tables the dump creates
        with engine.begin() as conn:
            metadata.drop_all(conn)
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {migrate.VERSION_TABLE}"))
    finally:
        engine.dispose()
    _pg_tool("pg_restore", pg_bin_dir, url, "--single-transaction", "--exit-on-error", str(copy))


def contents(url: str) -> list[str]:
    """The names of wfray's tables holding rows (workflows and meta aside): empty when the
    store may be restored into without --force."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            present = set(sa.inspect(conn).get_table_names())
            return [
                table.name
                for table in metadata.sorted_tables
                if table.name in present
                and table.name not in NOT_CONTENT
                and conn.execute(sa.select(sa.literal(1)).select_from(table).limit(1)).first()
            ]
    finally:
        engine.dispose()


def move_blob_refs(url: str, old_prefix: str, new_prefix: str) -> int:
    """Point result references under the blob root `old_prefix` to `new_prefix` (where the
    restore put the blobs); returns how many rows changed. Then migrate to this wfray's schema."""
    engine = create_engine(url)
    moved = 0
    try:
        if old_prefix != new_prefix:
            with engine.begin() as conn:
                for table in (runs, tasks):
                    ref = table.c.result_ref
                    tail = sa.func.substr(ref, len(old_prefix) + 1)
                    moved += conn.execute(
                        sa.update(table)
                        .where(sa.func.substr(ref, 1, len(old_prefix)) == old_prefix)
                        .values(result_ref=sa.literal(new_prefix, sa.Text()) + tail)
                    ).rowcount
        migrate.upgrade(engine)
    finally:
        engine.dispose()
    return moved


def _sqlite_path(url: str) -> Path:
    database = sa.make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        raise BackupError(f"cannot back up or restore {mask_url(url)}: not a database file")
    return Path(database).expanduser().resolve()


def _sqlite_copy(source: Path, target: Path, into_wal: bool = False) -> None:
    if not source.is_file():
        raise BackupError(f"no SQLite database at {source}")
    reader = sqlite3.connect(source)  # checked above: connect would create a missing file
    writer = sqlite3.connect(target)
    try:
        reader.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        writer.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        reader.backup(writer)  # pages=-1: all in one step, one snapshot of the source
        # a backup is one self-contained file; a live store goes back to WAL
        writer.execute(f"PRAGMA journal_mode={'WAL' if into_wal else 'DELETE'}")
        (verdict,) = writer.execute("PRAGMA quick_check").fetchone()
        if verdict != "ok":
            raise BackupError(f"the copy of {source} does not pass SQLite's check: {verdict}")
    except sqlite3.Error as exc:
        raise BackupError(
            f"copying the SQLite database {source} to {target} failed: {exc}"
        ) from exc
    finally:
        reader.close()
        writer.close()


def _pg_tool(name: str, bin_dir: str | None, url: str, *args: str) -> None:
    """Run pg_dump or pg_restore on wfray's tables of the database at `url`."""
    found = shutil.which(name, path=bin_dir) if bin_dir else shutil.which(name)
    if found is None:
        where = f"in {bin_dir}" if bin_dir else "on PATH"
        raise BackupError(f"{name} is not {where}: {PG_TOOLS_HINT}")
    parsed = sa.make_url(url)
    env = dict(os.environ)
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    libpq = parsed.set(drivername="postgresql", password=None).render_as_string(False)
    tables = [f"--table={t.name}" for t in metadata.sorted_tables] + [
        f"--table={migrate.VERSION_TABLE}"
    ]
    command = [found, "--no-owner", "--no-privileges", f"--dbname={libpq}", *args]
    if name == "pg_dump":
        command[1:1] = tables
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise BackupError(f"cannot run {found}: {exc}") from exc
    if done.returncode != 0:
        said = " ".join(done.stderr.split())[-2000:]
        raise BackupError(f"{name} failed on {mask_url(url)} (exit {done.returncode}): {said}")
