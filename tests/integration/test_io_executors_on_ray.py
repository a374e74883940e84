"""Several io executors on a real Ray instance (WFRAY_IO_EXECUTORS=2): io attempts spread
over both processes, and killing one loses only its attempts, which run again."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray

import wfray
from tests.fixtures import flows
from tests.integration.conftest import start_wfray
from wfray.adapters.ray.host import executor_name
from wfray.domain.status import AttemptStatus, RunStatus

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def two_io(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    wf = start_wfray(tmp_path_factory.mktemp("wfray"), io_executors=2)
    yield wf
    wf.shutdown()


def executor_pid(client: Any, executor: str) -> int:
    handle = ray.get_actor(executor_name(executor), namespace=client.settings.namespace)
    pid: int = ray.get(handle.pid.remote(), timeout=30)
    return pid


def wait_until_running(client: Any, run_ids: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        views = [client.detail(rid).attempts for rid in run_ids]
        if all(a and a[-1].status is AttemptStatus.RUNNING for a in views):
            return
        assert time.monotonic() < deadline, "the io attempts did not all start"
        time.sleep(0.05)


def test_io_attempts_spread_over_both_executors(two_io: Any) -> None:
    runs = [two_io.enqueue(flows.async_hold, seconds=0.5) for _ in range(8)]
    assert {r.result(timeout=60) for r in runs} == {"held"}
    where = Counter((a.executor, a.pid) for r in runs for a in r.detail().attempts)
    assert where == {
        ("io", executor_pid(two_io, "io")): 4,
        ("io.1", executor_pid(two_io, "io.1")): 4,
    }


def test_killing_one_io_executor_loses_only_its_attempts(two_io: Any, tmp_path: Path) -> None:
    runs = [two_io.enqueue(flows.async_hold, seconds=3) for _ in range(6)]
    wait_until_running(two_io, [r.run_id for r in runs])
    os.kill(executor_pid(two_io, "io.1"), signal.SIGKILL)
    for run in runs:
        assert run.result(timeout=120) == "held"
        assert run.status() is RunStatus.COMPLETED
    histories = [[(a.executor, a.status) for a in r.detail().attempts] for r in runs]
    lost = [h for h in histories if h[0] == ("io.1", AttemptStatus.LOST)]
    assert len(lost) == 3, histories
    # rerun on the executor that stayed up while the restarted one settles
    assert all(h[-1] == ("io", AttemptStatus.SUCCEEDED) for h in lost), histories
    assert all(s is AttemptStatus.LOST for h in lost for _, s in h[:-1]), histories
    assert sum(h == [("io", AttemptStatus.SUCCEEDED)] for h in histories) == 3, histories


def test_shutdown_stops_the_coordinator_and_every_executor(two_io: Any) -> None:
    namespace = two_io.settings.namespace

    def named() -> list[str]:
        actors = ray.util.list_named_actors(all_namespaces=True)
        return sorted(a["name"] for a in actors if a["namespace"] == namespace)

    assert named() == sorted(
        ["wfray-coordinator", *(executor_name(e) for e in ("cpu", "io", "io.1"))]
    )
    two_io.shutdown()
    deadline = time.monotonic() + 30
    while named():
        assert time.monotonic() < deadline, f"still running: {named()}"
        time.sleep(0.1)


def test_restarting_with_fewer_io_executors_stops_the_extra_one_and_reruns_its_attempts(
    ray_session: None, tmp_path: Path
) -> None:
    wide = start_wfray(tmp_path, io_executors=2)
    namespace = wide.settings.namespace
    try:
        runs = [wide.enqueue(flows.async_hold, seconds=3) for _ in range(4)]
        wait_until_running(wide, [r.run_id for r in runs])
        coordinator = ray.get_actor("wfray-coordinator", namespace=namespace)
        ray.kill(coordinator, no_restart=True)
        deadline = time.monotonic() + 30
        while any(
            a["name"] == "wfray-coordinator" and a["namespace"] == namespace
            for a in ray.util.list_named_actors(all_namespaces=True)
        ):
            assert time.monotonic() < deadline, "the killed coordinator kept its name"
            time.sleep(0.1)
        settings = wfray.load_settings(data_dir=str(tmp_path), namespace=namespace, io_executors=1)
        narrow = wfray.connect(settings)
        for run in runs:
            assert narrow.run(run.run_id).result(timeout=120) == "held"
        histories = [
            [(a.executor, a.status) for a in narrow.detail(r.run_id).attempts] for r in runs
        ]
        lost = [h for h in histories if h[0] == ("io.1", AttemptStatus.LOST)]
        assert len(lost) == 2, histories
        assert all(h[-1] == ("io", AttemptStatus.SUCCEEDED) for h in histories)
        remaining = ray.util.list_named_actors(all_namespaces=True)
        assert executor_name("io.1") not in [
            a["name"] for a in remaining if a["namespace"] == namespace
        ]
    finally:
        wide.shutdown()
