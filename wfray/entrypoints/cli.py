"""The `wfray` command: operate the store and read the history from a terminal.

    wfray db upgrade                 apply the schema migrations (under a lock)
    wfray runs [--workflow W] [--status S] [--limit N] [--json]
    wfray show RUN_ID [--json]       a run with its tasks and attempts
    wfray logs RUN_ID [--step S]     its log lines

Reads go straight to the store named by WFRAY_DATABASE_URL (no Ray needed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from wfray.application.queries import Queries
from wfray.bootstrap import build_store
from wfray.config import load_settings
from wfray.domain.errors import WfrayError
from wfray.domain.records import AttemptRecord


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console()
    try:
        settings = load_settings()
        store = build_store(settings)
    except WfrayError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    try:
        if args.command == "db":
            console.print(f"schema is current: {settings.database_url}")
            return 0
        queries = Queries(store)
        return int(COMMANDS[args.command](queries, args, console))
    except WfrayError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 1
    finally:
        store.close()


def _runs(queries: Queries, args: argparse.Namespace, console: Console) -> int:
    runs = queries.list_runs(args.workflow, args.status, args.limit)
    if args.json:
        print(json.dumps([_plain(r) for r in runs], default=str))
        return 0
    table = Table("run", "workflow", "status", "created", "finished", "error")
    for run in runs:
        table.add_row(
            run.run_id,
            run.workflow,
            run.status.value,
            f"{run.created_at:%Y-%m-%d %H:%M:%S}",
            f"{run.finished_at:%H:%M:%S}" if run.finished_at else "",
            (run.error or "")[:60],
        )
    console.print(table)
    return 0


def _show(queries: Queries, args: argparse.Namespace, console: Console) -> int:
    detail = queries.run_detail(args.run_id)
    if args.json:
        print(json.dumps(_plain(detail), default=str))
        return 0
    run = detail.run
    console.print(f"[bold]{run.run_id}[/bold] {run.workflow}@{run.version}: {run.status.value}")
    if run.error:
        console.print(f"  [red]{run.error}[/red]")
    table = Table("step", "status", "attempt", "outcome", "took", "worker", "error")
    for task in detail.tasks:
        name = task.step if task.map_index < 0 else f"{task.step}[{task.map_index}]"
        attempts: list[AttemptRecord | None] = [*detail.attempts_of(task.step, task.map_index)]
        attempts = attempts or [None]
        for attempt in attempts:
            took = ""
            if attempt and attempt.started_at and attempt.finished_at:
                took = f"{(attempt.finished_at - attempt.started_at).total_seconds():.3f}s"
            table.add_row(
                name,
                task.status.value,
                str(attempt.attempt) if attempt else "",
                attempt.status.value if attempt else "",
                took,
                f"{(attempt.node_id or '')[:8]}:{attempt.pid}" if attempt else "",
                (attempt.error_message or "")[:60] if attempt else "",
            )
    console.print(table)
    return 0 if run.status.value == "completed" or not run.status.finished else 3


def _logs(queries: Queries, args: argparse.Namespace, console: Console) -> int:
    for line in queries.logs(args.run_id, args.step):
        item = f"[{line.map_index}]" if line.map_index >= 0 else ""
        console.print(
            f"{line.ts:%H:%M:%S.%f} {line.step}{item}#{line.attempt} {line.level} {line.message}",
            markup=False,
            highlight=False,
        )
    return 0


COMMANDS = {"runs": _runs, "show": _show, "logs": _logs}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wfray", description="durable workflows on Ray")
    sub = parser.add_subparsers(dest="command", required=True)
    db = sub.add_parser("db", help="database schema")
    db.add_argument("action", choices=["upgrade"])
    runs = sub.add_parser("runs", help="list runs, newest first")
    runs.add_argument("--workflow")
    runs.add_argument("--status")
    runs.add_argument("--limit", type=int, default=50)
    runs.add_argument("--json", action="store_true")
    show = sub.add_parser("show", help="one run with its tasks and attempts")
    show.add_argument("run_id")
    show.add_argument("--json", action="store_true")
    logs = sub.add_parser("logs", help="a run's log lines")
    logs.add_argument("run_id")
    logs.add_argument("--step")
    return parser


if __name__ == "__main__":
    sys.exit(main())
