"""`python -m wfray.job MODULE:WORKFLOW`: one run of a workflow as a batch job.

    ray job submit --working-dir . -- python -m wfray.job shop.flows:orders \\
        --input @orders.json --idempotency-key nightly-2024-05-01 --wait

It imports MODULE, takes its attribute WORKFLOW (a `wfray.Workflow` or a `@wfray.task`
function), validates the input against it, connects to the Ray cluster the job runs on
(`--address`, else RAY_ADDRESS, which `ray job submit` sets, else the cluster `wfray start`
recorded), starts or finds wfray there
and submits one run. Without --wait it prints the run id; with --wait it follows the run
(progress on standard error) and prints its result as JSON on standard output, the status
line on standard error. The same idempotency key returns the same run, so a job submitted
twice runs the workflow once. Exit codes are `wfray submit`'s (cli_support.Exit).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from typing import Any

from pydantic import TypeAdapter

from wfray.client.submission import SubmitOptions, one_request
from wfray.config import Settings, load_settings
from wfray.domain.errors import WfrayError
from wfray.domain.masking import mask_text
from wfray.domain.status import RunStatus
from wfray.entrypoints.cli_instance import init_ray, read_instance
from wfray.entrypoints.cli_processes import use_ray_auth
from wfray.entrypoints.cli_support import (
    CliError,
    Exit,
    exit_code_of,
    import_module_of_workflows,
    parse_json_argument,
)
from wfray.sdk.definition import Workflow

EPILOG = """\
exit codes (the same as `wfray submit`):
  0  the run was submitted (with --wait: it completed)
  1  with --wait: the run failed, was cancelled, or had not ended within --timeout
  2  usage error: bad arguments, a module that does not import, an attribute that is not
     a workflow, an input that is not JSON or that the workflow refuses
  3  not found: MODULE has no attribute WORKFLOW
  4  wfray not reachable: Ray, the coordinator or the store; or wfray's actors there run
     another wfray version
