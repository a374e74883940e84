"""Parquet export and retention, on SQLite and PostgreSQL, read back with pyarrow."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from tests.analytics import T0, write_known_history
from wfray.analytics import (
    SCHEMAS,
    TABLES,
    apply_retention,
    export_parquet,
    generate_history,
    read_table,
)
from wfray.domain.status import RUN_FINISHED

FINISHED = {status.value for status in RUN_FINISHED}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(
        "sqlite_url" if request.param == "sqlite" else "postgres_url"
    )
    return url


def rows_of(table: pa.Table) -> list[tuple[Any, ...]]:
    """Rows as sortable tuples (maps as tuples of pairs), whatever order they came in."""
    return sorted(
        tuple(tuple(v) if isinstance(v, list) else v for v in row.values())
        for row in table.to_pylist()
    )


def everything(url: str) -> dict[str, pa.Table]:
    return {name: read_table(url, name) for name in TABLES}


def test_export_writes_every_table_as_parquet_that_reads_back_equal(
    store_url: str, tmp_path: Path
) -> None:
    summary = generate_history(store_url, runs=150, days=3, seed=11, active=4, now=T0)
    folder = tmp_path / "export" / "nested"

    counts = export_parquet(store_url, folder)

    assert counts == {
        "runs": summary.runs,
        "tasks": summary.tasks,
        "attempts": summary.attempts,
        "logs": summary.logs,
    }
    assert sorted(p.name for p in folder.iterdir()) == [
        "attempts.parquet",
        "logs.parquet",
        "runs.parquet",
        "tasks.parquet",
    ]
    for name, table in everything(store_url).items():
        exported = pq.read_table(folder / f"{name}.parquet")
        assert exported.schema == SCHEMAS[name]
        assert exported.equals(table), name


def test_export_of_hand_written_rows_keeps_every_value(sqlite_url: str, tmp_path: Path) -> None:
    written = write_known_history(sqlite_url)

    export_parquet(sqlite_url, tmp_path)

    attempts = pq.read_table(tmp_path / "attempts.parquet").to_pylist()
    assert [a["started_at"] for a in attempts] == [a["started_at"] for a in written["attempts"]]
    assert [a["resources"] for a in attempts] == [[("CPU", 1.5), ("io", 1.0)], [("CPU", 1.0)], []]
    messages = pq.read_table(tmp_path / "logs.parquet").column("message").to_pylist()
    assert messages == ["timed out", "rendered ünïcode"]


def test_retention_deletes_old_finished_runs_with_their_rows_and_archives_exactly_them(
    store_url: str, tmp_path: Path
) -> None:
    generate_history(store_url, runs=240, days=2, seed=7, active=9, now=T0)
    cutoff = T0 - timedelta(hours=12)
    before = everything(store_url)
    runs = before["runs"].to_pylist()
    old = {r["run_id"] for r in runs if r["status"] in FINISHED and r["finished_at"] < cutoff}
    old_active = [r for r in runs if r["status"] not in FINISHED and r["created_at"] < cutoff]
    recent = [r for r in runs if r["status"] in FINISHED and r["finished_at"] >= cutoff]
    assert old and old_active and recent  # the history covers every case
    archive = tmp_path / "archive"

    report = apply_retention(store_url, timedelta(hours=12), archive, now=T0, batch=50)

    after = everything(store_url)
    for name, table in before.items():
        ids = table.column("run_id").to_pylist()
        gone = [i in old for i in ids]
        kept, deleted = table.filter(pa.array([not g for g in gone])), table.filter(pa.array(gone))
        assert getattr(report, name) == deleted.num_rows > 0, name
        assert rows_of(after[name]) == rows_of(kept), name
        files = sorted(archive.glob(f"{name}-*.parquet"))
        assert len(files) == report.batches == -(-len(old) // 50)
        archived = pa.concat_tables(pq.read_table(f) for f in files)
        assert rows_of(archived) == rows_of(deleted), name
    assert report.cutoff == cutoff
    assert len(report.archive_files) == 4 * report.batches
    assert not list(archive.glob(".*"))  # no pending file left behind

    again = apply_retention(store_url, timedelta(hours=12), archive, now=T0, batch=50)
    assert again.counts == dict.fromkeys(TABLES, 0)
    assert again.archive_files == ()


def test_retention_keeps_a_finished_run_whose_parent_or_child_is_still_active(
    sqlite_url: str,
) -> None:
    generate_history(sqlite_url, runs=40, days=5, seed=2, active=3, now=T0)
    runs = read_table(sqlite_url, "runs").to_pylist()
    old = sorted(
        (r for r in runs if r["status"] in FINISHED),
        key=lambda r: r["finished_at"],
    )
    active = next(r["run_id"] for r in runs if r["status"] == "running")
    child_of_active, parent_of_active = old[0]["run_id"], old[1]["run_id"]
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        set_parent = sa.text("UPDATE runs SET parent_run_id = :parent WHERE run_id = :child")
        conn.execute(set_parent, {"parent": active, "child": child_of_active})
        conn.execute(set_parent, {"parent": parent_of_active, "child": active})
    engine.dispose()

    report = apply_retention(sqlite_url, timedelta(0), now=T0)

    left = {r["run_id"]: r["status"] for r in read_table(sqlite_url, "runs").to_pylist()}
    assert report.runs == len(old) - 2
    assert set(left) == {child_of_active, parent_of_active} | {
        r["run_id"] for r in runs if r["status"] not in FINISHED
    }


def test_retention_refuses_arguments_it_cannot_honour(sqlite_url: str) -> None:
    with pytest.raises(ValueError, match="older_than must not be negative"):
        apply_retention(sqlite_url, timedelta(days=-1))
    with pytest.raises(ValueError, match="now must be an aware datetime"):
        apply_retention(sqlite_url, timedelta(days=1), now=T0.replace(tzinfo=None))
    with pytest.raises(ValueError, match="batch must be a positive number of runs"):
        apply_retention(sqlite_url, timedelta(days=1), batch=0)


def test_exports_mask_credentials_and_the_store_keeps_them(sqlite_url: str, tmp_path: Path) -> None:
    """Parquet is read by people: credentials in inputs, results and log lines are masked
    there, while the store keeps what steps read back, unaltered."""
    write_known_history(sqlite_url)
    stored_input = '{"smtp":{"host":"mail","password":"hunter2"}}'
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE runs SET input_json = :i"), {"i": stored_input})
        conn.execute(
            sa.text("UPDATE logs SET message = 'GET https://bob:pw@api/ Authorization: Bearer abc'")
        )

    export_parquet(sqlite_url, tmp_path)

    runs = pq.read_table(tmp_path / "runs.parquet").column("input_json").to_pylist()
    assert {r for r in runs} == {'{"smtp": {"host": "mail", "password": "***"}}'}
    messages = set(pq.read_table(tmp_path / "logs.parquet").column("message").to_pylist())
    assert messages == {"GET https://bob:***@api/ Authorization: ***"}
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT DISTINCT input_json FROM runs")).scalar_one() == (
            stored_input
        )
    engine.dispose()


def old_and_kept(store_url: str) -> tuple[list[str], list[str]]:
    """A history of 40 runs over two days: those retention of 12 hours deletes, the rest."""
    generate_history(store_url, runs=40, days=2, seed=3, active=2, now=T0)
    runs = read_table(store_url, "runs").to_pylist()
    cutoff = T0 - timedelta(hours=12)
    old = [r["run_id"] for r in runs if r["status"] in FINISHED and r["finished_at"] < cutoff]
    kept = [r["run_id"] for r in runs if r["run_id"] not in old]
    assert old and kept
    return old, kept


def test_retention_deletes_the_claims_of_the_runs_it_deletes_and_no_others(
    store_url: str,
) -> None:
    from wfray.adapters.sqlalchemy.store import SqlRunStore
    from wfray.domain.claims import Holder, StepLiveness, decide

    old, kept = old_and_kept(store_url)
    store = SqlRunStore(store_url)
    try:
        for i, run_id in enumerate([old[0], kept[0]]):
            claim = decide(
                None, Holder(run_id, "s", -1, 1), f"k{i}", timedelta(1), StepLiveness.ENDED, T0
            )
            assert store.put_claim(claim.record, None)
        report = apply_retention(store_url, timedelta(hours=12), None, now=T0)
        assert report.claims == 1
        assert store.get_claim("k0") is None
        assert store.get_claim("k1") is not None
        assert [c.key for c in store.claims_of([kept[0]])] == ["k1"]
    finally:
        store.close()


def test_retention_deletes_the_quarantined_outcomes_of_the_runs_it_deletes_and_no_others(
    store_url: str,
) -> None:
    from wfray.adapters.sqlalchemy import tables

    old, kept = old_and_kept(store_url)
    engine = sa.create_engine(store_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                tables.outcome_quarantine.insert(),
                [
                    {
                        "run_id": run_id, "step": "s", "map_index": -1, "attempt": 1,
                        "status": "refused", "epoch": 1, "reason": "x", "updated_at": T0,
                    }
                    for run_id in (old[0], old[1], kept[0])
                ],
            )  # fmt: skip
        report = apply_retention(store_url, timedelta(hours=12), None, now=T0)
        assert report.outcome_quarantine == 2
        with engine.connect() as conn:
            left = conn.execute(sa.select(tables.outcome_quarantine.c.run_id)).scalars().all()
        assert left == [kept[0]]
    finally:
        engine.dispose()


def test_retention_removes_the_package_copies_no_kept_run_or_recent_env_names(
    store_url: str, tmp_path: Path
) -> None:
    from wfray.adapters.blob import blob_store
    from wfray.adapters.package_copies import PackageCopies
    from wfray.adapters.sqlalchemy.tables import runs as runs_table
    from wfray.adapters.sqlalchemy.tables import runtime_envs, subscriptions
    from wfray.domain.code_env import CodeEnv

    generate_history(store_url, runs=40, days=2, seed=5, active=2, now=T0)
    runs = read_table(store_url, "runs").to_pylist()
    cutoff = T0 - timedelta(hours=12)
    old = next(r["run_id"] for r in runs if r["status"] in FINISHED and r["finished_at"] < cutoff)
    kept = next(r["run_id"] for r in runs if r["status"] not in FINISHED)
    names = ("old", "kept", "recent", "subscribed", "loose")
    package = {name: f"gcs://_ray_pkg_{name}.zip" for name in names}
    envs = {
        name: CodeEnv(working_dir=package[name], py_modules=(f"gcs://{name}-1.0-py3.whl",))
        for name in names[:-1]
    }
    engine = sa.create_engine(store_url)
    with engine.begin() as conn:
        for name, env in envs.items():
            recorded = T0 if name == "recent" else cutoff - timedelta(days=1)
            conn.execute(
                sa.insert(runtime_envs).values(
                    env_hash=env.hash, env_json=env.to_json(), created_at=recorded
                )
            )
        conn.execute(
            sa.insert(subscriptions).values(
                workflow="wf", event="ev", env_hash=envs["subscribed"].hash, updated_at=T0
            )
        )
        for run_id, name in ((old, "old"), (kept, "kept")):
            conn.execute(
                sa.update(runs_table)
                .where(runs_table.c.run_id == run_id)
                .values(env_hash=envs[name].hash)
            )
    engine.dispose()
    copies = PackageCopies(blob_store(str(tmp_path / "blobs")))
    for uri in [*package.values(), *(m for env in envs.values() for m in env.py_modules)]:
        copies.keep(uri, uri.encode())

    report = apply_retention(
        store_url, timedelta(hours=12), None, now=T0, blob_root=str(tmp_path / "blobs")
    )

    left = set(copies.kept())
    assert left == {*envs["kept"].packages, *envs["recent"].packages, *envs["subscribed"].packages}
    assert report.packages == 3  # old's two (its run went), the loose one
    assert copies.read(package["kept"]) == package["kept"].encode()
    again = apply_retention(
        store_url, timedelta(hours=12), None, now=T0, blob_root=str(tmp_path / "blobs")
    )
    assert again.packages == 0


def test_a_package_copy_reads_back_only_whole(tmp_path: Path) -> None:
    from wfray.adapters.blob import blob_store
    from wfray.adapters.package_copies import PackageCopies, PackageCopyError
    from wfray.domain.errors import InputValidationError

    copies = PackageCopies(blob_store(str(tmp_path)))
    uri = "gcs://_ray_pkg_abc.zip"
    with pytest.raises(PackageCopyError, match="no copy"):
        copies.read(uri)
    copies.keep(uri, b"zip bytes")
    assert copies.has(uri) and copies.read(uri) == b"zip bytes"
    copies.blobs.put(copies.key(uri), b"zip bytes, truncated or changed")
    with pytest.raises(PackageCopyError, match="damaged"):
        copies.read(uri)
    copies.delete(uri)
    assert not copies.has(uri) and copies.kept() == []
    for bad in ["gcs://../etc/passwd", "gcs://a/b.zip", "s3://bucket/x.zip", "gcs://", "gcs://.."]:
        with pytest.raises(InputValidationError, match="package"):
            copies.key(bad)
