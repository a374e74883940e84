"""Erasure removes a data subject's runs from the store (runs, tasks, attempts, logs, claims,
set-aside outcomes), the blob store and the Parquet archives, and nothing of anyone else's;
it refuses active runs unless told to cancel them, says when nothing matched, and leaves an
audit entry with the selector and counts, never the erased data. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from tests.fixtures import unit_flows
from tests.operations.conftest import Wired
from wfray.adapters.sqlalchemy import tables
from wfray.domain.audit import AuditQuery

pytestmark = pytest.mark.timeout(120)

NOW = datetime.now(UTC)
SUBJECT = ("customer", "42")


def seed(
    engine: sa.Engine,
    run_id: str,
    data: Any,
    *,
    finished: datetime | None = NOW - timedelta(days=1),
    status: str = "completed",
    parent: str | None = None,
    prev_holder: str | None = None,
) -> None:
    """A run with a task, an attempt, a log line, a claim and a set-aside outcome."""
    at = (finished or NOW) - timedelta(minutes=5)
    with engine.begin() as conn:
        conn.execute(
            tables.runs.insert(),
            {
                "run_id": run_id, "workflow": "invoice", "version": "v1", "status": status,
                "input_json": json.dumps(data), "created_at": at, "queue": "default",
                "priority": 0, "trigger": "client", "finished_at": finished,
                "parent_run_id": parent, "idempotency_key": f"key-{run_id}",
                "result_json": json.dumps({"invoice_for": data}),
            },
        )  # fmt: skip
        conn.execute(
            tables.tasks.insert(),
            {
                "run_id": run_id, "step": "bill", "map_index": -1, "status": "completed",
                "pool": "io", "created_at": at, "queue": "default", "priority": 0, "seq": 1,
                "attempts": 1, "failures": 0, "lost": 0,
            },
        )  # fmt: skip
        conn.execute(
            tables.attempts.insert(),
            {
                "run_id": run_id, "step": "bill", "map_index": -1, "attempt": 1,
                "status": "completed", "executor": "io", "incarnation": "i", "queued_at": at,
            },
        )  # fmt: skip
        conn.execute(
            tables.logs.insert(),
            {
                "line_key": f"line-{run_id}", "run_id": run_id, "step": "bill", "map_index": -1,
                "attempt": 1, "ts": at, "level": "INFO", "logger": "step",
                "message": f"billing {json.dumps(data)}",
            },
        )  # fmt: skip
        conn.execute(
            tables.claims.insert(),
            {
                "key": f"mail:{run_id}", "run_id": run_id, "step": "bill", "map_index": -1,
                "attempt": 1, "claimed_at": at, "expires_at": at, "version": 1, "done_at": at,
                "result_json": json.dumps({"sent_to": data}), "prev_run_id": prev_holder,
                "prev_step": "bill" if prev_holder else None,
            },
        )  # fmt: skip
        conn.execute(
            tables.outcome_quarantine.insert(),
            {
                "run_id": run_id, "step": "bill", "map_index": -1, "attempt": 1,
                "status": "refused", "epoch": 1, "reason": "x", "updated_at": at,
            },
        )  # fmt: skip


def run_ids_in(engine: sa.Engine) -> dict[str, set[str]]:
    with engine.connect() as conn:
        return {
            table.name: set(conn.execute(sa.select(table.c.run_id)).scalars())
            for table in (
                tables.runs,
                tables.tasks,
                tables.attempts,
                tables.logs,
                tables.claims,
                tables.outcome_quarantine,
            )
        }


def parquet_run_ids(folder: Path) -> dict[str, set[str]]:
    return {
        path.name.split("-")[0].removesuffix(".parquet"): set(
            pq.read_table(path, columns=["run_id"]).column("run_id").to_pylist()
        )
        for path in sorted(folder.glob("*.parquet"))
    }


def test_erasure_removes_the_subject_everywhere_and_nothing_else(
    store_url: str, tmp_path: Path
) -> None:
    from wfray.adapters.blob import FsBlobStore
    from wfray.adapters.sqlalchemy.audit import SqlAuditLog
    from wfray.adapters.sqlalchemy.store import SqlRunStore
    from wfray.analytics.erasure import Selector, erase
    from wfray.analytics.export import export_parquet
    from wfray.analytics.retention import apply_retention
    from wfray.domain.errors import ActiveRunsError

    SqlRunStore(store_url).close()  # the schema
    engine = sa.create_engine(store_url)
    long_ago = NOW - timedelta(days=60)
    seed(engine, "old-42", {"customer": 42}, finished=long_ago)
    seed(engine, "old-43", {"customer": 43}, finished=long_ago)
    seed(engine, "r-42", {"customer": 42})
    seed(engine, "r-42-child", {"line": 1}, parent="r-42")
    seed(engine, "r-42-text", {"customer": "42"})
    seed(engine, "r-43", {"customer": 43, "note": "customer 42"}, prev_holder="r-42")
    seed(engine, "r-true", {"customer": True})  # 42 is not true, 1 would not be either
    seed(engine, "live-42", {"customer": 42}, finished=None, status="running")
    blob_root = tmp_path / "blobs"
    blobs = FsBlobStore(str(blob_root))
    for run_id in ("old-42", "r-42", "r-42-child", "r-43", "live-42"):
        blobs.put(f"{run_id}/bill/1", b'{"customer": 42}')
    archive, export = tmp_path / "archive", tmp_path / "export"
    apply_retention(store_url, timedelta(days=30), archive, now=NOW)  # the old runs
    export_parquet(store_url, export)
    selector = Selector(fields=(SUBJECT,))
    everything = run_ids_in(engine)

    with pytest.raises(ActiveRunsError, match="live-42"):
        erase(store_url, selector, blob_root=str(blob_root), archive_dirs=[archive, export])
    assert run_ids_in(engine) == everything  # refused: nothing went
    dry = erase(store_url, selector, archive_dirs=[archive, export], dry_run=True)
    assert dry.runs == 5 and run_ids_in(engine) == everything

    def cancel(run_ids: list[str]) -> None:  # as the coordinator would
        with engine.begin() as conn:
            conn.execute(
                tables.runs.update()
                .where(tables.runs.c.run_id.in_(run_ids))
                .values(status="cancelled", finished_at=NOW)
            )

    report = erase(
        store_url,
        selector,
        blob_root=str(blob_root),
        archive_dirs=[archive, export],
        cancel=cancel,
    )
    assert report.runs == 5 and report.cancelled == 1  # old-42, r-42, child, text, live
    assert report.deleted["runs"] == 4 and report.deleted["claims"] == 4
    left = run_ids_in(engine)
    assert left["runs"] == {"r-43", "r-true"}
    # set-aside outcomes go with their runs, by retention (old-43's) as by erasure
    assert all(ids == {"r-43", "r-true"} for ids in left.values()), left
    with engine.connect() as conn:
        prev = conn.execute(sa.select(tables.claims.c.prev_run_id)).scalars().all()
    assert set(prev) == {None}  # the erased holder is forgotten by the claim taken from it
    assert sorted(p.name for p in blob_root.iterdir()) == ["r-43"]
    archived = parquet_run_ids(archive)
    assert set(archived) == {"runs", "tasks", "attempts", "logs"}
    assert all(ids == {"old-43"} for ids in archived.values()), archived
    exported = parquet_run_ids(export)
    assert all(ids == {"r-43", "r-true"} for ids in exported.values()), exported

    nothing = erase(store_url, Selector(fields=(("customer", "999"),)), archive_dirs=[archive])
    assert not nothing.matched and nothing.summary().startswith("nothing matched")

    audit = SqlAuditLog(store_url, create=False)
    try:
        entries = audit.read(AuditQuery(action="erasure"))
    finally:
        audit.close()
    outcomes = [e.outcome for e in entries]
    assert outcomes[0].startswith("nothing matched")
    assert outcomes[1] == (
        "removed 5 runs (4 logs, 4 attempts, 4 tasks, 4 claims, 4 runs, 4 outcome_quarantine),"
        " the blobs of 4 runs, 20 archived rows in 8 Parquet files"
    )
    assert outcomes[2].startswith("would remove 5 runs")
    assert outcomes[3] == "refused: some of the runs are still active"
    assert entries[1].params == {"input.customer": "42", "archives": 2, "dry_run": False}
    stored = json.dumps([(e.targets, e.params, e.outcome) for e in entries])
    assert "r-42" not in stored and "live-42" not in stored  # no trace of the erased runs
    engine.dispose()


def test_selectors_are_checked() -> None:
    from wfray.analytics.erasure import Selector

    with pytest.raises(ValueError, match="needs run ids or input fields"):
        Selector()
    with pytest.raises(ValueError, match="empty part"):
        Selector(fields=(("customer..id", "1"),))
    by_path = Selector(fields=(("customer.ids.1", "7"),))
    assert by_path.picks("x", '{"customer": {"ids": [3, 7]}}')
    assert not by_path.picks("x", '{"customer": {"ids": [7]}}')
    assert not by_path.picks("x", "not json\x00")
    assert Selector(run_ids=("a",)).picks("a", None)


def test_the_cli_refuses_active_runs_cancels_them_when_told_and_says_when_nothing_matched(
    wired: Wired,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from wfray.entrypoints import cli, cli_instance

    monkeypatch.setenv("WFRAY_DATABASE_URL", wired.url)
    monkeypatch.setenv("WFRAY_DATA_DIR", str(tmp_path / "cli"))
    monkeypatch.setenv("RAY_ADDRESS", "ray://stand-in")
    monkeypatch.setattr(cli_instance, "read_instance", lambda settings: None)
    monkeypatch.setattr(cli_instance, "_attach", lambda settings, address: wired.client)
    keep = wired.client.submit(unit_flows.slow, unit_flows.Nap(seconds=0.01))
    keep.result(timeout=30)
    doomed = wired.client.submit(unit_flows.slow, unit_flows.Nap(seconds=60)).run_id

    assert cli.main(["erase", "--input-field", "seconds=60"]) == 1
    assert "still active" in capsys.readouterr().err
    assert cli.main(["erase", "--tag", "seconds=60", "--cancel", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["runs"] == 1 and report["cancelled"] == 1
    assert wired.client.list_runs() and doomed not in {r.run_id for r in wired.client.list_runs()}
    assert keep.run_id in {r.run_id for r in wired.client.list_runs()}
    assert cli.main(["erase", "--tag", "seconds=60"]) == 3
    assert "nothing matched" in capsys.readouterr().out
    assert cli.main(["erase"]) == 2
    assert cli.main(["erase", "--tag", "novalue"]) == 2
    assert cli.main(["erase", "x", "--archive", str(tmp_path / "missing")]) == 2
    actions = [e.action for e in wired.client.audit(limit=10)]
    assert actions[:3] == ["erasure", "erasure", "run.cancel"]
