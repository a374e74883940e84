"""Claims under kills: a SIGKILLed holder's claim, a coordinator SIGKILLed between a claim
and its done; nothing stored is lost, and nobody repeats a side effect unknowingly."""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

from tests.fixtures import claim_flows as cf
from wfray.application.client_commands import Pid
from wfray.domain.status import AttemptStatus, RunStatus


def wait_for_file(folder: Path, pattern: str, limit_s: float = 60.0) -> Path:
    deadline = time.monotonic() + limit_s
    while True:
        found = sorted(folder.glob(pattern))
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"no {pattern} in {folder}"
        time.sleep(0.05)


def key() -> str:
    return f"invoice:{uuid.uuid4().hex[:8]}"


def test_a_sigkilled_holder_not_retried_dies_and_its_claim_is_taken_over(
    client: Any, tmp_path: Path
) -> None:
    k = key()
    holder = client.enqueue(cf.send_once_unretried, key=k, folder=str(tmp_path))
    pid = int(wait_for_file(tmp_path, f"holding-{holder.run_id}-1").read_text())
    os.kill(pid, signal.SIGKILL)
    (view,) = client.wait([holder.run_id], timeout=120)
    assert view.status is RunStatus.FAILED
    (attempt,) = client.detail(holder.run_id).attempts
    assert attempt.status is AttemptStatus.LOST  # recorded lost, and not retried
    seen = client.enqueue(cf.read_claim, key=k).result(timeout=60)
    assert seen["state"] == "died" and seen["holder"] == [holder.run_id, "send_once_unretried", 1]
    got = client.enqueue(cf.claim_and_finish, key=k, result="checked").result(timeout=60)
    assert got["acquired"] and got["taken_over_from"] == [holder.run_id, 1]
    assert got["result"] == "checked"


def test_a_sigkilled_holder_that_is_retried_gets_its_claim_back(
    client: Any, tmp_path: Path
) -> None:
    k = key()
    holder = client.enqueue(cf.send_once, key=k, folder=str(tmp_path))
    pid = int(wait_for_file(tmp_path, f"holding-{holder.run_id}-1").read_text())
    os.kill(pid, signal.SIGKILL)
    wait_for_file(tmp_path, f"holding-{holder.run_id}-2", limit_s=120)  # the retry holds it
    other = client.enqueue(cf.send_once, key=k, folder=str(tmp_path)).result(timeout=60)
    assert other["acquired"] is False and other["state"] == "running"
    assert other["holder"] == [holder.run_id, "send_once", 2]
    (tmp_path / "release").touch()
    done = holder.result(timeout=120)
    assert done["acquired"] and done["regained"] and done["taken_over_from"] is None
    assert done["result"] == {"sent_by": holder.run_id}
    statuses = [a.status for a in client.detail(holder.run_id).attempts]
    assert statuses == [AttemptStatus.LOST, AttemptStatus.SUCCEEDED]


def test_a_coordinator_killed_between_claim_and_done_loses_nothing(
    client: Any, tmp_path: Path
) -> None:
    k = key()
    holder = client.enqueue(cf.send_once, key=k, folder=str(tmp_path))
    wait_for_file(tmp_path, f"holding-{holder.run_id}-1")
    old_pid: int = client.call(Pid())
    os.kill(old_pid, signal.SIGKILL)
    # the claim survived: a racing run, answered by the restarted coordinator, sees it held
    other = client.enqueue(cf.send_once, key=k, folder=str(tmp_path)).result(timeout=120)
    assert client.call(Pid()) != old_pid
    assert other["acquired"] is False and other["state"] == "running"
    assert other["holder"] == [holder.run_id, "send_once", 1]
    (tmp_path / "release").touch()
    done = holder.result(timeout=120)  # its done() rode out the restart
    assert done["acquired"] and done["state"] == "done"
    (claim,) = client.detail(holder.run_id).claims
    assert claim.done and claim.holder.attempt == 1
    after = client.enqueue(cf.read_claim, key=k).result(timeout=60)
    assert after["state"] == "done" and after["result"] == {"sent_by": holder.run_id}
    assert len(list(tmp_path.glob("effect-*"))) == 1
