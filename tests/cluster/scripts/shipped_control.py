"""What an operator does to the shipped-code head between jobs, as one Ray driver of its own
(not a job: it has no working dir, and imports none of the user's code).

    python shipped_control.py GCS_ADDRESS '[["connect"], ["wait", RUN_ID], ...]'

prints one JSON line: the answer of each action, in order. Settings (data dir, namespace)
come from WFRAY_* variables, as for the jobs.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import ray
from ray._private.runtime_env.packaging import package_exists
from ray.experimental.internal_kv import _internal_kv_del

import wfray
from wfray.application.client_commands import Pid

WAIT_S = 120.0


def view(client: Any, run_id: str) -> dict[str, Any]:
    (found,) = client.wait([run_id], timeout=WAIT_S)
    detail = client.detail(run_id)
    return {
        "status": found.status.value,
        "result": None if found.result_json is None else json.loads(found.result_json),
        "error": found.error,
        "env_hash": detail.run.env_hash,
        "runtime_env": detail.runtime_env,
        "attempts": [
            [a.step, a.status.value, a.error_type, (a.error_message or "")[:300]]
            for a in detail.attempts
        ],
    }


def restart_coordinator(client: Any) -> int:
    """Kill the coordinator's process as a crash would; answers the new process's pid."""
    old = client.call(Pid())
    ray.kill(client.handle, no_restart=False)  # Ray starts it again (max_restarts=-1)
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        try:
            pid: int = client.call(Pid())
            if pid != old:
                return pid
        except Exception:  # restarting: the transport's own retries ran out
            pass
        time.sleep(0.5)
    raise TimeoutError("the coordinator did not come back")


def act(client: Any, action: list[Any]) -> Any:
    kind, *args = action
    if kind == "connect":
        return client.call(Pid())
    if kind == "touch":
        Path(args[0]).touch()
        return True
    if kind == "wait":
        return view(client, args[0])
    if kind == "package_exists":
        return package_exists(args[0])
    if kind == "drop_packages_of":
        # what Ray's GC does once no job, detached actor or pin refers to a package: the
        # GCS's RuntimeEnvManager deletes its key from the internal KV (namespace "")
        env = client.detail(args[0]).runtime_env or {}
        uris = [env["working_dir"], *env.get("py_modules", [])]
        return {uri: bool(_internal_kv_del(uri)) and not package_exists(uri) for uri in uris}
    if kind == "restart_coordinator":
        return restart_coordinator(client)
    if kind == "resume":
        return [r.applied for r in client.resume([args[0]])]
    if kind == "publish":
        # a publisher declares the subscribers it publishes to (their input models check the
        # payload): an operator's process with the deploy's module, but no env of its own
        sys.path.insert(0, args[0])
        import shipped_flow  # type: ignore[import-not-found]  # noqa: F401

        (run_id,) = client.publish("ship", {}, id=args[1])
        return view(client, run_id)
    if kind == "trigger":
        return view(client, client.trigger_schedule(args[0]).run_id)
    raise ValueError(f"unknown action {kind!r}")


def main() -> None:
    address, actions = sys.argv[1], json.loads(sys.argv[2])
    settings = wfray.load_settings()
    ray.init(address=address, namespace=settings.namespace, log_to_driver=False)
    client = wfray.connect(settings)
    print(json.dumps([act(client, action) for action in actions]), flush=True)


if __name__ == "__main__":
    main()
