"""SQLite keeps datetimes as naive ISO strings; they are read back as aware UTC by a fast
path (one C call) that must agree with SQLAlchemy's general one on everything stored."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from wfray.adapters.sqlalchemy.rows import UtcDateTime

metadata = sa.MetaData()
stamps = sa.Table(
    "stamps",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", UtcDateTime, nullable=True),
)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'stamps.db'}")
    metadata.create_all(engine)
    yield engine
    engine.dispose()


def read_all(engine: sa.Engine) -> list[datetime | None]:
    with engine.connect() as conn:
        return [row.at for row in conn.execute(sa.select(stamps).order_by(stamps.c.id))]


def test_written_datetimes_come_back_equal_and_in_utc(engine: sa.Engine) -> None:
    written = [
        datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC),
        datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC),  # no fraction
        datetime(2025, 3, 1, 14, 0, 0, 654321, tzinfo=timezone(timedelta(hours=2))),
        None,
    ]
    with engine.begin() as conn:
        conn.execute(sa.insert(stamps), [{"id": i, "at": at} for i, at in enumerate(written)])
    read = read_all(engine)
    assert read == written
    assert all(at is None or at.utcoffset() == timedelta(0) for at in read)


@pytest.mark.parametrize(
    "stored",
    [
        "2025-03-01 12:00:00.123456",
        "2025-03-01 12:00:00",
        "2025-03-01T12:00:00.5",  # written by hand or by another tool
        "2025-03-01 12:00:00+02:00",  # an offset this type never writes: the general path
    ],
)
def test_strings_stored_by_others_read_as_the_general_path_reads_them(
    engine: sa.Engine, stored: str
) -> None:
    path = engine.url.database
    assert path is not None
    with sqlite3.connect(path) as raw:
        raw.execute("INSERT INTO stamps (id, at) VALUES (1, ?)", (stored,))
    (read,) = read_all(engine)
    general = sa.DateTime().dialect_impl(engine.dialect).result_processor(engine.dialect, None)
    assert general is not None
    expected = general(stored)
    assert read == (expected.replace(tzinfo=UTC) if expected.tzinfo is None else expected)
    assert read is not None and read.utcoffset() == timedelta(0)
