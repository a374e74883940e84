"""Horizontal scaling on one machine with `ray.cluster_utils.Cluster`.

A head with one CPU runs a backlog of sleep-bound steps (the machine has two cores: only
steps that wait can speed up here). Two worker nodes join during the run: their node ids
appear in the attempts and several steps run at once where the head ran one. One of them
is then killed in the middle of its steps: those attempts are recorded as lost and retried
on the other nodes, and every run completes with exactly one successful attempt.

`Cluster` needs a driver of its own (the test session already called ray.init), so the
scenario runs in a subprocess: this file run as a module with `--scenario`. Ray's fake
multi-node autoscaler is not used: it needs its head on port 6379, which Redis holds here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

from tests.cluster.conftest import run_script

STEPS = 200  # enough that steps are still running on every node when one is killed
NAP_S = 0.5
WINDOW_S = 0.9 * NAP_S  # two steps that start within it ran at the same time
SCENARIO_TIMEOUT_S = 240.0


def test_added_nodes_take_steps_and_a_killed_node_loses_nothing(tmp_path: Path) -> None:
    mark = uuid.uuid4().hex
    report = run_script(
        mark,
        Path(__file__),
        "--scenario",
        "--data-dir",
        str(tmp_path / "wfray"),
        timeout_s=SCENARIO_TIMEOUT_S,
    )
    head, added, killed = report["head"], report["added"], report["killed"]
    attempts = report["attempts"]
    by_run: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for attempt in attempts:
        by_run[attempt["run_id"]].append(attempt)

    # every run completed, each with exactly one successful attempt
    assert report["statuses"] == {"completed": STEPS}, report["statuses"]
    assert len(by_run) == STEPS
    for run_id, tries in by_run.items():
        assert [a["status"] for a in tries].count("succeeded") == 1, (run_id, tries)

    # the nodes that joined mid-run took steps
    nodes_used = {a["node_id"] for a in attempts if a["status"] == "succeeded"}
    assert head in nodes_used
    assert set(added) <= nodes_used | {killed}, (added, nodes_used)
    assert any(a["node_id"] == added[0] for a in attempts if a["status"] == "succeeded")

    # the steps running on the killed node were lost and retried elsewhere
    lost = [a for a in attempts if a["status"] == "lost"]
    on_killed = [(a["status"], a["finished"]) for a in attempts if a["node_id"] == killed]
    assert lost, f"no attempt was in flight on the killed node: {on_killed}, {report['times']}"
    for attempt in lost:
        retry = next(a for a in by_run[attempt["run_id"]] if a["status"] == "succeeded")
        assert retry["attempt"] > attempt["attempt"] and retry["node_id"] != killed, by_run

    # the head ran one step at a time; once the nodes had joined, several ran at once.
    # Counted from when the steps started (the workers' clocks), not as steps per second
    # over a stretch of wall time: on a busy machine new nodes start their workers late.
    times = report["times"]
    starts = sorted(a["started"] for a in attempts if a["started"] is not None)
    alone = [t for t in starts if t < times["add"]]
    assert most_within(alone, WINDOW_S) == 1, alone
    # Seen by the steps themselves (a file each while it runs): an attempt lost with its
    # node may never have told the coordinator when it started, so attempts undercount.
    assert report["running_at_kill"] >= 3, report["running_at_kill"]
    before, after = report["rate_before"], report["rate_after"]
    print(f"steps/s: {before:.2f} -> {after:.2f}; {len(lost)} lost and retried")


# -- the scenario, in its own process ------------------------------------------------------


def most_within(starts: list[float], window_s: float) -> int:
    """The most steps that started within any `window_s` of each other (sorted input)."""
    most, first = 0, 0
    for last, t in enumerate(starts):
        while t - starts[first] >= window_s:
            first += 1
        most = max(most, last - first + 1)
    return most


def rate(finished: list[float], start: float, end: float) -> float:
    return sum(1 for t in finished if start <= t < end) / max(end - start, 1e-6)


def wait_for_steps_on(marks: str, node_ids: list[str], timeout_s: float = 60.0) -> int:
    """Until a step runs on each of the nodes at once, each started moments ago, with at
    least three running in all: they all run steps together, and a kill now finds one
    mid-way on any of them. Returns how many steps were running at that moment."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        names = os.listdir(marks)  # a step's file exists exactly while it runs
        running = set()
        for name in names:
            with contextlib.suppress(FileNotFoundError):  # that step just ended
                if time.time() - os.path.getmtime(os.path.join(marks, name)) < NAP_S / 3:
                    running.update(node for node in node_ids if name.startswith(node))
        if running == set(node_ids) and len(names) >= 3:
            return len(names)
        time.sleep(0.01)
    raise AssertionError(
        f"three steps, some on each of {node_ids}, did not run at once within {timeout_s}s"
    )


