"""Shared tasks on a real Ray instance (coordinator/shared_tasks.py): each attempt in one is
still its own attempt, a worker killed under a shared task loses none of them, and a
cancelled one is dropped without stopping the others."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray

from tests.fixtures import flows
from tests.integration.conftest import start_wfray
from wfray.adapters.ray.host import executor_name
from wfray.domain.status import AttemptStatus, RunStatus

pytestmark = pytest.mark.timeout(180)
BURST = 200  # runs submitted at once: deep enough a backlog to share tasks on 2 CPUs
GATED = 100  # the one run of a burst that waits at its gate (past the light-load first ones)


@pytest.fixture(scope="module")
def client(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Steps under a second count as short here: on a loaded machine a trivial step's mean
    may pass the default 10 ms, and then nothing shares a task (the precondition of every
    test here, not what they test)."""
    wf = start_wfray(tmp_path_factory.mktemp("shared"), short_step_s=1.0)
    yield wf
    wf.shutdown()


def cpu_stats(client: Any) -> dict[str, int]:
    executor = ray.get_actor(executor_name("cpu"), namespace=client.settings.namespace)
    stats: dict[str, int] = ray.get(executor.stats.remote(), timeout=10)
    return stats


def learn_that_gate_is_short(client: Any) -> None:
    """Enough quick runs that the step's running mean is short, whatever came before."""
    for handle in client.submit_many(flows.gate, [{}] * 60):
        handle.result(timeout=60)


def burst_with_a_gate(client: Any, gate: Path) -> list[Any]:
    inputs: list[dict[str, str]] = [{}] * BURST
    inputs[GATED] = {"gate": str(gate)}
    return client.submit_many(flows.gate, inputs)


def wait_for_pid(path: Path, timeout: float) -> int:
    """The pid the gated step writes: waits until the file holds a whole number (created is
    not yet written)."""
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text() if path.exists() else ""
        if text.strip().isdigit():
            return int(text)
        assert time.monotonic() < deadline, f"{path} held no pid within {timeout}s: {text!r}"
        time.sleep(0.02)


def wait_until(condition: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout}s"
        time.sleep(0.05)


def test_a_deep_backlog_of_a_short_step_shares_tasks_and_records_every_attempt(
    client: Any,
) -> None:
    learn_that_gate_is_short(client)
    before = cpu_stats(client)
    handles = client.submit_many(flows.gate, [{}] * BURST)
    pids = [h.result(timeout=120) for h in handles]
    after = cpu_stats(client)
    attempts = after["attempts"] - before["attempts"]
    tasks = after["tasks"] - before["tasks"]
    assert attempts == BURST
    assert tasks < attempts / 2, f"{attempts} attempts ran as {tasks} tasks"
    for handle, pid in zip(handles[::20], pids[::20], strict=True):
        [attempt] = handle.detail().attempts
        assert attempt.status is AttemptStatus.SUCCEEDED and attempt.pid == pid


def test_a_worker_killed_under_a_shared_task_loses_none_of_its_attempts(
    client: Any, tmp_path: Path
) -> None:
    learn_that_gate_is_short(client)
    handles = burst_with_a_gate(client, tmp_path)
    pid = wait_for_pid(tmp_path / "pid", 60)
    os.kill(pid, signal.SIGKILL)
    for handle in handles:
        handle.result(timeout=120)  # every run completes
    lost = {
        handle.run_id: [a.status for a in handle.detail().attempts]
        for handle in handles
        if any(a.status is AttemptStatus.LOST for a in handle.detail().attempts)
    }
    assert handles[GATED].run_id in lost
    # its task's other attempts went with it, and ran again: each lost once, then succeeded
    assert len(lost) >= 2, lost
    assert all(s == [AttemptStatus.LOST, AttemptStatus.SUCCEEDED] for s in lost.values())


def test_a_cancelled_attempt_sharing_a_task_is_dropped_and_the_others_finish(
    client: Any, tmp_path: Path
) -> None:
    learn_that_gate_is_short(client)
    handles = burst_with_a_gate(client, tmp_path)
    wait_for_pid(tmp_path / "pid", 60)
    gated = handles[GATED]
    assert gated.cancel("test cancels it").applied

    # The commit of the cancel comes before the executor hears of it: the gate opens only
    # once the executor drops the shared attempt (or has stopped it, had it run alone), or
    # the attempt could end first and rightly count as succeeded.
    def executor_took_the_cancel() -> bool:
        running = gated.detail().attempts[-1].status is AttemptStatus.RUNNING
        return cpu_stats(client)["dropping"] >= 1 or not running

    wait_until(executor_took_the_cancel, "the executor taking the cancel")
    (tmp_path / "open").touch()
    others = [h for h in handles if h is not gated]
    for handle in others:
        handle.result(timeout=120)
    wait_until(
        lambda: gated.detail().attempts[-1].status is not AttemptStatus.RUNNING,
        "the cancelled attempt's outcome",
    )
    assert gated.status() is RunStatus.CANCELLED
    assert [a.status for a in gated.detail().attempts] == [AttemptStatus.CANCELLED]
    assert all(len(h.detail().attempts) == 1 for h in others[::10])
    # the executor forgets an attempt after the coordinator has its outcome: wait for it
    wait_until(lambda: cpu_stats(client)["running"] == 0, "the executor emptying")
