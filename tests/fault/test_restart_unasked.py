"""A killed coordinator comes back and finishes its runs with nobody calling it.

Ray restarts the actor; its constructor sets the start going (without a Ray call of its own),
so recovery does not wait for a client. The test reads the outcome from the store itself and
sends the coordinator nothing after the kill. That start still asks Ray whether this is a
restart: it counts itself as one after a process died (coordinator/health.py).
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import wfray
from tests.fixtures import flows
from wfray.application.client_commands import Pid
from wfray.bootstrap import build_store
from wfray.coordinator.health import STARTS
from wfray.domain.status import RunStatus

RUNS = 4
HOLD_S = 3.0  # long enough that none can finish before the kill lands
FINISH_S = 120.0


def test_a_killed_coordinator_finishes_its_runs_before_anyone_asks(
    ray_session: None, tmp_path: Path
) -> None:
    namespace = f"wfray-unasked-{uuid.uuid4().hex[:8]}"
    settings = wfray.load_settings(data_dir=str(tmp_path), namespace=namespace)
    client = wfray.connect(settings)
    store = None
    try:
        runs = client.submit_many(flows.hold, [{"seconds": HOLD_S}] * RUNS)
        run_ids = [run.run_id for run in runs]
        os.kill(client.call(Pid()), signal.SIGKILL)
        store = build_store(settings)
        assert not any(r.status.finished for r in store.find_runs(run_ids).values())
        deadline = time.monotonic() + FINISH_S
        statuses: list[RunStatus] = []
        while time.monotonic() < deadline:
            statuses = [r.status for r in store.find_runs(run_ids).values()]
            if statuses == [RunStatus.COMPLETED] * RUNS:
                break
            time.sleep(0.2)  # polling the store: the test must not wake the coordinator
        assert statuses == [RunStatus.COMPLETED] * RUNS, statuses
        starts = store.counters(STARTS)
        assert starts[STARTS + "first_start"] == 1, starts
        assert starts[STARTS + "process_died"] >= 1, starts
    finally:
        if store is not None:
            store.close()  # type: ignore[attr-defined]
        client.shutdown()
