"""`python -m wfray.job` as a real subprocess, a driver of the session's Ray instance, on the
wfray instance this module started there (as a Ray job finds the cluster's wfray)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from wfray.entrypoints.cli_support import Exit

REPO_ROOT = Path(__file__).resolve().parents[2]
FLOWS = "tests.fixtures.flows"


def job(client: Any, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    import ray

    settings = client.settings
    env = {
        **os.environ,
        "RAY_ADDRESS": ray.get_runtime_context().gcs_address,  # as `ray job submit` sets it
        "WFRAY_NAMESPACE": settings.namespace,
        "WFRAY_DATA_DIR": settings.data_dir,
        "PYTHONPATH": str(REPO_ROOT),
    }
    return subprocess.run(
        [sys.executable, "-m", "wfray.job", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_wait_prints_the_result_as_json_and_the_status_on_stderr(client: Any) -> None:
    done = job(client, f"{FLOWS}:numbers", "--input", '{"count": 4}', "--wait", "--timeout", "120")
    assert done.returncode == Exit.OK, done.stderr
    assert json.loads(done.stdout) == 14  # 0 + 1 + 4 + 9: stdout is the result alone
    assert "completed" in done.stderr.splitlines()[-1]
    assert "Traceback" not in done.stderr


def test_the_same_idempotency_key_is_the_same_run(client: Any, tmp_path: Path) -> None:
    key = f"job-{uuid.uuid4().hex[:8]}"
    source = tmp_path / "input.json"
    source.write_text('{"count": 2}', encoding="utf-8")
    first = job(client, f"{FLOWS}:numbers", "--input", f"@{source}", "--idempotency-key", key)
    assert first.returncode == Exit.OK, first.stderr
    run_id = first.stdout.strip()
    again = job(client, f"{FLOWS}:numbers", "--input", f"@{source}", "--idempotency-key", key)
    assert again.stdout.strip() == run_id
    assert client.wait([run_id], 120)[0].status.value == "completed"


def test_a_failed_run_and_one_still_running_exit_1(client: Any, tmp_path: Path) -> None:
    missing = json.dumps({"marker": str(tmp_path / "never-there")})
    failed = job(client, f"{FLOWS}:needs_marker", "--input", missing, "--wait", "--timeout", "120")
    assert failed.returncode == Exit.RUN_FAILED, failed.stderr
    assert failed.stdout == ""
    assert "failed" in failed.stderr and "the marker is not there yet" in failed.stderr

    held = job(
        client, f"{FLOWS}:cpu_hold", "--input", '{"seconds": 60}', "--wait", "--timeout", "1"
    )
    assert held.returncode == Exit.RUN_FAILED, held.stderr
    assert "after 1s" in held.stderr.splitlines()[-1]
    (run,) = client.list_runs(workflow="cpu_hold", limit=1)
    client.cancel(run.run_id, "the test is done with it", False)
