"""Compensation on a real Ray instance: the side effects are undone in reverse order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.fixtures import flows
from wfray.domain.status import AttemptStatus, RunStatus, TaskStatus


def test_a_failure_in_step_4_of_5_undoes_steps_3_2_1_in_that_order(
    client: Any, tmp_path: Path
) -> None:
    journal = tmp_path / "journal"
    run = client.submit(flows.saga5, {"journal": str(journal)})
    (view,) = client.wait([run.run_id], timeout=60)
    assert view.status is RunStatus.COMPENSATED
    assert "address does not exist" in (view.error or "")
    assert journal.read_text().splitlines() == [
        "reserve",
        "charge",
        "ship",
        "recall parcel-1",
        "refund payment-1",
        "release stock-1",
    ]
    detail = run.detail()
    statuses = {t.step: t.status for t in detail.tasks}
    assert statuses == {
        "reserve": TaskStatus.COMPENSATED,
        "charge": TaskStatus.COMPENSATED,
        "ship": TaskStatus.COMPENSATED,
        "confirm": TaskStatus.FAILED,
        "notify": TaskStatus.CANCELLED,
    }
    undo = [a for a in detail.attempts if a.kind == "compensation"]
    assert len(undo) == 3 and all(a.status is AttemptStatus.SUCCEEDED for a in undo)
    assert all(a.node_id and a.pid for a in undo)


def test_a_failed_compensation_is_dead_lettered_then_retried(client: Any, tmp_path: Path) -> None:
    journal, broken = tmp_path / "journal", tmp_path / "refunds-down"
    broken.write_text("down")
    run = client.submit(flows.saga5, {"journal": str(journal), "broken_refund": str(broken)})
    (view,) = client.wait([run.run_id], timeout=60)
    assert view.status is RunStatus.COMPENSATION_FAILED
    assert run.run_id in [r.run_id for r in client.dead_letter("saga5")]
    assert journal.read_text().splitlines()[-1] == "recall parcel-1"  # release waits

    broken.unlink()
    (answer,) = client.retry_compensation([run.run_id])
    assert answer.applied
    (view,) = client.wait([run.run_id], timeout=60)
    assert view.status is RunStatus.COMPENSATED
    assert journal.read_text().splitlines()[-2:] == ["refund payment-1", "release stock-1"]
    assert run.run_id not in [r.run_id for r in client.dead_letter("saga5")]
