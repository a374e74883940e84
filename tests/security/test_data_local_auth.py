"""`wfray start --local` keeps Ray's token authentication on unless `--no-ray-auth` asks:
a process without the instance's token cannot join it, while the `wfray` commands can.

Real subprocesses of the `wfray` command and a real local Ray instance; what they start is
killed by pid at the end (never `ray stop`)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import ray
try:
    ray.init(address={address!r}, log_to_driver=False)
    print("JOINED")
except Exception as exc:
    print("REFUSED", type(exc).__name__)
"""


class Wfray:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.family: list[psutil.Process] = []
        self.env = {
            **{
                k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_AUTH"))
            },
            "WFRAY_DATA_DIR": str(data_dir),
            "WFRAY_NAMESPACE": f"wfray-auth-{uuid.uuid4().hex[:8]}",
            # what a developer may have exported to silence Ray's warning: it must not
            # turn the local instance's authentication off; only --no-ray-auth does
            "RAY_AUTH_MODE": "disabled",
            "PYTHONPATH": str(ROOT),
        }

    def __call__(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "wfray.entrypoints.cli", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def instance(self) -> dict[str, Any]:
        record: dict[str, Any] = json.loads((self.data_dir / "instance.json").read_text())
        return record


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Wfray]:
    wf = Wfray(tmp_path / "data")
    try:
        started = wf("start", "--local", "--num-cpus", "1", "--object-store-mb", "100")
        log = wf.data_dir / "local-ray.log"
        assert started.returncode == 0, (
            f"{started.stderr}\n{log.read_text() if log.exists() else ''}"
        )
        owner = psutil.Process(int(wf.instance()["pid"]))
        wf.family = [owner, *owner.children(recursive=True)]
        yield wf
    finally:
        if (wf.data_dir / "instance.json").exists():
            wf("stop")
        for process in wf.family:  # whatever a failed test left behind, and only that
            if process.is_running():
                process.kill()


def test_the_local_instance_keeps_ray_token_auth_on_unless_asked(local: Wfray) -> None:
    record = local.instance()
    token_file = Path(record["ray_auth_token_path"])
    assert token_file.parent == local.data_dir
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600  # the owner's only
    assert len(token_file.read_text().strip()) == 64

    # the wfray commands find the token through the instance record
    queues = local("queues", "--json")
    assert queues.returncode == 0, queues.stderr

    # a process without the token cannot join the instance (and run code in it)
    probe = subprocess.run(
        [sys.executable, "-c", PROBE.format(address=record["address"])],
        env={**local.env, "RAY_AUTH_MODE": "disabled"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert probe.stdout.strip().splitlines()[-1:] == ["REFUSED ConnectionError"], probe.stdout
    assert "InvalidAuthToken" in probe.stderr


def test_no_ray_auth_is_an_explicit_flag_of_start() -> None:
    from wfray.entrypoints.cli import parser

    args = parser().parse_args(["start", "--local", "--no-ray-auth"])
    assert args.no_ray_auth is True
    assert parser().parse_args(["start", "--local"]).no_ray_auth is False
