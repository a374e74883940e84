"""Blob paths come from checked ids only, and retention takes the blobs of the runs it
deletes. Real files, a real SQLite store, and the Python client on a real Ray instance."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.fixtures import flows
from tests.security._data_support import inline_wfray, start_wfray
from wfray.adapters.blob import FsBlobStore
from wfray.adapters.sqlalchemy.tables import runs
from wfray.analytics.retention import apply_retention
from wfray.application.messages import SubmitRequest
from wfray.domain.errors import BlobKeyError, InvalidRunIdError

BIG = flows.big_result.__wfray_workflow__.schema  # type: ignore[attr-defined]
ESCAPES = ["../../escaped", "../escaped", "..", "/tmp/escaped", "a/../../escaped", "a\\..\\b"]


@pytest.fixture(scope="module")
def client(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    wf = start_wfray(tmp_path_factory.mktemp("sec") / "wfray", blob_threshold_bytes=64)
    yield wf
    wf.shutdown()


@pytest.mark.parametrize("run_id", ESCAPES)
def test_a_run_id_that_climbs_out_of_the_blob_root_is_refused_by_the_client(
    client: Any, run_id: str
) -> None:
    root = Path(client.settings.blob_root)
    outside = root.parent.parent
    before = set(outside.rglob("*"))
    with pytest.raises(InvalidRunIdError, match=r"run id .* is refused"):
        client.submit(flows.big_result, {"size": 4096}, run_id=run_id)
    # nothing was stored, nothing was written outside the blob root
    assert not [r for r in client.list_runs(limit=500) if r.run_id == run_id]
    assert {p for p in set(outside.rglob("*")) - before if root not in p.parents} == set()


def test_a_checked_client_chosen_id_still_works_and_its_blob_lands_under_the_root(
    client: Any,
) -> None:
    run = client.submit(flows.big_result, {"size": 4096}, run_id="order-42:v1")
    assert run.result(timeout=60) == "x" * 4096
    (task,) = run.detail().tasks
    assert task.result_ref and task.result_ref.startswith(f"file://{client.settings.blob_root}/")
    assert (Path(client.settings.blob_root) / "order-42:v1").is_dir()


def test_intake_refuses_an_unsafe_run_id_that_skipped_the_client(
    sqlite_url: str, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with inline_wfray(sqlite_url, tmp_path / "blobs", [BIG]) as c:
            (refused, fine) = await c.submit(
                [
                    SubmitRequest("../../escaped", "big_result", "", '{"size": 4096}'),
                    SubmitRequest("fine", "big_result", "", '{"size": 4096}'),
                ]
            )
            assert refused.error_code == "invalid_run_id" and "is refused" in (refused.error or "")
            assert fine.error is None
            await asyncio.wait_for(c.wait(["fine"], 30), 40)
            assert set(c.store.find_runs(["../../escaped", "fine"])) == {"fine"}

    asyncio.run(scenario())
    assert not (tmp_path.parent / "escaped").exists()


@pytest.mark.parametrize("key", ["../x.json", "a/../../x.json", "/etc/x.json", "a//b", "a\\b", ""])
def test_the_blob_store_refuses_a_key_that_is_not_a_plain_relative_path(
    tmp_path: Path, key: str
) -> None:
    store = FsBlobStore(str(tmp_path / "root"))
    with pytest.raises(BlobKeyError, match="not a plain relative path"):
        store.put(key, b"data")
    assert list(tmp_path.rglob("*.json")) == []


def test_retention_deletes_the_blobs_of_the_runs_it_deletes_and_keeps_the_others(
    sqlite_url: str, tmp_path: Path
) -> None:
    blobs = tmp_path / "blobs"

    async def scenario() -> None:
        async with inline_wfray(sqlite_url, blobs, [BIG]) as c:
            await c.submit(
                [
                    SubmitRequest(run_id, "big_result", "", '{"size": 4096}')
                    for run_id in ("old-run", "young-run")
                ]
            )
            await asyncio.wait_for(c.wait(["old-run", "young-run"], 30), 40)

    asyncio.run(scenario())
    assert (blobs / "old-run").is_dir() and (blobs / "young-run").is_dir()
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:  # the old run finished ten days ago
        conn.execute(
            sa.update(runs)
            .where(runs.c.run_id == "old-run")
            .values(finished_at=datetime.now(UTC) - timedelta(days=10))
        )
    engine.dispose()

    report = apply_retention(sqlite_url, timedelta(days=1), blob_root=str(blobs))

    assert (report.runs, report.blobs) == (1, 1)
    assert not (blobs / "old-run").exists()
    assert list((blobs / "young-run").rglob("*.json")), "a kept run lost its blobs"
