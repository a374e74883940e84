"""The store's marks of undelivered outcomes: a death counts only after a coordinator said it
began applying the outcome, and migration 0011 keeps the marks stored before it."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import command

from tests.contract.test_run_store import sqlite_file_url, store  # noqa: F401
from wfray.application.ports import RunStore

NOW = datetime(2026, 12, 2, tzinfo=UTC)
KEY = ("r1", "s", -1, 1)
OTHER = ("r2", "s", -1, 1)


def test_deaths_count_the_starts_that_went_down_applying(store: RunStore) -> None:  # noqa: F811
    assert store.note_undelivered([KEY, OTHER], 1, NOW) == {}
    store.note_applying([KEY], 1, NOW)
    # start 2: KEY's coordinator went down applying it, OTHER's before it began
    assert store.note_undelivered([KEY, OTHER], 2, NOW) == {KEY: 1, OTHER: 0}
    # start 3 went down before applying anything: nothing counts
    assert store.note_undelivered([KEY, OTHER], 3, NOW) == {KEY: 1, OTHER: 0}
    store.note_applying([KEY, OTHER], 3, NOW)
    assert store.note_undelivered([KEY, OTHER], 4, NOW) == {KEY: 2, OTHER: 1}
    # OTHER was delivered since: its mark goes, and a later mark starts again from nothing
    assert store.note_undelivered([KEY], 5, NOW) == {KEY: 2}
    assert store.note_undelivered([KEY, OTHER], 6, NOW) == {KEY: 2}
    assert store.quarantined_outcomes() == []  # marks are not what operators are shown


def test_migration_0011_keeps_the_marks_and_goes_back(fresh_url: str) -> None:
    from wfray.adapters.sqlalchemy import migrate
    from wfray.adapters.sqlalchemy.store import SqlRunStore

    engine = sa.create_engine(fresh_url)
    try:
        migrate.upgrade(engine, "0010")
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO outcome_quarantine (run_id, step, map_index, attempt, status,"
                    " epoch, updated_at) VALUES ('r1', 's', -1, 1, 'pending', 1, :t)"
                ),
                {"t": NOW},
            )
        migrate.upgrade(engine)  # through 0011 and what followed it
        store = SqlRunStore(fresh_url, create=False)
        try:
            assert store.note_undelivered([KEY], 2, NOW) == {KEY: 0}
        finally:
            store.close()
        with engine.begin() as conn:
            command.downgrade(migrate.alembic_config(conn), "0010")
        columns = {c["name"] for c in sa.inspect(engine).get_columns("outcome_quarantine")}
        assert "deaths" not in columns and "epoch" in columns
    finally:
        engine.dispose()
