"""Detached actors found by name are checked, not trusted: a coordinator or an executor of
another wfray release is refused at connect, in one line naming both versions, and nothing
is sent to it (stand-ins from tests/fixtures/old_actors.py play the other release)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.old_actors import ReportingOldActor, SilentOldActor
from wfray.domain.errors import VersionMismatchError
from wfray.domain.versions import CURRENT
from wfray.entrypoints.cli_support import Exit

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def namespace(ray_session: None, tmp_path: Path) -> Iterator[tuple[Any, str]]:
    """Settings of a fresh namespace; whatever holds wfray's names there is killed after."""
    import wfray
    from wfray.adapters.ray.client import RayClient

    namespace = f"wfray-old-{uuid.uuid4().hex[:8]}"
    settings = wfray.load_settings(data_dir=str(tmp_path / "data"), namespace=namespace)
    yield settings, namespace
    RayClient(settings).shutdown()  # by name: the stand-ins too


def stand_in(cls: type, name: str, namespace: str) -> Any:
    import ray

    options = {"name": name, "namespace": namespace, "lifetime": "detached", "num_cpus": 0}
    actor = ray.remote(cls).options(**options).remote()
    ray.get(actor.count.remote(), timeout=60)  # it runs
    return actor


def test_the_actors_of_a_real_connect_report_this_wfray(client: Any) -> None:
    import ray

    from wfray.adapters.ray.host import executor_name

    assert ray.get(client.handle.versions.remote(), timeout=60) == CURRENT.as_dict()
    for pool in ("cpu", "io"):
        executor = ray.get_actor(executor_name(pool), namespace=client.settings.namespace)
        assert ray.get(executor.versions.remote(), timeout=60) == CURRENT.as_dict()


@pytest.mark.parametrize(
    ("old", "says"),
    [
        (ReportingOldActor, "runs wfray 0.0.9 at schema 0010"),
        (SilentOldActor, "does not report its version"),
    ],
)
def test_a_coordinator_of_another_release_is_refused_untouched(
    namespace: tuple[Any, str], old: type, says: str
) -> None:
    import ray

    import wfray

    settings, name = namespace
    coordinator = stand_in(old, "wfray-coordinator", name)
    with pytest.raises(VersionMismatchError) as caught:
        wfray.connect(settings)
    message = str(caught.value)
    assert f"the coordinator in Ray namespace {name!r}" in message and says in message
    assert f"this client runs {CURRENT}" in message
    assert ray.get(coordinator.count.remote(), timeout=60) == 0  # nothing sent, not stopped


def test_an_executor_of_another_release_keeps_the_coordinator_from_starting(
    namespace: tuple[Any, str],
) -> None:
    import ray

    import wfray

    settings, name = namespace
    executor = stand_in(ReportingOldActor, "wfray-executor-cpu", name)
    with pytest.raises(VersionMismatchError) as caught:
        wfray.connect(settings)
    message = str(caught.value)
    assert f"the executor wfray-executor-cpu in Ray namespace {name!r}" in message
    assert f"runs wfray 0.0.9 at schema 0010; this coordinator runs {CURRENT}" in message
    assert ray.get(executor.count.remote(), timeout=60) == 0  # no dispatch reached it
    # the coordinator stays up refusing, so that `wfray stop` finds and stops them all
    with pytest.raises(VersionMismatchError):
        wfray.connect(settings)


def test_the_commands_exit_4_in_one_line(namespace: tuple[Any, str]) -> None:
    import ray

    settings, name = namespace
    stand_in(ReportingOldActor, "wfray-coordinator", name)
    env = {
        **os.environ,
        "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
        "WFRAY_NAMESPACE": name,
        "WFRAY_DATA_DIR": settings.data_dir,
        "PYTHONPATH": str(REPO_ROOT),
    }
    commands = [
        [str(Path(sys.executable).with_name("wfray")), "queues"],
        [sys.executable, "-m", "wfray.job", "tests.fixtures.flows:noop"],
    ]
    for command in commands:
        done = subprocess.run(
            command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=180
        )
        assert done.returncode == Exit.UNREACHABLE, done.stderr
        assert "Traceback" not in done.stderr
        assert "runs wfray 0.0.9 at schema 0010" in done.stderr
