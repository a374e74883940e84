"""The `wfray` command: start and stop wfray, submit and steer runs, read the history.

Read commands (runs, show, logs, watch, dead-letter, workflows, export, audit) go straight
to the store named by WFRAY_DATABASE_URL: no Ray needed, as do retention and erase. Commands
that act (start, stop, submit, cancel, retry, publish, queues) go through the coordinator on
Ray. Every read command takes
`--json` for scripts; the exit codes are listed in `wfray --help`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from rich.console import Console
from rich.markup import escape

from wfray.config import load_settings
from wfray.domain.errors import WfrayError
from wfray.entrypoints import (
    cli_act,
    cli_audit,
    cli_backup,
    cli_instance,
    cli_read,
    cli_schedules,
    cli_show,
    cli_upgrade,
)
from wfray.entrypoints.cli_support import CliContext, CliError, Exit, exit_code_of
from wfray.entrypoints.cli_text import printable, terminal_width

Command = Callable[[CliContext, argparse.Namespace], int]

EPILOG = """\
exit codes:
  0  ok
  1  the run failed or was cancelled (submit --wait, watch), or the command failed
     (upgrade: attempts still running at --timeout; run it again to go on)
  2  usage error: bad arguments, bad JSON input, an input the workflow refuses
  3  not found: no such run or workflow
  4  wfray not reachable: not started, Ray or the database unreachable, or its actors
     run another wfray version (upgrade: also Ray failing midway; run it again)

