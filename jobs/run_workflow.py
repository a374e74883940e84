"""Run one workflow as a Ray batch job, following its progress in the job's log.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python -m jobs.run_workflow --module jobs.example --workflow demo-orders \\
        --input '{"customer": "ACME GmbH", "order_ids": [1, 2, 3]}' --idempotency-key acme-1

It connects to the cluster the job runs on (RAY_ADDRESS, set by Ray for every job, else
"auto"), starts or finds the coordinator, submits the run (the same idempotency key returns
the same run, so resubmitting a job never runs the workflow twice), prints a progress line
whenever the count of finished tasks changes (at most once a second) and the result at the
end. Exit status: 0 when the run completed, 1 when it failed, was cancelled or compensated,
2 for bad arguments, 3 when it did not finish within --timeout.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import wfray
from wfray import RunStatus
from wfray.application.client_commands import Views
from wfray.sdk.definition import Workflow, registered

EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE, EXIT_TIMEOUT = 0, 1, 2, 3


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m jobs.run_workflow", description=__doc__)
    parser.add_argument("--module", required=True, help="module declaring the workflow")
    parser.add_argument("--workflow", required=True, help="the workflow's name")
    parser.add_argument("--input", default="null", help="the run's input, as JSON")
    parser.add_argument("--idempotency-key", default=None, help="the same key, the same run")
    parser.add_argument("--timeout", type=float, default=24 * 3600.0, help="seconds to wait")
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between progress")
    return parser.parse_args(argv)


def find_workflow(module_name: str, name: str) -> Workflow:
    """The workflow named `name` (or bound to that attribute) in `module_name`."""
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SystemExit(f"--module {module_name!r} cannot be imported: {exc}") from exc
    found = registered(name)
    if found is None:
        attribute = getattr(module, name, None)
        found = getattr(attribute, "__wfray_workflow__", attribute)
    if not isinstance(found, Workflow):
        raise SystemExit(
            f"--workflow {name!r}: no workflow of that name in {module_name!r}; "
            "expected the name given to wfray.Workflow(...) or a @wfray.task function"
        )
    return found


def connect() -> wfray.Client:
    import ray

    if not ray.is_initialized():
        # inside `ray job submit` Ray sets RAY_ADDRESS to the cluster's GCS
        ray.init(address=os.environ.get("RAY_ADDRESS", "auto"), log_to_driver=False)
    if not any(k in os.environ for k in ("WFRAY_DATA_DIR", "WFRAY_DATABASE_URL")):
        say(
            "warning: neither WFRAY_DATABASE_URL nor WFRAY_DATA_DIR is set; a new coordinator "
            "would keep its store under this job's working directory"
        )
    return wfray.connect(wfray.load_settings())


def say(line: str) -> None:
    print(line, flush=True)  # the job's log is its stdout: no buffering


def follow(client: wfray.Client, run_id: str, timeout_s: float, poll_s: float) -> RunStatus:
    """Print 'progress: done/total tasks' when it changes; the run's final status."""
    deadline = time.monotonic() + timeout_s
    last: tuple[int, int] | None = None
    while True:
        views = client.wait([run_id], timeout=poll_s)
        detail = client.detail(run_id)
        done = sum(1 for task in detail.tasks if task.status.finished)
        progress = (done, len(detail.tasks))
        if progress != last:
            say(f"progress: {done}/{len(detail.tasks)} tasks done ({detail.run.status.value})")
            last = progress
        if views and views[0].status.finished:
            return views[0].status
        if time.monotonic() > deadline:
            return detail.run.status


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        payload: Any = json.loads(args.input)
    except ValueError as exc:
        say(f"--input is not JSON: {exc}")
        return EXIT_USAGE
    try:
        flow = find_workflow(args.module, args.workflow)
    except SystemExit as exc:
        say(str(exc))
        return EXIT_USAGE
    client = connect()
    run = client.submit(flow, payload, idempotency_key=args.idempotency_key)
    say(f"submitted run {run.run_id} of {flow.name}")
    status = follow(client, run.run_id, args.timeout, args.poll)
    if not status.finished:
        say(f"run {run.run_id} still {status.value} after {args.timeout:.0f}s")
        return EXIT_TIMEOUT
    view = client.call(Views([run.run_id]))[0]
    if status is RunStatus.COMPLETED:
        say(f"run {run.run_id} completed: result {json.dumps(to_json(client, view, flow))}")
        return EXIT_OK
    say(f"run {run.run_id} {status.value}: {view.error}")
    return EXIT_RUN_FAILED


def to_json(client: wfray.Client, view: Any, flow: Workflow) -> Any:
    from pydantic import TypeAdapter

    result = client.decode(view, flow)
    return TypeAdapter(Any).dump_python(result, mode="json")


if __name__ == "__main__":
    sys.exit(main())