"""

_TARGET = re.compile(r"^(?P<module>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):(?P<name>[A-Za-z_]\w*)$")


def parser() -> argparse.ArgumentParser:
    cmd = argparse.ArgumentParser(
        prog="python -m wfray.job",
        description="start one run of a workflow (a Ray batch job's entry point)",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmd.add_argument("target", metavar="MODULE:WORKFLOW", help="e.g. shop.flows:orders")
    cmd.add_argument("--input", help="JSON input, or @file (@- for standard input)")
    cmd.add_argument("--idempotency-key", help="the same key, the same run")
    cmd.add_argument("--priority", type=int, default=0)
    cmd.add_argument("--queue", default="default")
    cmd.add_argument("--wait", action="store_true", help="wait for the run to end")
    cmd.add_argument("--timeout", type=float, default=24 * 3600.0, help="seconds to --wait")
    cmd.add_argument("--poll", type=float, default=2.0, help="seconds between progress lines")
    cmd.add_argument(
        "--address", help="the Ray cluster (default: RAY_ADDRESS, else `wfray start`'s)"
    )
    return cmd


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)  # bad arguments: argparse's message and exit 2
    try:
        return run(args, load_settings())
    except CliError as exc:
        say(f"error: {exc}")
        return int(exc.code)
    except WfrayError as exc:
        say(f"error: {exc}")
        return int(exit_code_of(exc))
    except KeyboardInterrupt:
        return 130


def say(line: str) -> None:
    """A line on standard error (a job's log shows both streams): status, never results."""
    print(mask_text(line), file=sys.stderr, flush=True)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.timeout <= 0 or args.poll <= 0:
        raise CliError("--timeout and --poll: expected a positive number of seconds", Exit.USAGE)
    flow = find_workflow(args.target)
    payload = parse_json_argument(args.input, "--input") if args.input is not None else None
    options = SubmitOptions(priority=args.priority, queue=args.queue)
    # refused here, before Ray is even reached: an input the workflow does not accept
    one_request(flow, payload, options, args.idempotency_key, None, None)
    client = connect(settings, args.address)
    handle = client.submit(
        flow,
        payload,
        idempotency_key=args.idempotency_key,
        priority=args.priority,
        queue=args.queue,
    )
    if not args.wait:
        print(handle.run_id, flush=True)
        say(f"submitted run {handle.run_id} of {flow.name}")
        return Exit.OK
    say(f"submitted run {handle.run_id} of {flow.name}; waiting up to {args.timeout:g}s")
    view = follow(client, handle.run_id, args.timeout, args.poll)
    status = view.status if view is not None else RunStatus.QUEUED
    if not status.finished:
        say(f"run {handle.run_id} is still {status.value} after {args.timeout:g}s")
        return Exit.RUN_FAILED
    if status is not RunStatus.COMPLETED:
        say(f"run {handle.run_id} of {flow.name}: {status.value}: {view.error if view else ''}")
        return Exit.RUN_FAILED
    result = client.decode(view, flow)
    print(json.dumps(TypeAdapter(Any).dump_python(result, mode="json")), flush=True)
    say(f"run {handle.run_id} of {flow.name}: {status.value}")
    return Exit.OK


def find_workflow(target: str) -> Workflow:
    """The workflow at `module:attribute`: a Workflow, or a @wfray.task function's."""
    match = _TARGET.match(target)
    if match is None:
        raise CliError(
            f"expected MODULE:WORKFLOW (a dotted module path, a colon, an attribute name), "
            f"got {target!r}",
            Exit.USAGE,
        )
    module = import_module_of_workflows(match["module"])
    name = match["name"]
    if not hasattr(module, name):
        raise CliError(f"module {match['module']!r} has no attribute {name!r}", Exit.NOT_FOUND)
    value = getattr(module, name)
    flow = value if isinstance(value, Workflow) else getattr(value, "__wfray_workflow__", None)
    if not isinstance(flow, Workflow):
        kind = "class" if isinstance(value, type) else type(value).__name__
        raise CliError(
            f"{target} is a {kind}, not a workflow: expected a "
            "wfray.Workflow or a @wfray.task function",
            Exit.USAGE,
        )
    return flow


def connect(settings: Settings, address: str | None) -> Any:
    """Start or find wfray on the cluster named by `--address`, RAY_ADDRESS (set by Ray for
    every job) or `wfray start`'s record: never one found by scanning the host's processes,
    which on a shared machine may be anyone's."""
    where = address or os.environ.get("RAY_ADDRESS", "")
    instance = None if where else read_instance(settings)
    if instance is not None and instance.address:
        if instance.local:
            use_ray_auth(instance.ray_auth_token_path)  # as `wfray start` started it
        where = instance.address
    if not where:
        raise CliError(
            "no Ray cluster named: pass --address, or set RAY_ADDRESS (`ray job submit` sets "
            "it for its jobs), or start one with `wfray start`",
            Exit.UNREACHABLE,
        )
    import ray

    import wfray

    if not ray.is_initialized():
        init_ray(settings, where)
    return wfray.connect(settings)


def follow(client: Any, run_id: str, timeout_s: float, poll_s: float) -> Any:
    """The run's view once it ended or `timeout_s` passed; a progress line on standard
    error whenever the count of finished tasks changed."""
    deadline = time.monotonic() + timeout_s
    last: tuple[int, int] | None = None
    while True:
        left = deadline - time.monotonic()
        views = client.wait([run_id], max(0.0, min(poll_s, left)))
        view = views[0] if views else None
        if view is not None and view.status.finished:
            return view
        tasks = client.detail(run_id).tasks
        progress = (sum(1 for task in tasks if task.status.finished), len(tasks))
        if progress != last:
            say(f"progress: {progress[0]}/{progress[1]} tasks done")
            last = progress
        if time.monotonic() >= deadline:
            return view
