"""The commands that act: they go through the coordinator (a Client), never the store."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from wfray.application.messages import CommandResult
from wfray.domain.errors import SchemaOutdatedError, StoreUnavailableError, UnknownWorkflowError
from wfray.domain.status import RunStatus
from wfray.entrypoints.cli_ids import resolve_run_ids
from wfray.entrypoints.cli_instance import connect_client, read_instance
from wfray.entrypoints.cli_read import safe, styled
from wfray.entrypoints.cli_support import (
    CliContext,
    CliError,
    Exit,
    load_workflows,
    parse_json_argument,
    parse_time,
    plain,
    print_json,
)


def submit(ctx: CliContext, args: argparse.Namespace) -> int:
    payload = parse_json_argument(args.input, "--input") if args.input is not None else None
    instance = read_instance(ctx.settings)
    # the workflow's own declaration validates the input here, before anything is sent
    modules = [*ctx.settings.modules, *(instance.modules if instance else []), *args.module]
    load_workflows(["wfray.integrations", *modules])  # the built-in tasks, by name too
    client = connect_client(ctx.settings)
    try:
        handle = client.submit(
            args.workflow,
            payload,
            idempotency_key=args.idempotency_key,
            priority=args.priority,
            queue=args.queue,
        )
    except UnknownWorkflowError as exc:
        raise CliError(
            f"{exc} (pass --module, or `wfray start --module` with it)", Exit.NOT_FOUND
        ) from None
    if not args.wait:
        if args.json:
            print_json({"run_id": handle.run_id})
        else:
            ctx.console.print(handle.run_id, highlight=False)
        return Exit.OK
    views = client.wait([handle.run_id], args.timeout)
    view = views[0] if views else None
    status = view.status if view else RunStatus.QUEUED
    result = client.decode(view, handle.flow) if view and status is RunStatus.COMPLETED else None
    error = view.error if view else None
    if args.json:
        print_json(
            {
                "run_id": handle.run_id,
                "status": status.value,
                "result": plain(result),
                "error": error,
            }
        )
    else:
        # the result alone on stdout, as JSON, for `result=$(wfray submit ... --wait)`; what
        # happened goes to stderr, for the person at the terminal
        status_line = f"{handle.run_id}: {styled(status.value)}"
        Console(stderr=True).print(status_line + (f" {safe(error)}" if error else ""))
        if status is RunStatus.COMPLETED:
            print_json(plain(result))
    if not status.finished:
        raise CliError(
            f"run {handle.run_id} is still {status.value} after {args.timeout}s", Exit.RUN_FAILED
        )
    return Exit.OK if status is RunStatus.COMPLETED else Exit.RUN_FAILED


def _report(ctx: CliContext, results: list[CommandResult], as_json: bool) -> int:
    if as_json:
        print_json(results)
    else:
        for result in results:
            mark = "ok" if result.applied else "--"
            ctx.console.print(
                f"{mark} {safe(result.run_id)}: {styled(result.status)} {safe(result.message)}",
                highlight=False,
            )
    if any(result.status == "unknown" for result in results):
        return Exit.NOT_FOUND
    return Exit.OK


def _resolved(ctx: CliContext, typed: list[str]) -> list[str]:
    """Run ids from what was typed (prefixes too); when this machine cannot read the store,
    the ids as typed: the coordinator knows them whole."""
    try:
        return resolve_run_ids(ctx.queries.store, typed)
    except (StoreUnavailableError, SchemaOutdatedError):
        return typed


def cancel(ctx: CliContext, args: argparse.Namespace) -> int:
    run_ids = _resolved(ctx, args.runs)
    client = connect_client(ctx.settings)
    results = [client.cancel(run_id, args.reason, not args.no_compensate) for run_id in run_ids]
    return _report(ctx, results, args.json)


def retry(ctx: CliContext, args: argparse.Namespace) -> int:
    if bool(args.runs) == bool(args.failed):
        raise CliError(
            "retry: name the runs to resume, or --failed [--workflow W] [--since T] for all "
            "failed runs (not both)",
            Exit.USAGE,
        )
    now = datetime.now(UTC)
    since, until = parse_time(args.since, "--since", now), parse_time(args.until, "--until", now)
    run_ids = _resolved(ctx, args.runs)
    client = connect_client(ctx.settings)
    if args.compensation:
        results = client.retry_compensation(run_ids)
    elif args.failed:
        results = client.resume_failed(args.workflow, since, until, args.limit)
    else:
        results = client.resume(run_ids)
    return _report(ctx, results, args.json)


def publish(ctx: CliContext, args: argparse.Namespace) -> int:
    payload = parse_json_argument(args.payload, "--payload")
    instance = read_instance(ctx.settings)
    load_workflows([*ctx.settings.modules, *(instance.modules if instance else [])])
    client = connect_client(ctx.settings)
    publish_event = getattr(client, "publish", None)
    if publish_event is None:
        raise CliError(
            "this wfray cannot publish events yet (its Client has no publish method)",
            Exit.RUN_FAILED,
        )
    answer: Any = publish_event(args.event, payload, id=args.id)
    if args.json:
        print_json({"event": args.event, "id": args.id, "result": answer})
    else:
        ctx.console.print(f"published {args.event} ({args.id}): {plain(answer)}")
    return Exit.OK


def queues(ctx: CliContext, args: argparse.Namespace) -> int:
    """Depth and running count from the coordinator, limits from the settings."""
    stats = connect_client(ctx.settings).stats()
    depth: dict[str, Any] = stats.get("queues", {})
    configs = {queue.name: queue for queue in ctx.settings.queues}
    rows = []
    for name in sorted({*depth, *configs}):
        held, running = depth.get(name, (0, 0))
        config = configs.get(name)
        rows.append(
            {
                "name": name,
                "waiting": held,
                "running": running,
                "concurrency": config.concurrency if config else None,
                "rate_per_s": config.rate_per_s if config else None,
                "per_key_limit": config.per_key_limit if config else None,
                "precedence": config.precedence if config else 0,
            }
        )
    if args.json:
        print_json({"queues": rows, "queued_total": stats.get("queued")})
        return Exit.OK
    table = Table("queue", "waiting", "running", "concurrency", "rate/s", "per key", "precedence")
    for row in rows:
        table.add_row(*("" if value is None else str(value) for value in row.values()))
    ctx.console.print(table)
    ctx.console.print(f"queued in total (store): {stats.get('queued')}")
    return Exit.OK
