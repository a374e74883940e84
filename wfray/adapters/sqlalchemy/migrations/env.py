"""Alembic environment for wfray's schema.

wfray drives migrations from code (`wfray.adapters.sqlalchemy.migrate.upgrade`), which
passes an open connection, already inside the transaction that holds the migration lock,
through `config.attributes["connection"]`. Without one (someone pointed the alembic CLI at
this folder with `sqlalchemy.url` set), it opens its own.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from wfray.adapters.sqlalchemy.engine import WRITE, create_engine
from wfray.adapters.sqlalchemy.tables import metadata

config = context.config
VERSION_TABLE = config.get_main_option("version_table") or "wfray_alembic_version"


def _configure(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set sqlalchemy.url or pass a connection in config.attributes")
    engine = create_engine(url)
    try:
        with engine.execution_options(**{WRITE: True}).begin() as conn:
            _configure(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
