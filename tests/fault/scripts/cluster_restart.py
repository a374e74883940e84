"""The two halves of tests/fault/test_cluster_restart.py, each in its own process and Ray.

    python tests/fault/scripts/cluster_restart.py before --data-dir D --namespace N \
        --ray-temp T --holds 16 --hold-s 2 --chains 4
    python tests/fault/scripts/cluster_restart.py after --data-dir D --namespace N \
        --ray-temp T --runs RUN_IDS_JSON

`before` starts a local Ray, submits runs, waits until every hold is dispatched, prints
{"holds": [...], "chains": [...], "finished_before": [...]} as one JSON line, then shuts its
Ray down with the runs still in flight. `after` starts a fresh local Ray on the same data
dir, waits for the runs and prints {run_id: {"status", "version", "tasks", "attempts"}}.
The last line of stdout is the JSON answer; everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import ray

import wfray
from tests.fixtures import flows
from wfray.application.client_commands import Views


def start_ray(temp_dir: str) -> None:
    ray.init(
        address="local",
        num_cpus=2,
        resources={"io": 4},
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=100 * 1024**2,
        _temp_dir=temp_dir,
    )


def connect(args: argparse.Namespace) -> Any:
    settings = wfray.load_settings(data_dir=args.data_dir, namespace=args.namespace)
    return wfray.connect(settings)


def answer(value: Any) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


def before(args: argparse.Namespace) -> None:
    start_ray(args.ray_temp)
    client = connect(args)
    holds = client.submit_many(flows.hold, [{"seconds": args.hold_s}] * args.holds)
    chains = client.submit_many(flows.chain, [None] * args.chains)
    deadline = time.monotonic() + 60
    while client.stats()["running_attempts"] < args.holds:
        if time.monotonic() > deadline:
            raise SystemExit(f"fewer than {args.holds} attempts running after 60s")
        time.sleep(0.05)
    ids = [r.run_id for r in holds + chains]
    finished = [v.run_id for v in client.call(Views(ids)) if v.status.finished]
    answer(
        {
            "holds": [r.run_id for r in holds],
            "chains": [r.run_id for r in chains],
            "finished_before": finished,
        }
    )
    # the whole Ray instance goes, coordinator, executors and running steps with it
    ray.shutdown()
    os._exit(0)


def after(args: argparse.Namespace) -> None:
    start_ray(args.ray_temp)
    client = connect(args)
    run_ids = json.loads(args.runs)
    client.wait(run_ids, timeout=args.wait_s)
    report: dict[str, Any] = {}
    for run_id in run_ids:
        detail = client.detail(run_id)
        report[run_id] = {
            "status": detail.run.status.value,
            "tasks": {f"{t.step}/{t.map_index}": t.status.value for t in detail.tasks},
            "attempts": [
                {
                    "task": f"{a.step}/{a.map_index}",
                    "attempt": a.attempt,
                    "status": a.status.value,
                    "error_type": a.error_type,
                    "queued_at": a.queued_at.isoformat(),
                    "started_at": a.started_at.isoformat() if a.started_at else None,
                    "finished_at": a.finished_at.isoformat() if a.finished_at else None,
                }
                for a in detail.attempts
            ],
        }
    client.shutdown()
    answer(report)
    ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("phase", choices=["before", "after"])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--ray-temp", required=True)
    parser.add_argument("--holds", type=int, default=16)
    parser.add_argument("--hold-s", type=float, default=2.0)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--runs", default="[]")
    parser.add_argument("--wait-s", type=float, default=90.0)
    args = parser.parse_args()
    before(args) if args.phase == "before" else after(args)


if __name__ == "__main__":
    main()
