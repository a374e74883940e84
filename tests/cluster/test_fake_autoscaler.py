"""Scale-up from the backlog and scale-down when idle, with Ray's fake multi-node autoscaler.

The fake autoscaler (`tests/cluster/fake_autoscaler.yaml`) starts worker "nodes" (raylets on
this machine) from the demand it sees. It only works with its head on port 6379, which Redis
holds on this host, so the whole scenario runs in a network namespace of its own
(`unshare -n`): a private loopback where 6379 is free and nothing reaches the outside (hence
a SQLite store in a temp dir). The head has no CPU: the cpu steps of a backlog cannot run
until the autoscaler adds `cpu_pool` nodes, asked for by wfray's coordinator
(`request_resources`, capped by `autoscale_max_cpu_bundles`) and by the pending tasks. Once
the backlog drains, the request is released and the idle nodes are removed.

Every process started carries a marker in its environment (worker nodes inherit it from the
autoscaler's monitor); the test kills exactly those by pid and checks that none is left.
This file, run as a script with `--scenario`, is the driver inside the namespace.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.conftest import ROOT, kill_marked, marked, marked_env
from tests.conftest import service_unavailable

CONFIG = Path(__file__).with_name("fake_autoscaler.yaml")
STEPS = 8
NAP_S = 1.5
MAX_CPU_BUNDLES = 4
MAX_CPU_NODES = 2  # cpu_pool's max_workers in the config
IDLE_TIMEOUT_S = 6.0  # idle_timeout_minutes: 0.1 in the config
SCALE_DOWN_WAIT_S = 60.0
SCENARIO_TIMEOUT_S = 150.0
IN_NAMESPACE = 'ip link set lo up && exec "$@"'  # the new namespace's loopback starts down


def network_namespace_unavailable() -> str | None:
    """Why `unshare -n` cannot give us a private loopback here, or None when it can."""
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            return f"{tool!r} is not installed"
    try:
        probe = subprocess.run(
            ["unshare", "-n", "sh", "-c", "ip link set lo up"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except subprocess.TimeoutExpired:
        return "`unshare -n` did not answer in 30s"
    if probe.returncode != 0:
        return f"`unshare -n` failed ({probe.returncode}): {probe.stderr.strip()}"
    return None


def run_in_namespace(mark: str, temp_dir: str, data_dir: Path) -> dict[str, Any]:
    """Run the scenario in a network namespace of its own; its last stdout line is JSON."""
    command = [
        *("unshare", "-n", "sh", "-c", IN_NAMESPACE, "sh"),
        *(sys.executable, str(Path(__file__)), "--scenario"),
        *("--temp-dir", temp_dir, "--data-dir", str(data_dir)),
    ]
    try:
        done = subprocess.run(
            command,
            cwd=ROOT,
            env=marked_env(mark),
            capture_output=True,
            text=True,
            timeout=SCENARIO_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the scenario did not finish in {SCENARIO_TIMEOUT_S:.0f}s: {exc}")
    if done.returncode != 0 and "RAY UNAVAILABLE" in done.stdout:
        service_unavailable("Ray fake multi-node head", done.stdout.strip().splitlines()[-1])
    assert done.returncode == 0, f"the scenario failed ({done.returncode}):\n{done.stderr[-4000:]}"
    lines = done.stdout.strip().splitlines()
    assert lines, f"the scenario printed nothing:\n{done.stderr[-4000:]}"
    report: dict[str, Any] = json.loads(lines[-1])
    return report


def test_the_backlog_adds_worker_nodes_that_are_removed_once_idle(tmp_path: Path) -> None:
    if (reason := network_namespace_unavailable()) is not None:
        service_unavailable("a network namespace (unshare -n)", reason)
    mark = uuid.uuid4().hex
    temp_dir = tempfile.mkdtemp(prefix="wfa-", dir="/tmp")  # Ray's socket paths stay short
    try:
        report = run_in_namespace(mark, temp_dir, tmp_path / "wfray")
    finally:
        kill_marked(mark)  # the head and its nodes are still up: the scenario never stops Ray
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert not marked(mark), "processes of the fake cluster survived the teardown"

    samples, attempts, times = report["samples"], report["attempts"], report["times"]
    head = report["head"]

    # nothing but the head before the backlog
    assert samples[0]["workers"] == [], samples[0]

    # the backlog asked for bundles, capped, and released them once drained
    requests = [s["requested"] for s in samples]
    assert [{"CPU": 1.0}] * MAX_CPU_BUNDLES in requests, requests
    assert requests[-1] == [], requests

    # worker nodes were added, and they (not the head, which has no CPU) ran every step
    assert report["statuses"] == {"completed": STEPS}, report["statuses"]
    added = {node for s in samples for node in s["workers"]}
    assert len(added) == MAX_CPU_NODES, f"expected {MAX_CPU_NODES} cpu_pool nodes: {samples}"
    ran_on = Counter(a["node_id"] for a in attempts if a["status"] == "succeeded")
    assert sum(ran_on.values()) == STEPS, attempts
    assert head not in ran_on and set(ran_on) <= added, (head, ran_on, added)
    assert len(ran_on) == MAX_CPU_NODES, f"every added node took steps: {ran_on}"

    # once idle for the timeout, every worker node was removed (not before)
    assert samples[-1]["workers"] == [], f"worker nodes still alive: {samples[-1]}"
    for node in added:
        last_step = max(a["finished"] for a in attempts if a["node_id"] == node)
        removed = next(s["t"] for s in samples if s["t"] > last_step and node not in s["workers"])
        assert removed - last_step >= IDLE_TIMEOUT_S - 1.0, (node, last_step, removed)
    print(
        f"{len(added)} nodes added {times['first_node'] - times['submitted']:.1f}s after the"
        f" backlog, drained in {times['drained'] - times['submitted']:.1f}s, all removed"
        f" {times['scaled_down'] - times['drained']:.1f}s later"
    )


# -- the scenario, in the namespace --------------------------------------------------------


def start_head(temp_dir: str) -> None:
    """A fake multi-node head on 6379 (free in this namespace); `ray start` returns at once."""
    command = [
        str(Path(sys.executable).with_name("ray")),
        *("start", "--head", "--port=6379", "--node-ip-address=127.0.0.1", "--num-cpus=0"),
        f"--autoscaling-config={CONFIG}",
        f"--temp-dir={temp_dir}",
        *("--include-dashboard=false", "--disable-usage-stats"),
        "--object-store-memory=200000000",
    ]
    env = dict(os.environ)  # the test's marker, PYTHONPATH and RAY_AUTH_MODE=disabled
    env.update({"RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"})
    try:
        started = subprocess.run(command, env=env, capture_output=True, text=True, timeout=90)
    except subprocess.TimeoutExpired as exc:
        print(f"RAY UNAVAILABLE: ray start did not return in 90s: {exc}")
        raise SystemExit(1) from exc
    if started.returncode != 0:
        print(f"RAY UNAVAILABLE: ray start exited {started.returncode}: {started.stderr[-500:]!r}")
        raise SystemExit(1)


def requested_bundles() -> list[dict[str, float]]:
    """The resource request the autoscaler reads from the GCS (set by wfray's coordinator)."""
    from ray._private.ray_constants import AUTOSCALER_RESOURCE_REQUEST_CHANNEL
    from ray.experimental.internal_kv import _internal_kv_get

    raw = _internal_kv_get(AUTOSCALER_RESOURCE_REQUEST_CHANNEL)
    bundles: list[dict[str, float]] = json.loads(raw) if raw else []
    return bundles


class Sampler:
    """Every half second: which worker nodes are alive and what is requested."""

    def __init__(self, head: str) -> None:
        self.head = head
        self.samples: list[dict[str, Any]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="node-sampler", daemon=True)

    def sample(self) -> dict[str, Any]:
        import ray

        workers = sorted(
            n["NodeID"] for n in ray.nodes() if n["Alive"] and n["NodeID"] != self.head
        )
        entry = {"t": time.time(), "workers": workers, "requested": requested_bundles()}
        self.samples.append(entry)
        return entry

    def run(self) -> None:
        while not self.stop.wait(0.5):
            self.sample()

    def first_time(self, check: Callable[[dict[str, Any]], Any]) -> float:
        return float(next(s["t"] for s in self.samples if check(s)))


def scenario(temp_dir: str, data_dir: str) -> dict[str, Any]:
    start_head(temp_dir)
    import ray

    import wfray
    from tests.fixtures import cluster_flows

    ray.init(address="127.0.0.1:6379", log_to_driver=False)
    head = ray.get_runtime_context().get_node_id()
    settings = wfray.load_settings(
        data_dir=data_dir,
        namespace="wfray-fake-autoscaler",
        autoscale_max_cpu_bundles=MAX_CPU_BUNDLES,
        autoscale_interval_s=0.5,
    )
    client = wfray.connect(settings)
    sampler = Sampler(head)
    sampler.sample()
    sampler.thread.start()
    submitted = time.time()
    runs = client.submit_many(cluster_flows.nap, [{"seconds": NAP_S}] * STEPS)
    views = client.wait([r.run_id for r in runs], timeout=90)
    drained = time.time()
    deadline = time.monotonic() + SCALE_DOWN_WAIT_S
    while time.monotonic() < deadline:
        time.sleep(0.5)
        if sampler.samples[-1]["t"] > drained and not sampler.samples[-1]["workers"]:
            break
    sampler.stop.set()
    sampler.thread.join(timeout=10)
    sampler.sample()
    attempts = [
        {
            "run_id": a.run_id,
            "status": a.status.value,
            "node_id": a.node_id,
            "finished": a.finished_at.timestamp() if a.finished_at else None,
        }
        for run in runs
        for a in client.detail(run.run_id).attempts
    ]
    client.shutdown()
    ray.shutdown()
    samples = sampler.samples
    return {
        "head": head,
        "statuses": dict(Counter(v.status.value for v in views)),
        "attempts": attempts,
        "samples": samples,
        "times": {
            "submitted": submitted,
            "first_node": sampler.first_time(lambda s: s["workers"]),
            "drained": drained,
            "scaled_down": samples[-1]["t"],
        },
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenario", action="store_true")
    parser.add_argument("--temp-dir", required=True)
    parser.add_argument("--data-dir", required=True)
    args = parser.parse_args()
    answer = scenario(args.temp_dir, args.data_dir)
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
