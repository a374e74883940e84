"""`find_views` on every store (memory, SQLite, PostgreSQL): what callers waiting for runs
are told of runs that are not in the coordinator's memory, read without their input (a
wait on 5,000 runs of a deep backlog read every run's whole row, input included)."""

from __future__ import annotations

from datetime import timedelta

from tests.contract.test_run_store import (  # noqa: F401  (fixtures)
    T0,
    make_run,
    sqlite_file_url,
    store,
)
from wfray.application.batch import Batch
from wfray.application.messages import RunView, view_of
from wfray.application.ports import RunStore
from wfray.domain.status import RunStatus


def test_views_of_stored_runs_say_status_result_error_and_version_in_the_order_asked(
    store: RunStore,  # noqa: F811  (the fixture)
) -> None:
    done = make_run(
        "v-done",
        status=RunStatus.COMPLETED,
        result_json='{"total": 3}',
        finished_at=T0 + timedelta(seconds=1),
        env_hash="a" * 64,
        input_json='{"big": "' + "x" * 100_000 + '"}',
    )
    failed = make_run("v-failed", status=RunStatus.FAILED, error="boom <b>\u00e9</b>")
    queued = make_run("v-queued", result_ref=None)
    batch = Batch()
    for run in (done, failed, queued):
        batch.insert_run(run)
    store.commit(batch)

    views = store.find_views(["v-queued", "nobody", "v-done", "v-failed", "v-done"])

    assert list(views) == ["v-queued", "v-done", "v-failed"]
    assert views["v-done"] == view_of(done)
    assert views["v-failed"] == RunView(
        "v-failed", "invoice", RunStatus.FAILED, None, None, "boom <b>\u00e9</b>", "v1"
    )
    assert views["v-queued"] == view_of(queued)
    assert store.find_views([]) == {}