environment: WFRAY_DATA_DIR (where `start` records what it started), WFRAY_DATABASE_URL,
WFRAY_NAMESPACE, WFRAY_MODULES, RAY_ADDRESS (an existing cluster), and the other WFRAY_*.
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    errors = Console(stderr=True, soft_wrap=True)
    context: CliContext | None = None
    try:
        context = CliContext(load_settings(), Console(width=terminal_width()))
        command: Command = args.handler
        return int(command(context, args))
    except CliError as exc:
        errors.print(f"[red]error:[/red] {_shown(exc)}", highlight=False)
        return int(exc.code)
    except WfrayError as exc:
        errors.print(f"[red]error:[/red] {_shown(exc)}", highlight=False)
        return int(exit_code_of(exc))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `wfray runs --json | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return int(Exit.OK)
    finally:
        if context is not None:
            context.close()


def _shown(error: Exception) -> str:
    """An error's message as text: what it quotes (a run id, a path) is never markup."""
    return escape(printable(str(error), keep_lines=True))


def db(context: CliContext, args: argparse.Namespace) -> int:
    from wfray.adapters.sqlalchemy.engine import mask_url

    context.queries  # opening the store applies the migrations, under a lock  # noqa: B018
    context.console.print(f"schema is current: {mask_url(context.settings.database_url)}")
    return Exit.OK


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="wfray",
        description="durable workflows on Ray",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, handler: Command, help: str, json: bool = True
    ) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help, description=help)
        cmd.set_defaults(handler=handler)
        if json:
            cmd.add_argument("--json", action="store_true", help="machine-readable output")
        return cmd

    _instance_commands(command)
    _act_commands(command)
    _read_commands(command)
    _backup_commands(command)
    cli_schedules.add_commands(command)
    cli_audit.add_commands(command)
    dbc = command("db", db, "database schema", json=False)
    dbc.add_argument("action", choices=["upgrade"])
    upgrade = command(
        "upgrade",
        cli_upgrade.upgrade,
        "migrate the store, then drain wfray's actors and start them on this wfray",
    )
    upgrade.add_argument(
        "--timeout",
        type=float,
        default=cli_upgrade.DRAIN_TIMEOUT_S,
        help="seconds to wait for the running attempts to finish (default %(default)s)",
    )
    upgrade.add_argument(
        "--restart",
        action="store_true",
        help="replace the actors even if they report this wfray's version (another build)",
    )
    return root


def _instance_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    start = command("start", cli_instance.start, "start wfray (and a local Ray)", json=False)
    where = start.add_mutually_exclusive_group()
    where.add_argument("--address", help="an existing Ray cluster (default: RAY_ADDRESS)")
    where.add_argument("--local", action="store_true", help="a new local Ray instance")
    start.add_argument(
        "--module", action="append", default=[], help="workflow module to import (repeatable)"
    )
    start.add_argument("--api", action="store_true", help="also start the HTTP API")
    start.add_argument("--api-host", help="the HTTP API's address (default: WFRAY_API_HOST)")
    start.add_argument("--api-port", type=int, help="the HTTP API's port")
    start.add_argument("--num-cpus", type=int, help="CPUs of the local Ray instance")
    start.add_argument("--object-store-mb", type=int, help="object store of the local instance")
    start.add_argument(
        "--no-ray-auth",
        action="store_true",
        help="turn Ray's token authentication off for the local instance (then any process "
        "on this machine can run code in it); on by default",
    )
    start.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for it")
    command("stop", cli_instance.stop, "stop what `wfray start` started", json=False)


def _act_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    submit = command("submit", cli_act.submit, "start a run of a workflow")
    submit.add_argument("workflow")
    submit.add_argument("--input", help="JSON input, or @file (@- for standard input)")
    submit.add_argument("--idempotency-key")
    submit.add_argument("--priority", type=int, default=0)
    submit.add_argument("--queue", default="default")
    submit.add_argument("--module", action="append", default=[], help="module declaring it")
    submit.add_argument("--wait", action="store_true", help="wait for the run to end")
    submit.add_argument("--timeout", type=float, default=600.0, help="seconds to --wait")

    cancel = command("cancel", cli_act.cancel, "cancel runs, then compensate them")
    cancel.add_argument("runs", nargs="+", metavar="RUN")
    cancel.add_argument("--no-compensate", action="store_true", help="skip compensation")
    cancel.add_argument("--reason", default="cancelled from the CLI")

    retry = command("retry", cli_act.retry, "resume failed or cancelled runs")
    retry.add_argument("runs", nargs="*", metavar="RUN")
    retry.add_argument("--failed", action="store_true", help="every failed run (bulk)")
    retry.add_argument("--workflow", help="with --failed: of this workflow")
    retry.add_argument("--since", help="with --failed: created after (ISO time or 2h, 7d)")
    retry.add_argument("--until", help="with --failed: created before")
    retry.add_argument("--limit", type=int, default=1000)
    retry.add_argument(
        "--compensation", action="store_true", help="retry the failed compensations instead"
    )

    publish = command("publish", cli_act.publish, "publish an event")
    publish.add_argument("event")
    publish.add_argument("--payload", default="{}", help="JSON payload, or @file")
    publish.add_argument("--id", required=True, help="event id (deduplicates)")

    command("queues", cli_act.queues, "queues: waiting, running, limits")


def _read_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    runs = command("runs", cli_read.runs, "list runs, newest first")
    runs.add_argument("--workflow")
    runs.add_argument("--status")
    runs.add_argument("--since", help="created after: ISO time, or a duration back (2h, 7d)")
    runs.add_argument("--until", help="created before: ISO time, or a duration back")
    runs.add_argument("--limit", type=int, default=50)

    show = command("show", cli_show.show, "a run as a tree of its steps and attempts")
    show.add_argument("run_id", metavar="RUN")
    show.add_argument(
        "--limit",
        type=int,
        default=cli_show.SHOW_LIMIT,
        help=f"tasks and attempts shown, together (default {cli_show.SHOW_LIMIT})",
    )
    show.add_argument("--all", action="store_true", help="every task and attempt, however many")

    logs = command("logs", cli_read.logs, "a run's log lines")
    logs.add_argument("run_id", metavar="RUN")
    logs.add_argument("--step")
    logs.add_argument("-f", "--follow", action="store_true", help="until the run ends")

    watch = command("watch", cli_read.watch, "a live progress bar until the run ends")
    watch.add_argument("run_id", metavar="RUN")
    watch.add_argument("--timeout", type=float, help="give up after this many seconds")

    dead = command("dead-letter", cli_read.dead_letter, "runs whose compensation failed")
    dead.add_argument("--workflow")
    dead.add_argument("--limit", type=int, default=100)

    command("workflows", cli_read.workflows, "registered workflows and their steps")

    export = command("export", cli_read.export, "export the history as Parquet")
    export.add_argument("--parquet", required=True, metavar="DIR")

    retention = command("retention", cli_read.retention, "delete (or archive) old runs")
    retention.add_argument("--older-than", required=True, help="e.g. 30d")
    retention.add_argument("--archive", metavar="DIR", help="archive as Parquet first")


def _backup_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    backup = command("backup", cli_backup.backup, "copy the store and the blobs into DIR")
    backup.add_argument("folder", metavar="DIR", help="a new or empty folder")
    restore = command("restore", cli_backup.restore, "bring a backup back into an empty store")
    restore.add_argument("folder", metavar="DIR", help="a folder `wfray backup` wrote")
    restore.add_argument(
        "--force", action="store_true", help="replace a store that holds runs (they are lost)"
    )


if __name__ == "__main__":
    sys.exit(main())
