"""Schema migrations, driven from code: the alembic scripts ship inside the package.

`upgrade` runs in one place (`wfray db upgrade`, the coordinator's start) under a lock, so
two processes starting together migrate once. Every other process calls `check_current`
and fails clearly when the database is behind.
"""

from __future__ import annotations

import functools
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError

from wfray.adapters.sqlalchemy.engine import WRITE, create_engine, unavailable_as_store_error
from wfray.domain.errors import SchemaOutdatedError
from wfray.domain.versions import WFRAY_VERSION

MIGRATIONS = Path(__file__).with_name("migrations")
# Our own version table, so a database shared with another alembic project is safe.
VERSION_TABLE = "wfray_alembic_version"
# pg_advisory_xact_lock key: any fixed 64-bit number; this one spells "wfraymig".
PG_LOCK_KEY = int.from_bytes(b"wfraymig", "big", signed=True)
UPGRADE_HINT = "run `wfray db upgrade` (or start the coordinator) to migrate it"


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """An alembic Config with no ini file: env.py takes the connection from attributes."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("version_table", VERSION_TABLE)
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def head_revisions() -> tuple[str, ...]:
    return tuple(ScriptDirectory.from_config(alembic_config()).get_heads())


def upgrade(engine_or_url: sa.Engine | str, revision: str = "heads") -> None:
    """Migrate the database to `revision` (all heads by default) under a lock.

    PostgreSQL: a transaction-scoped advisory lock on a fixed key, taken first in the
    migration's own transaction, so a second migrator waits and then finds nothing to do.
    SQLite: `BEGIN IMMEDIATE` holds the database's write lock for the whole migration.
    DDL is transactional on both, so a failed migration leaves the old schema intact.
    """
    engine = _engine(engine_or_url)
    try:
        writer = engine.execution_options(**{WRITE: True})
        with unavailable_as_store_error(engine.url), writer.begin() as conn:
            if conn.dialect.name == "postgresql":
                lock = sa.text("SELECT pg_advisory_xact_lock(:key)")
                conn.execute(lock, {"key": PG_LOCK_KEY})
            _refuse_unknown(engine, _stamped(conn))
            command.upgrade(alembic_config(conn), revision)
    finally:
        if engine is not engine_or_url:
            engine.dispose()


def upgrade_reporting(url: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """`upgrade` to the heads, saying where from: (revisions before, revisions after)."""
    engine = create_engine(url)
    try:
        before = current_revisions(engine)
        upgrade(engine)
        return before, current_revisions(engine)
    finally:
        engine.dispose()


def prepare(engine: sa.Engine, create: bool) -> None:
    """Bring the schema up to date (`create`) or check it is; a failure disposes the engine."""
    try:
        if create:
            upgrade(engine)
        else:
            check_current(engine)
    except BaseException:
        engine.dispose()
        raise


def current_revisions(engine: sa.Engine) -> tuple[str, ...]:
    """The revisions the database is stamped with (empty for an empty database)."""
    with unavailable_as_store_error(engine.url), engine.connect() as conn:
        return _stamped(conn)


def _stamped(conn: sa.Connection) -> tuple[str, ...]:
    context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
    return tuple(context.get_current_heads())


def _refuse_unknown(engine: sa.Engine, current: tuple[str, ...]) -> None:
    """A store migrated by a newer wfray is never touched: neither downgraded nor written
    with tables this code does not know."""
    script = ScriptDirectory.from_config(alembic_config())
    unknown = sorted(rev for rev in current if not _known(script, rev))
    if unknown:
        where = engine.url.render_as_string(hide_password=True)
        raise SchemaOutdatedError(
            f"database {where} is at revision {', '.join(unknown)}, which this version of "
            f"wfray ({WFRAY_VERSION}, schema {', '.join(head_revisions())}) does not know: "
            "a newer wfray migrated it; run that wfray (or a later one) against it"
        )


def check_current(engine: sa.Engine) -> None:
    """Raise SchemaOutdatedError unless the database is at the head revision."""
    current = set(current_revisions(engine))
    heads = set(head_revisions())
    if current == heads:
        return
    where = engine.url.render_as_string(hide_password=True)
    head = ", ".join(sorted(heads))
    if not current:
        raise SchemaOutdatedError(
            f"database {where} has no wfray schema (expected revision {head}); {UPGRADE_HINT}"
        )
    _refuse_unknown(engine, tuple(current))
    raise SchemaOutdatedError(
        f"database {where} is at revision {', '.join(sorted(current))}, behind the "
        f"expected {head}; {UPGRADE_HINT}"
    )


def is_known(revision: str) -> bool:
    """Whether this wfray's migrations include `revision` (exactly, not as a prefix)."""
    try:
        found = ScriptDirectory.from_config(alembic_config()).get_revision(revision)
    except Exception:  # alembic's resolution errors are not all CommandErrors
        return False
    return found is not None and found.revision == revision


def _known(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except CommandError:
        return False


def _engine(engine_or_url: sa.Engine | str) -> sa.Engine:
    if isinstance(engine_or_url, sa.Engine):
        return engine_or_url
    return create_engine(engine_or_url)
