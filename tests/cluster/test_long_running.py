"""Long steps keep their slots, beat and log while short tasks flow past them, and a
coordinator restart in the middle leaves them running to completion, each run once."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray

from tests.cluster.conftest import start_wfray
from tests.fixtures import cluster_flows
from wfray.application.client_commands import Views
from wfray.domain.status import AttemptStatus, RunStatus

LONG_S = 20.0
SHORT = 40


@pytest.fixture
def wf(ray_session: None, tmp_path: Path) -> Iterator[Any]:
    client = start_wfray(tmp_path)
    yield client
    client.shutdown()


def beating(client: Any, run_ids: list[str]) -> int:
    """Runs whose long step has reported progress: it is executing, not merely dispatched."""
    return sum(1 for run_id in run_ids if any(t.progress_json for t in client.detail(run_id).tasks))


def test_short_tasks_flow_past_long_steps_that_survive_a_coordinator_restart(wf: Any) -> None:
    longs = [
        wf.submit(cluster_flows.long_haul, {"seconds": LONG_S}),
        wf.submit(cluster_flows.long_haul_io, {"seconds": LONG_S}),
    ]
    long_ids = [r.run_id for r in longs]
    deadline = time.monotonic() + 30
    while beating(wf, long_ids) < 2:
        assert time.monotonic() < deadline, "the long steps did not start within 30s"
        time.sleep(0.2)
    started = time.monotonic()

    # one CPU of two and a few io slots are taken: the short tasks of both pools still flow
    shorts = wf.submit_many(cluster_flows.quick_cpu, [{"n": i} for i in range(SHORT)])
    shorts += wf.submit_many(cluster_flows.quick, [{"n": i} for i in range(SHORT)])
    views = wf.wait([r.run_id for r in shorts], timeout=LONG_S)
    short_done_s = time.monotonic() - started
    assert {v.status for v in views} == {RunStatus.COMPLETED}
    assert [v.status for v in wf.call(Views(long_ids))] == [RunStatus.RUNNING] * 2
    assert short_done_s < LONG_S / 2, f"{2 * SHORT} short tasks took {short_done_s:.1f}s"

    # the coordinator goes down and comes back while the long steps run on in their executors
    ray.kill(wf.handle, no_restart=False)
    finals = wf.wait(long_ids, timeout=LONG_S + 60)
    assert [v.status for v in finals] == [RunStatus.COMPLETED] * 2
    elapsed = time.monotonic() - started
    for run_id in long_ids:
        detail = wf.detail(run_id)
        # one attempt, never re-dispatched: the restart did not lose or duplicate it
        assert [a.status for a in detail.attempts] == [AttemptStatus.SUCCEEDED], detail.attempts
        (task,) = detail.tasks
        assert json.loads(task.progress_json)["elapsed_s"] >= LONG_S - 2, task.progress_json
        lines = [line.message for line in wf.logs(run_id)]
        assert len([m for m in lines if m.startswith("hauled for")]) >= LONG_S, lines[-3:]
    assert elapsed >= LONG_S - 1