def kill_node(cluster: Any, node: Any) -> None:
    """A node lost at once: its worker processes (the running steps) die with its raylet.

    Killing the raylet alone lets a running step finish and report before its worker
    notices, so nothing would be in flight to lose.
    """
    import psutil

    (raylet,) = node.all_processes["raylet"]
    for worker in psutil.Process(raylet.process.pid).children(recursive=True):
        worker.kill()
    cluster.remove_node(node, allow_graceful=False)


def scenario(data_dir: str) -> dict[str, Any]:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray
    from ray.cluster_utils import Cluster

    import wfray
    from tests.fixtures import cluster_flows

    try:
        cluster = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 1, "resources": {"io": 2}, "include_dashboard": False},
        )
    except Exception as exc:
        print(f"RAY UNAVAILABLE: Cluster failed to start: {exc!r}")
        raise SystemExit(1) from exc
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        head = ray.get_runtime_context().get_node_id()
        client = wfray.connect(wfray.load_settings(data_dir=data_dir, namespace="wfray-scale"))
        marks = os.path.join(data_dir, "running")
        os.makedirs(marks, exist_ok=True)
        runs = client.submit_many(
            cluster_flows.nap_marked, [{"seconds": NAP_S, "marks": marks}] * STEPS
        )
        t0 = time.time()
        client.wait([r.run_id for r in runs[:4]], timeout=60)  # the head alone, one at a time
        t_add = time.time()
        nodes = [cluster.add_node(num_cpus=2, wait=False) for _ in range(2)]
        cluster.wait_for_nodes(timeout=60)
        t_joined = time.time()
        running_at_kill = wait_for_steps_on(marks, [nodes[0].node_id, nodes[1].node_id])
        t_kill = time.time()
        kill_node(cluster, nodes[1])
        views = client.wait([r.run_id for r in runs], timeout=150)
        statuses: dict[str, int] = defaultdict(int)
        for view in views:
            statuses[view.status.value] += 1
        attempts = [
            {
                "run_id": a.run_id,
                "attempt": a.attempt,
                "status": a.status.value,
                "node_id": a.node_id,
                "started": a.started_at.timestamp() if a.started_at else None,
                "finished": a.finished_at.timestamp() if a.finished_at else None,
            }
            for run in runs
            for a in client.detail(run.run_id).attempts
        ]
        finished = [a["finished"] for a in attempts if a["status"] == "succeeded"]
        client.shutdown()
        return {
            "head": head,
            "added": [n.node_id for n in nodes],
            "killed": nodes[1].node_id,
            "statuses": dict(statuses),
            "running_at_kill": running_at_kill,
            "attempts": attempts,
            "rate_before": rate(finished, t0 + 1.0, t_add),
            "rate_after": rate(finished, t_joined, t_kill),
            "times": {"start": t0, "add": t_add, "joined": t_joined, "kill": t_kill},
        }
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenario", action="store_true")
    parser.add_argument("--data-dir", required=True)
    args = parser.parse_args()
    answer = scenario(args.data_dir)
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
