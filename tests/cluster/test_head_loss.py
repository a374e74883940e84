"""The head's GCS dies with runs in flight and comes back: every run completes, once.

A `ray start --head` of the test's own keeps Ray's GCS in this machine's Redis (GCS fault
tolerance: `RAY_REDIS_ADDRESS`, a namespace of the test's own in
`RAY_external_storage_namespace`). wfray starts on it and takes a backlog of sleep-bound
steps; with steps running and runs queued, the GCS process is killed (SIGKILL) and started
again with the command line and environment it had, as a supervisor (KubeRay, systemd)
would. Raylets, workers, wfray's actors and the driver wait for it on the same address.
Every run then completes with one successful attempt, each step's side effect (a file)
happened once, and runs submitted after the restart complete too.

The scenario runs in a subprocess (it needs a driver of its own): this file run as a script
with `--scenario`. Everything started carries the test's marker and is killed by pid; the
Redis keys of the namespace are deleted at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.cluster.conftest import FIXED_PORT_OPTIONS, marked_env
from tests.conftest import free_port, service_unavailable
from tests.fixtures.processes import kill_marked, marked

REDIS = ("127.0.0.1", 6379)
RUNS = 8
LATE_RUNS = 2
NAP_S = 4.0
HEAD_START_TIMEOUT_S = 180.0
HEAD_START_TRIES = 3
SCENARIO_TIMEOUT_S = 600.0
# Raylets, workers and drivers wait this long for a GCS that went away (Ray's default: 60 s)
GCS_RECONNECT_S = 300


# -- a few Redis commands, spoken directly (no client library is installed) -------------------


def redis_command(*args: str) -> Any:
    request = f"*{len(args)}\r\n".encode()
    for arg in args:
        data = arg.encode()
        request += b"$%d\r\n%s\r\n" % (len(data), data)
    with socket.create_connection(REDIS, timeout=10) as conn:
        conn.sendall(request)
        return _read_reply(conn.makefile("rb"))


def _read_reply(stream: Any) -> Any:
    line = stream.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else stream.read(size + 2)[:-2].decode()
    if kind == b"*":
        return [_read_reply(stream) for _ in range(int(rest))]
    raise RuntimeError(f"unexpected Redis reply {line!r}")


def namespace_keys(namespace: str) -> list[str]:
    keys: list[str] = redis_command("KEYS", f"RAY{namespace}@*")
    return keys


def delete_namespace(namespace: str) -> None:
    for key in namespace_keys(namespace):
        redis_command("DEL", key)


# -- a head with GCS fault tolerance ---------------------------------------------------------


def ft_env(mark: str, namespace: str) -> dict[str, str]:
    env = marked_env(mark)
    env.update(
        {
            "RAY_REDIS_ADDRESS": f"{REDIS[0]}:{REDIS[1]}",
            "RAY_external_storage_namespace": namespace,
            "RAY_gcs_rpc_server_reconnect_timeout_s": str(GCS_RECONNECT_S),
        }
    )
    return env


AGENT_PORTS = {  # Ray's port file name: the `ray start` option that fixes that port
    "dashboard_agent_listen_port": "dashboard-agent-listen-port",
    "metrics_agent_port": "dashboard-agent-grpc-port",
    "metrics_export_port": "metrics-export-port",
    "runtime_env_agent_port": "runtime-env-agent-port",
}


def write_agent_port_files_ahead(mark: str, ports: dict[str, int], stop: threading.Event) -> None:
    """Write the agents' port files as soon as the raylet starts.

    The raylet waits a fixed 15 s for its agents to write their port files and exits when
    they are late (ray-project/ray#65983), as they are on this loaded machine: the agents
    took 20-60 s to import. The ports are fixed here, so the files can be written ahead
    with the values the agents write again once they listen.
    """
    from ray._raylet import persist_port

    while not stop.is_set():
        for proc in marked(mark):
            with contextlib.suppress(psutil.Error):
                options = dict(
                    arg[2:].split("=", 1)
                    for arg in proc.cmdline()
                    if arg.startswith("--") and "=" in arg
                )
                if proc.name() == "raylet" and "node_id" in options:
                    for name, port in ports.items():
                        persist_port(options["session_dir"], options["node_id"], name, port)
                    return
        time.sleep(0.05)


def start_head(mark: str, namespace: str, temp_dir: str) -> str:
    """`ray start --head` on a free port (never 6379: Redis holds it); its GCS address."""
    failures = []
    for _ in range(HEAD_START_TRIES):
        port = free_port()
        fixed = {option: free_port() for option in FIXED_PORT_OPTIONS}
        command = [
            str(Path(sys.executable).with_name("ray")),
            "start",
            "--head",
            f"--port={port}",
            "--node-ip-address=127.0.0.1",
            "--include-dashboard=false",
            f"--dashboard-port={free_port()}",  # its minimal head still binds one
            "--num-cpus=2",
            '--resources={"io": 4}',
            "--object-store-memory=200000000",
            "--disable-usage-stats",
            f"--temp-dir={temp_dir}",
            *(f"--{option}={value}" for option, value in fixed.items()),
        ]
        stop = threading.Event()
        ports = {name: fixed[option] for name, option in AGENT_PORTS.items()}
        ahead = threading.Thread(target=write_agent_port_files_ahead, args=(mark, ports, stop))
        ahead.start()
        try:
            started = subprocess.run(
                command,
                env=ft_env(mark, namespace),
                cwd=temp_dir,
                capture_output=True,
                text=True,
                timeout=HEAD_START_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired as exc:
            failures.append(f"timed out: {exc}")
        else:
            if started.returncode == 0:
                return f"127.0.0.1:{port}"
            failures.append(started.stderr.strip().splitlines()[-1:])
        finally:
            stop.set()
            ahead.join()
        kill_marked(mark)
        delete_namespace(namespace)
    service_unavailable("Ray head with GCS fault tolerance", repr(failures)[-2000:])


@pytest.mark.timeout(HEAD_START_TRIES * HEAD_START_TIMEOUT_S + SCENARIO_TIMEOUT_S + 120)
def test_runs_in_flight_complete_once_when_the_gcs_dies_and_comes_back(tmp_path: Path) -> None:
    try:
        assert redis_command("PING") == "PONG"
    except OSError as exc:
        service_unavailable("Redis", repr(exc))
    mark = uuid.uuid4().hex
    namespace = f"wfray-test-{mark[:12]}"
    temp_dir = tempfile.mkdtemp(prefix="wfg-", dir="/tmp")  # Ray's socket paths stay short
    try:
        address = start_head(mark, namespace, temp_dir)
        assert namespace_keys(namespace), "the GCS keeps nothing in Redis: no fault tolerance"
        report = run_scenario(mark, namespace, address, tmp_path / "wfray")
    finally:
        kill_marked(mark)
        shutil.rmtree(temp_dir, ignore_errors=True)
        delete_namespace(namespace)
    assert not marked(mark), "processes of our Ray head survived the teardown"
    assert not namespace_keys(namespace), "the namespace's keys were left in Redis"

    assert report["gcs_pid_before"] != report["gcs_pid_after"]
    assert report["running_at_kill"] >= 1, report  # steps were in flight
    assert report["queued_at_kill"] >= 1, report  # and runs waited behind them
    assert report["statuses"] == {"completed": RUNS + LATE_RUNS}, report["statuses"]
    for run_id, outcomes in report["attempts"].items():
        assert outcomes.count("succeeded") == 1, (run_id, outcomes)
    # each step's side effect happened once: no attempt ran twice
    assert report["effects"] == dict.fromkeys(report["tags"], 1), report["effects"]
    assert report["head_alive_after"], "the head's raylet did not come back to the new GCS"
    lost = sum(outcomes.count("lost") for outcomes in report["attempts"].values())
    print(
        f"GCS killed with {report['running_at_kill']} steps running and "
        f"{report['queued_at_kill']} runs undispatched; {len(report['tags'])} runs completed "
        f"once each, {lost} attempts lost"
    )


def run_scenario(mark: str, namespace: str, address: str, data_dir: Path) -> dict[str, Any]:
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--scenario", address, str(data_dir)],
            cwd=Path(__file__).resolve().parents[2],
            env=ft_env(mark, namespace),
            capture_output=True,
            text=True,
            timeout=SCENARIO_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        said = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        pytest.fail(f"the scenario did not finish in {SCENARIO_TIMEOUT_S:.0f}s:\n{said[-4000:]}")
    assert done.returncode == 0, f"scenario failed ({done.returncode}):\n{done.stderr[-4000:]}"
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


# -- the scenario, in its own process ------------------------------------------------------


def gcs_process(mark: str) -> Any:
    (gcs,) = [p for p in marked(mark) if p.name() == "gcs_server"]
    return gcs


def restart_gcs(mark: str) -> tuple[int, int]:
    """SIGKILL the GCS, then start it again as it was started (a supervisor's job)."""
    gcs = gcs_process(mark)
    command, env, cwd = gcs.cmdline(), gcs.environ(), gcs.cwd()
    gcs.send_signal(signal.SIGKILL)
    psutil.wait_procs([gcs], timeout=30)
    time.sleep(2.0)  # the cluster runs without a GCS for a moment
    again = subprocess.Popen(
        command,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # like `ray start`'s daemons: not a child of this driver
    )
    return gcs.pid, again.pid


def say(what: str) -> None:
    """Progress on stderr: shown when the scenario fails or times out."""
    print(f"{time.strftime('%H:%M:%S')} {what}", file=sys.stderr, flush=True)


def wait_for(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s}s")
        time.sleep(0.1)


def scenario(address: str, data_dir: str) -> dict[str, Any]:
    import ray

    import wfray
    from tests.fixtures import cluster_flows
    from tests.fixtures.processes import MARK

    mark = os.environ[MARK]
    marks = os.path.join(data_dir, "marks")
    os.makedirs(marks, exist_ok=True)
    ray.init(address=address, log_to_driver=False)
    say("connected to Ray")
    # two cpu attempts handed to Ray at a time: the other runs wait in the store, undispatched
    settings = wfray.load_settings(data_dir=data_dir, namespace="wfray-headloss", cpu_window=2)
    client = wfray.connect(settings)
    say("wfray started")
    tags = [f"r{i}" for i in range(RUNS + LATE_RUNS)]
    inputs = [{"seconds": NAP_S, "marks": marks, "tag": tag} for tag in tags]
    runs = client.submit_many(cluster_flows.nap_once, inputs[:RUNS])

    def running() -> list[str]:
        names = os.listdir(marks)
        return [
            n
            for n in names
            if n.endswith(".running")
            and not any(d.startswith(n.split(".")[0] + ".done.") for d in names)
        ]

    try:
        wait_for(lambda: len(running()) >= 1, 300, "a step running")
    except AssertionError:
        first = client.detail(runs[0].run_id)
        say(f"first run: {first.status.value}, attempts {first.attempts!r}")
        raise
    in_flight = running()
    queued = [r for r in runs if not client.detail(r.run_id).attempts]
    say(f"{len(in_flight)} steps running, {len(queued)} runs queued: killing the GCS")
    pid_before, pid_after = restart_gcs(mark)
    say(f"GCS {pid_before} killed, started again as {pid_after}")

    late = client.submit_many(cluster_flows.nap_once, inputs[RUNS:])
    all_runs = runs + late
    views = client.wait([r.run_id for r in all_runs], timeout=400)
    say("every run ended")
    statuses = Counter(view.status.value for view in views)
    attempts = {
        r.run_id: [a.status.value for a in client.detail(r.run_id).attempts] for r in all_runs
    }
    effects = Counter(name.split(".")[0] for name in os.listdir(marks) if ".done." in name)
    head_alive = any(n["Alive"] for n in ray.nodes())
    client.shutdown()
    ray.shutdown()
    return {
        "gcs_pid_before": pid_before,
        "gcs_pid_after": pid_after,
        "running_at_kill": len(in_flight),
        "queued_at_kill": len(queued),
        "statuses": dict(statuses),
        "attempts": attempts,
        "effects": dict(effects),
        "tags": tags,
        "head_alive_after": head_alive,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenario", action="store_true")
    parser.add_argument("address")
    parser.add_argument("data_dir")
    args = parser.parse_args()
    with contextlib.redirect_stdout(sys.stderr):
        answer = scenario(args.address, args.data_dir)
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
