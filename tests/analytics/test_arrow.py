"""Reading the store into Arrow, in bounded batches, and querying it with DuckDB.

Runs on SQLite and PostgreSQL (PostgreSQL fails, not skips, in CI when it is missing).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from tests.analytics import T0, write_known_history
from wfray.analytics import (
    SCHEMAS,
    HistoryFilter,
    connect,
    generate_history,
    read_table,
    record_batches,
)
from wfray.domain.errors import SchemaOutdatedError


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(
        "sqlite_url" if request.param == "sqlite" else "postgres_url"
    )
    return url


def test_tables_read_back_exactly_what_was_written(store_url: str) -> None:
    written = write_known_history(store_url)

    for name, rows in written.items():
        table = read_table(store_url, name)
        assert table.schema == SCHEMAS[name]
        read = table.to_pylist()
        assert len(read) == len(rows), name
        for got, expected in zip(read, rows, strict=True):
            assert {key: got[key] for key in expected} == expected, name

    assert SCHEMAS["runs"].field("created_at").type == pa.timestamp("us", tz="UTC")
    resources = read_table(store_url, "attempts").column("resources").to_pylist()
    assert resources == [[("CPU", 1.5), ("io", 1.0)], [("CPU", 1.0)], []]  # NULL reads as {}


def test_batches_never_exceed_the_batch_size_and_cover_every_row(store_url: str) -> None:
    summary = generate_history(store_url, runs=120, days=5, seed=3, now=T0)

    sizes = [b.num_rows for b in record_batches(store_url, "logs", batch=100)]
    ids = read_table(store_url, "logs", batch=100).column("id").to_pylist()

    assert max(sizes) == 100
    assert sum(sizes) == summary.logs == len(set(ids))
    for name in ("runs", "tasks", "attempts"):
        assert read_table(store_url, name, batch=100).num_rows == getattr(summary, name)


def test_filters_pick_runs_and_the_rows_that_belong_to_them(sqlite_url: str) -> None:
    write_known_history(sqlite_url)
    second_day = HistoryFilter(created_after=T0 + timedelta(hours=1))
    before = HistoryFilter(created_before=T0 + timedelta(hours=1), workflow="invoice")

    assert read_table(sqlite_url, "runs", second_day).column("run_id").to_pylist() == ["r-undone"]
    assert set(read_table(sqlite_url, "attempts", second_day).column("run_id").to_pylist()) == {
        "r-undone"
    }
    assert read_table(sqlite_url, "logs", second_day).num_rows == 0
    assert read_table(sqlite_url, "logs", before).num_rows == 2
    assert read_table(sqlite_url, "tasks", HistoryFilter(workflow="nope")).num_rows == 0


def test_reading_a_large_table_holds_one_batch_at_a_time(sqlite_url: str) -> None:
    summary = generate_history(sqlite_url, runs=1500, days=10, seed=5, now=T0)
    whole = read_table(sqlite_url, "logs").nbytes
    baseline = pa.total_allocated_bytes()

    peak = 0
    rows = 0
    for batch in record_batches(sqlite_url, "logs", batch=500):
        rows += batch.num_rows
        peak = max(peak, pa.total_allocated_bytes() - baseline)

    assert rows == summary.logs > 15_000
    # The whole table is over 30 batches; streaming never holds more than a couple.
    assert peak < whole / 10, (peak, whole)


def test_duckdb_views_answer_queries_over_the_history(store_url: str) -> None:
    write_known_history(store_url)
    db = connect(store_url)
    try:
        counts = db.sql(
            "SELECT (FROM runs SELECT count(*)), (FROM tasks SELECT count(*)),"
            " (FROM attempts SELECT count(*)), (FROM logs SELECT count(*))"
        ).fetchall()
        costs = db.sql(
            "SELECT run_id, attempt, kind, wall_seconds, resource_seconds "
            "FROM attempt_costs ORDER BY run_id, attempt"
        ).fetchall()
        usage = db.sql(
            "SELECT workflow, resource, sum(seconds) FROM resource_usage GROUP BY ALL ORDER BY ALL"
        ).fetchall()
        per_day = db.sql(
            "SELECT CAST(date_trunc('day', created_at) AS DATE)::VARCHAR, count(*) FROM runs "
            "GROUP BY ALL ORDER BY 1"
        ).fetchall()
    finally:
        db.close()

    assert counts == [(2, 2, 3, 2)]
    assert costs == [
        ("r-ok", 1, "step", 2.0, {"CPU": 3.0, "io": 2.0}),
        ("r-ok", 2, "step", 4.0, {"CPU": 4.0}),
        ("r-undone", 2, "compensation", 0.5, {}),
    ]
    assert usage == [("invoice", "CPU", 7.0), ("invoice", "io", 2.0)]
    assert per_day == [("2025-03-01", 1), ("2025-03-02", 1)]


def test_a_store_without_the_schema_is_refused_with_a_hint(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    with pytest.raises(SchemaOutdatedError, match="wfray db upgrade"):
        read_table(url, "runs")


def test_bad_arguments_name_what_was_expected(sqlite_url: str) -> None:
    with pytest.raises(ValueError, match="unknown table 'jobs': expected one of runs"):
        record_batches(sqlite_url, "jobs")
    with pytest.raises(ValueError, match="created_after must be an aware datetime"):
        HistoryFilter(created_after=T0.replace(tzinfo=None)).run_conditions()


def test_generated_history_is_deterministic_and_covers_every_outcome(tmp_path: Path) -> None:
    first, second = (f"sqlite:///{tmp_path / name}" for name in ("a.db", "b.db"))

    summary = generate_history(first, runs=300, days=7, seed=9, active=3, now=T0)
    generate_history(second, runs=300, days=7, seed=9, active=3, now=T0)

    for name in SCHEMAS:
        assert read_table(first, name).equals(read_table(second, name)), name
    finished = {"completed", "failed", "cancelled", "compensated", "compensation_failed"}
    assert finished | {"running", "queued"} == set(summary.run_statuses)
    attempts = read_table(first, "attempts").to_pylist()
    assert {a["status"] for a in attempts} >= {"succeeded", "failed", "lost", "cancelled"}
    assert {a["kind"] for a in attempts} == {"step", "compensation"}
    assert len({a["node_id"] for a in attempts}) == 4
    assert all(a["resources"] for a in attempts)
    finished_at = [r["finished_at"] for r in read_table(first, "runs").to_pylist()]
    assert max(t for t in finished_at if t is not None) < T0  # history, not the future
