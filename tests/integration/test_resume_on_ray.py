"""Manual recovery on a real Ray instance: failed runs resumed in bulk by workflow and time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.fixtures import flows
from wfray.domain.status import AttemptStatus, RunStatus


def test_failed_runs_are_resumed_in_bulk_and_continue_their_attempt_numbers(
    client: Any, tmp_path: Path
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    marker = tmp_path / "marker"
    runs = client.submit_many(flows.needs_marker, [{"marker": str(marker)}] * 3)
    views = client.wait([r.run_id for r in runs], timeout=60)
    assert {v.status for v in views} == {RunStatus.FAILED}

    marker.write_text("the downstream system is back")
    answers = client.resume_failed(workflow="needs_marker", created_after=since)
    assert sorted(a.run_id for a in answers) == sorted(r.run_id for r in runs)
    assert all(a.applied for a in answers)
    for run in runs:
        assert run.result(timeout=60) == "found it"
        attempts = run.detail().attempts
        assert [(a.attempt, a.status) for a in attempts] == [
            (1, AttemptStatus.FAILED),
            (2, AttemptStatus.SUCCEEDED),
        ]
    assert client.resume_failed(workflow="needs_marker", created_after=since) == []
