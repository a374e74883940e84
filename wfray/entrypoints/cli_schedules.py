"""`wfray schedules` and `wfray schedule ...`: cron schedules through the coordinator."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from rich.table import Table

from wfray.application.views import ScheduleInfo
from wfray.client.client import Client
from wfray.domain.errors import UnknownWorkflowError
from wfray.entrypoints.cli_instance import connect_client, read_instance
from wfray.entrypoints.cli_support import (
    CliContext,
    CliError,
    Exit,
    load_workflows,
    parse_json_argument,
    print_json,
)


def as_dict(info: ScheduleInfo) -> dict[str, object]:
    spec = info.spec
    return {
        "name": spec.name,
        "workflow": spec.workflow,
        "cron": spec.cron,
        "tz": spec.tz,
        "misfire": spec.misfire,
        "overlap": spec.overlap,
        "paused": spec.paused,
        "last_fired": info.last_fired.isoformat(),
        "last_run_id": info.last_run_id,
        "next_fire_times": [t.isoformat() for t in info.next_fire_times],
        "last_error": info.last_error,
    }


def schedules(ctx: CliContext, args: argparse.Namespace) -> int:
    """Every schedule, with its next fire times."""
    found = [as_dict(info) for info in connect_client(ctx.settings).list_schedules(args.next)]
    if args.json:
        print_json(found)
        return Exit.OK
    table = Table("schedule", "workflow", "cron", "tz", "paused", "next", "last error")
    for row in found:
        upcoming = row["next_fire_times"]
        assert isinstance(upcoming, list)
        table.add_row(
            str(row["name"]),
            str(row["workflow"]),
            str(row["cron"]),
            str(row["tz"]),
            "yes" if row["paused"] else "",
            "\n".join(upcoming),
            str(row["last_error"] or ""),
        )
    ctx.console.print(table)
    return Exit.OK


# The flags of `schedule-create` that pass through as wfray.schedule's options of these names.
SCHEDULE_OPTIONS = (
    "name",
    "cron",
    "tz",
    "misfire",
    "catchup_window",
    "overlap",
    "queue",
    "priority",
    "paused",
)


def create(ctx: CliContext, args: argparse.Namespace) -> int:
    """Create a schedule, or replace its definition (it keeps how far it fired)."""
    payload = parse_json_argument(args.input, "--input") if args.input is not None else None
    instance = read_instance(ctx.settings)
    # the workflow's declaration validates the input here, before anything is sent
    load_workflows([*ctx.settings.modules, *(instance.modules if instance else []), *args.module])
    client = connect_client(ctx.settings)
    try:
        options = {option: getattr(args, option) for option in SCHEDULE_OPTIONS}
        client.create_schedule(args.workflow, input=payload, **options)
    except UnknownWorkflowError as exc:
        raise CliError(f"{exc} (pass --module)", Exit.NOT_FOUND) from None
    return _show_one(ctx, args, client, args.name)


def _act(verb: str) -> Callable[[CliContext, argparse.Namespace], int]:
    def act(ctx: CliContext, args: argparse.Namespace) -> int:
        client = connect_client(ctx.settings)
        if verb == "trigger":
            handle = client.trigger_schedule(args.name)
            if args.json:
                print_json({"schedule": args.name, "run_id": handle.run_id})
            else:
                ctx.console.print(handle.run_id, highlight=False)
            return Exit.OK
        getattr(client, f"{verb}_schedule")(args.name)
        if verb == "delete":
            if args.json:
                print_json({"schedule": args.name, "deleted": True})
            else:
                ctx.console.print(f"deleted schedule {args.name}")
            return Exit.OK
        return _show_one(ctx, args, client, args.name)

    return act


def _show_one(ctx: CliContext, args: argparse.Namespace, client: Client, name: str) -> int:
    infos = {i.name: i for i in client.list_schedules(3)}
    row = as_dict(infos[name])
    if args.json:
        print_json(row)
    else:
        state = "paused" if row["paused"] else f"next: {', '.join(row['next_fire_times'])}"  # type: ignore[arg-type]
        ctx.console.print(f"schedule {name} ({row['cron']} {row['tz']}): {state}")
    return Exit.OK


def add_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    listing = command("schedules", schedules, "cron schedules and their next fire times")
    listing.add_argument("--next", type=int, default=3, help="fire times to show")

    made = command("schedule-create", create, "create or replace a cron schedule")
    made.add_argument("name")
    made.add_argument("--workflow", required=True)
    made.add_argument("--cron", required=True, help="5 fields, or 6 with seconds last")
    made.add_argument("--tz", default="UTC", help="IANA time zone, e.g. Europe/Berlin")
    made.add_argument("--input", help="JSON input, or @file")
    made.add_argument("--misfire", default="skip", choices=["skip", "latest", "all_within"])
    made.add_argument("--catchup-window", type=float, help="seconds, for --misfire all_within")
    made.add_argument(
        "--overlap", default="skip", choices=["skip", "allow", "buffer_one", "cancel_previous"]
    )
    made.add_argument("--queue", default="default")
    made.add_argument("--priority", type=int, default=0)
    made.add_argument("--paused", action="store_true")
    made.add_argument("--module", action="append", default=[], help="module declaring it")

    for verb, text in (
        ("pause", "stop a schedule firing until it is resumed"),
        ("resume", "resume a paused schedule (missed ticks do not fire)"),
        ("trigger", "start a run of a schedule now"),
        ("delete", "delete a schedule (its runs stay)"),
    ):
        cmd = command(f"schedule-{verb}", _act(verb), text)
        cmd.add_argument("name")
