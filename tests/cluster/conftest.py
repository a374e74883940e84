"""Ray clusters of the tests' own: a `ray start --head` and scripts with their own Ray.

Never `ray stop` (it kills every Ray process on the host, other engineers' included): each
process we start carries a marker in its environment, which Ray's daemons and workers
inherit, so what is left at the end is found and killed by pid, and nothing else.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, service_unavailable
from tests.fixtures.processes import MARK, kill_marked, marked
from tests.integration.conftest import client, start_wfray  # noqa: F401  (shared fixtures)

ROOT = Path(__file__).resolve().parents[2]
HEAD_START_TIMEOUT_S = 90.0
FIXED_PORT_OPTIONS = (
    "dashboard-agent-listen-port",
    "dashboard-agent-grpc-port",
    "runtime-env-agent-port",
    "metrics-export-port",
    "ray-client-server-port",
)


def marked_env(mark: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            MARK: mark,
            # the head and every client agree: no token (as the test session itself)
            "RAY_AUTH_MODE": "disabled",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        }
    )
    env.pop("RAY_ADDRESS", None)  # never attach to someone else's cluster
    return env


@dataclass(frozen=True)
class Head:
    mark: str
    gcs_address: str
    dashboard_url: str
    temp_dir: str


def _wait_for_dashboard(url: str, deadline: float) -> None:
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/version", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the dashboard at {url} did not answer")
        time.sleep(0.5)


def shipped_wfray_only(folder: Path) -> dict[str, str]:
    """A head's environment without the repository on PYTHONPATH: only the `wfray` package
    is importable (a link to this tree's, as `pip install` would make it available), never
    the tests' or the user's modules, which must reach the workers in a job's working_dir."""
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "wfray"
    if not link.exists():
        link.symlink_to(ROOT / "wfray", target_is_directory=True)
    return {"PYTHONPATH": str(folder)}


def distinct_free_ports(count: int) -> list[int]:
    """Free ports, no two alike: the OS may hand the same free port to two probes in a row,
    and `ray start` refuses one port for two components."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def start_head(env: dict[str, str], mark: str, temp_dir: str) -> Head:
    """`ray start --head` on free ports (6379 is Redis's here), with `env`; the caller
    kills what carries `mark` when done."""
    port, dashboard_port, *fixed = distinct_free_ports(2 + len(FIXED_PORT_OPTIONS))
    command = [
        str(Path(sys.executable).with_name("ray")),
        "start",
        "--head",
        f"--port={port}",
        "--node-ip-address=127.0.0.1",
        f"--dashboard-port={dashboard_port}",
        "--dashboard-host=127.0.0.1",
        "--include-dashboard=true",
        "--num-cpus=2",
        '--resources={"io": 4}',
        "--object-store-memory=200000000",
        "--disable-usage-stats",
        f"--temp-dir={temp_dir}",
        # Ray's fixed default ports may belong to another cluster on this host
        *(f"--{name}={p}" for name, p in zip(FIXED_PORT_OPTIONS, fixed, strict=True)),
    ]
    url = f"http://127.0.0.1:{dashboard_port}"
    try:
        started = subprocess.run(
            command,
            env=env,
            cwd=temp_dir,
            capture_output=True,
            text=True,
            timeout=HEAD_START_TIMEOUT_S,
        )
        if started.returncode != 0:
            raise RuntimeError(f"ray start exited {started.returncode}: {started.stderr}")
        _wait_for_dashboard(url, time.monotonic() + HEAD_START_TIMEOUT_S)
    except (RuntimeError, TimeoutError, subprocess.TimeoutExpired) as exc:
        kill_marked(mark)
        service_unavailable("Ray head", repr(exc)[-2000:])
    return Head(mark, f"127.0.0.1:{port}", url, temp_dir)


@contextlib.contextmanager
def head_with(extra_env: dict[str, str] | None = None) -> Iterator[Head]:
    """A head of our own, killed (all its processes, by mark) on the way out; `extra_env`
    replaces variables of `marked_env` (PYTHONPATH, say)."""
    mark = uuid.uuid4().hex
    temp_dir = tempfile.mkdtemp(prefix="wfh-", dir="/tmp")  # Ray's socket paths stay short
    try:
        yield start_head({**marked_env(mark), **(extra_env or {})}, mark, temp_dir)
    finally:
        kill_marked(mark)
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert not marked(mark), "processes of our Ray head survived the teardown"


@pytest.fixture(scope="module")
def ray_head(request: pytest.FixtureRequest) -> Iterator[Head]:
    """A `ray start --head` of our own, with the repository on every process's PYTHONPATH.

    A test module may put code before the repository on the path of the head and its
    workers: its `head_code_first()` names the folder (an earlier commit's wfray, say)."""
    code_first = getattr(request.module, "head_code_first", None)
    extra = None
    if code_first is not None:
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        extra = {"PYTHONPATH": os.pathsep.join([str(code_first()), path])}
    with head_with(extra) as head:
        yield head


def run_script(
    mark: str, script: Path, *args: str, timeout_s: float, env: dict[str, str] | None = None
) -> Any:
    """Run a scenario script with a Ray of its own (or a driver of a head: then `mark` must
    not be the head's); its last stdout line is a JSON answer. `env` replaces variables of
    `marked_env`."""
    try:
        done = subprocess.run(
            [sys.executable, str(script), *args],
            cwd=ROOT,
            env={**marked_env(mark), **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired as exc:
        left = kill_marked(mark)
        pytest.fail(f"{script.name} did not finish in {timeout_s:.0f}s; killed {left}: {exc}")
    left = kill_marked(mark, grace_s=20.0)
    if done.returncode != 0 and "RAY UNAVAILABLE" in done.stdout:
        service_unavailable("Ray", done.stdout.strip().splitlines()[-1])
    assert done.returncode == 0, f"{script.name} failed ({done.returncode}):\n{done.stderr[-4000:]}"
    assert not left, f"{script.name} left Ray processes behind (killed now): {left}"
    lines = done.stdout.strip().splitlines()
    assert lines, f"{script.name} printed nothing:\n{done.stderr[-4000:]}"
    return json.loads(lines[-1])
