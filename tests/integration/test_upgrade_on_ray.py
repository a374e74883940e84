"""`wfray upgrade` with runs in flight: cpu and io steps caught mid-step, more runs queued
behind them; the coordinator and executors are replaced and every run completes with each
step run exactly once (the steps journal each execution: tests/fixtures/upgrade_flows.py).
The first upgrade times out draining steps that cannot finish yet, with the coordinator
stopped; run again once they can, it finishes the job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.upgrade_flows import Gated, gated
from tests.integration.conftest import start_wfray
from wfray.domain.errors import WaitTimeoutError
from wfray.domain.status import AttemptStatus
from wfray.domain.versions import CURRENT, SCHEMA_REVISION
from wfray.entrypoints.cli_support import Exit

REPO_ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 60.0


def journal_lines(journal: Path) -> list[tuple[str, str]]:
    """(run id, step) per execution."""
    if not journal.exists():
        return []
    lines = [line.split() for line in journal.read_text().splitlines()]
    return [(parts[0], parts[1]) for parts in lines]


def wait_for(what: str, check: Any) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        assert time.monotonic() < deadline, f"{what} within {WAIT_S}s"
        time.sleep(0.05)


def executor_pids(namespace: str) -> dict[str, int]:
    import ray

    from wfray.adapters.ray.host import executor_actor_names

    return {
        name: ray.get(ray.get_actor(name, namespace=namespace).pid.remote(), timeout=WAIT_S)
        for name in executor_actor_names(namespace)
    }


def started(journal: Path, runs: list[Any], step: str) -> int:
    ids = {run.run_id for run in runs}
    return sum(1 for run_id, s in journal_lines(journal) if run_id in ids and s == step)


def coordinator_gone(namespace: str) -> bool:
    import ray

    try:
        ray.get_actor("wfray-coordinator", namespace=namespace)
    except ValueError:
        return True
    return False


def test_an_upgrade_with_runs_in_flight_loses_and_repeats_nothing(
    ray_session: None, tmp_path: Path
) -> None:
    import ray

    from wfray.adapters.ray.upgrade import upgrade
    from wfray.adapters.sqlalchemy.migrate import upgrade_reporting

    client = start_wfray(tmp_path / "data")
    settings = client.settings
    migrate = lambda: upgrade_reporting(settings.database_url)  # noqa: E731
    journal, crunch_gate, deliver_gate, open_gate = (
        tmp_path / name for name in ("journal", "crunch", "deliver", "open")
    )
    open_gate.touch()
    try:

        def held(gate: Path) -> Gated:
            return Gated(
                journal=str(journal), crunch_gate=str(gate), deliver_gate=str(deliver_gate)
            )

        # two runs held in their io step, then four behind two cpu steps held mid-step
        in_io = [client.submit(gated, held(open_gate)) for _ in range(2)]
        wait_for("two io steps running", lambda: started(journal, in_io, "deliver") == 2)
        in_cpu = [client.submit(gated, held(crunch_gate)) for _ in range(4)]
        wait_for("two cpu steps running", lambda: started(journal, in_cpu, "crunch") >= 2)
        before = executor_pids(settings.namespace)

        # the held steps cannot finish: the drain times out, with the coordinator stopped
        with pytest.raises(WaitTimeoutError, match="run `wfray upgrade` again"):
            upgrade(settings, migrate, 0.5, restart=True)
        assert coordinator_gone(settings.namespace)
        assert executor_pids(settings.namespace) == before  # still there, holding on
        not_started = 4 - started(journal, in_cpu, "crunch")
        crunch_gate.touch()
        deliver_gate.touch()
        # run again, it goes on: the executors report this wfray, but have no coordinator
        report = upgrade(settings, migrate, WAIT_S)

        runs = in_io + in_cpu
        for run in runs:
            assert run.result(timeout=WAIT_S) == "crunched+delivered"
            attempts = run.detail().attempts
            assert sorted((a.step, a.attempt) for a in attempts) == [("crunch", 1), ("deliver", 1)]
            assert all(a.status == AttemptStatus.SUCCEEDED for a in attempts)
        executions = Counter(journal_lines(journal))
        assert {key: n for key, n in executions.items() if n > 1} == {}
        assert set(executions) == {(r.run_id, s) for r in runs for s in ("crunch", "deliver")}
        assert not_started >= 1  # queued when the upgrade began (two CPUs, both held)
        # the two io and two cpu steps held mid-step ended under the old executors, with no
        # coordinator: their outcomes reached the new executors, and were committed
        assert sum(report.handed_over.values()) >= 4
        assert report.restarted and not report.nothing_to_do
        after = executor_pids(settings.namespace)
        assert set(after) == set(before)
        assert all(after[name] != before[name] for name in before)  # new processes
        handle = ray.get_actor("wfray-coordinator", namespace=settings.namespace)
        assert ray.get(handle.versions.remote(), timeout=WAIT_S) == CURRENT.as_dict()

        again = upgrade(settings, migrate, WAIT_S)
        assert again.nothing_to_do and "nothing to do" in again.lines()[0]
        _cli_upgrade_says_nothing_to_do(settings)
    finally:
        client.shutdown()


def _cli_upgrade_says_nothing_to_do(settings: Any) -> None:
    import ray

    env = {
        **os.environ,
        "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
        "WFRAY_NAMESPACE": settings.namespace,
        "WFRAY_DATA_DIR": settings.data_dir,
        "WFRAY_DATABASE_URL": settings.database_url,
        "PYTHONPATH": str(REPO_ROOT),
    }
    command = [sys.executable, "-m", "wfray.entrypoints.cli", "upgrade", "--json"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == Exit.OK, done.stderr
    said = json.loads(done.stdout)
    assert said["nothing_to_do"] is True and said["replaced"] == []
    assert said["schema_before"] == said["schema_after"] == [SCHEMA_REVISION]


@pytest.mark.usefixtures("ray_session")
def test_upgrade_without_a_cluster_exits_4(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update({"WFRAY_DATA_DIR": str(tmp_path), "PYTHONPATH": str(REPO_ROOT)})
    command = [sys.executable, "-m", "wfray.entrypoints.cli", "upgrade"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == Exit.UNREACHABLE, done.stderr
    assert "no Ray cluster to upgrade wfray on" in done.stderr
    assert "Traceback" not in done.stderr
