"""Kill the coordinator while runs compensate: every undo runs once, in order, and ends."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from tests.fixtures import flows
from wfray.application.client_commands import Pid
from wfray.domain.status import AttemptStatus, RunStatus


def describe(client: Any, run_id: str) -> str:
    detail = client.detail(run_id)
    lines = [f"{detail.run.run_id} {detail.run.status}"]
    lines += [
        f"  task {t.step} {t.status} attempts={t.attempts} ready={t.ready_at}" for t in detail.tasks
    ]
    lines += [
        f"  attempt {a.step}#{a.attempt} {a.kind} {a.status} {a.error_type}: {a.error_message}"
        for a in detail.attempts
    ]
    return "\n".join(lines) + f"\nstats: {client.stats()}"


UNDO = ["recall parcel-1", "refund payment-1", "release stock-1"]


def test_coordinator_killed_mid_compensation_completes_every_undo_in_order(
    client: Any, tmp_path: Path
) -> None:
    """Every run ends compensated, each undo recorded as succeeded once, in reverse order.

    The journal may still show an undo twice, since compensations are at-least-once like
    steps (they get a stable `ctx.idempotency_key` for that). It was seen once in many runs
    under heavy load before executors fenced out the dispatches of a replaced coordinator
    (tests/unit/test_fencing.py), the cause found for it; the check stays tolerant.
    """
    journals = [tmp_path / f"journal-{i}" for i in range(8)]
    runs = client.submit_many(flows.saga5, [{"journal": str(j), "undo_s": 1.0} for j in journals])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # kill once undos are under way, not before
        undone = sum(1 for j in journals if j.exists() and "recall" in j.read_text())
        if undone >= 3:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("no compensation started")
    os.kill(client.call(Pid()), signal.SIGKILL)

    views = client.wait([r.run_id for r in runs], timeout=120)
    for view in views:
        assert view.status is RunStatus.COMPENSATED, describe(client, view.run_id)
    for run, journal in zip(runs, journals, strict=True):
        lines = journal.read_text().splitlines()
        assert lines[:3] == ["reserve", "charge", "ship"], describe(client, run.run_id)
        undone = list(dict.fromkeys(lines[3:]))  # first occurrences, in order
        assert undone == UNDO, (lines, describe(client, run.run_id))
        undo = [a for a in client.detail(run.run_id).attempts if a.kind == "compensation"]
        succeeded = [a.step for a in undo if a.status is AttemptStatus.SUCCEEDED]
        assert sorted(succeeded) == ["charge", "reserve", "ship"], (run.run_id, undo)
