"""Restart the whole local Ray instance with runs in flight: the store carries them over.

Ray cannot be restarted under the session's shared instance, so each half runs in its own
process with its own Ray (tests/fault/scripts/cluster_restart.py): the first submits and
shuts its Ray down while steps run; the second starts a fresh Ray on the same SQLite data
dir and waits. Every process of both Ray instances carries a marker in its environment, so
leftovers are found (and killed by pid) without touching anyone else's Ray.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.processes import MARK, kill_marked, marked

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).resolve().parent / "scripts" / "cluster_restart.py"
HOLDS = 16
HOLD_S = 2.0
CHAINS = 4
PHASE_TIMEOUT_S = 150


def wait_gone(mark: str, timeout_s: float = 20.0) -> list[str]:
    """Give Ray's processes time to exit after shutdown; kill and return the stragglers."""
    deadline = time.monotonic() + timeout_s
    while marked(mark) and time.monotonic() < deadline:
        time.sleep(0.2)
    return kill_marked(mark)


@pytest.fixture
def ray_temp() -> Iterator[list[str]]:
    """Short temp roots for the two Ray instances (socket paths must stay short)."""
    roots: list[str] = []
    yield roots
    for root in roots:
        shutil.rmtree(root, ignore_errors=True)


def phase(mark: str, temp_root: str, *args: str) -> Any:
    env = dict(os.environ)
    env.update(
        {
            MARK: mark,
            "RAY_AUTH_MODE": "disabled",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        }
    )
    env.pop("RAY_ADDRESS", None)  # never attach to someone else's cluster
    try:
        done = subprocess.run(
            [sys.executable, str(SCRIPT), *args, "--ray-temp", temp_root],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=PHASE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        left = kill_marked(mark)
        pytest.fail(f"{args[0]} did not finish in {PHASE_TIMEOUT_S}s; killed {left}: {exc}")
    left = wait_gone(mark)
    assert done.returncode == 0, f"{args[0]} failed ({done.returncode}):\n{done.stderr[-4000:]}"
    assert not left, f"{args[0]} left Ray processes behind (killed now): {left}"
    lines = done.stdout.strip().splitlines()
    assert lines, f"{args[0]} printed nothing:\n{done.stderr[-4000:]}"
    return json.loads(lines[-1])


def test_runs_survive_a_restart_of_the_whole_ray_instance(
    tmp_path: Path, ray_temp: list[str]
) -> None:
    mark = uuid.uuid4().hex
    data_dir = str(tmp_path / "wfray")
    namespace = f"wfray-restart-{mark[:8]}"
    common = ["--data-dir", data_dir, "--namespace", namespace]
    try:
        ray_temp.append(tempfile.mkdtemp(prefix="wfr-", dir="/tmp"))
        t0 = time.monotonic()
        sent = phase(
            mark,
            ray_temp[-1],
            "before",
            *common,
            *("--holds", str(HOLDS), "--hold-s", str(HOLD_S), "--chains", str(CHAINS)),
        )
        t1 = time.monotonic()
        run_ids = sent["holds"] + sent["chains"]
        assert len(sent["holds"]) == HOLDS and len(sent["chains"]) == CHAINS
        # the holds were all dispatched and none could finish before the shutdown
        assert not set(sent["finished_before"]) & set(sent["holds"]), sent

        ray_temp.append(tempfile.mkdtemp(prefix="wfr-", dir="/tmp"))
        report = phase(mark, ray_temp[-1], "after", *common, "--runs", json.dumps(run_ids))
        t2 = time.monotonic()
    finally:
        kill_marked(mark)

    assert set(report) == set(run_ids)
    assert {rid: r["status"] for rid, r in report.items()} == dict.fromkeys(run_ids, "completed")
    lost_tasks = 0
    for run_id, run in report.items():
        by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for attempt in run["attempts"]:
            by_task[attempt["task"]].append(attempt)
        assert set(by_task) == set(run["tasks"]), (run_id, run)
        assert set(run["tasks"].values()) == {"completed"}, (run_id, run)
        for task, attempts in by_task.items():
            succeeded = [a for a in attempts if a["status"] == "succeeded"]
            assert len(succeeded) == 1, (run_id, task, attempts)
            others = [a for a in attempts if a["status"] != "succeeded"]
            # interrupted attempts are recorded as lost, and retried after them
            for other in others:
                assert other["status"] == "lost", (run_id, task, attempts)
                assert other["error_type"] == "wfray.AttemptLost", (run_id, task, attempts)
                assert other["attempt"] < succeeded[0]["attempt"], (run_id, task, attempts)
            lost_tasks += bool(others)
        if run_id in sent["holds"]:
            # every hold was mid-sleep when Ray went down: lost once, then retried
            assert [a["status"] for a in by_task["hold/-1"]] == ["lost", "succeeded"], run
    assert lost_tasks >= HOLDS
    print(f"before {t1 - t0:.1f}s, after {t2 - t1:.1f}s; {lost_tasks} tasks lost and retried")
