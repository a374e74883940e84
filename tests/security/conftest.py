"""Fixtures shared by the security tier's modules."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A real SQL store, on SQLite and on PostgreSQL."""
    from wfray.adapters.sqlalchemy.store import SqlRunStore

    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    made = SqlRunStore(url)
    yield made
    made.close()
