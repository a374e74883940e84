"""The read commands: they go straight to the store (no Ray needed, so they are fast)."""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from wfray.application.queries import Queries
from wfray.domain.masking import mask_text
from wfray.domain.reads import LogQuery, RunFilter, run_status
from wfray.domain.records import WHOLE_STEP, LogRecord, RunRecord, TaskRecord
from wfray.domain.status import RunStatus
from wfray.entrypoints.cli_ids import resolve_run_id, short_ids
from wfray.entrypoints.cli_support import (
    CliContext,
    CliError,
    Exit,
    cli_origin,
    parse_duration,
    parse_time,
    print_json,
    short_duration,
)
from wfray.entrypoints.cli_text import Column as TableColumn
from wfray.entrypoints.cli_text import fit_table, printable

POLL_S = 0.5
ERROR_CHARS = 300  # of an error, at most, on a run's line
STATUS_STYLE = {
    "completed": "green",
    "succeeded": "green",
    "running": "cyan",
    "queued": "blue",
    "pending": "dim",
    "retrying": "yellow",
    "failed": "red",
    "timed_out": "red",
    "lost": "red",
    "cancelled": "magenta",
    "compensating": "yellow",
    "compensated": "magenta",
    "compensation_failed": "bold red",
    "skipped": "dim",
}


def safe(text: str, keep_lines: bool = False) -> str:
    """Stored text for a rich markup string: control characters shown as escapes, markup
    taken literally."""
    return escape(printable(text, keep_lines))


def styled(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"


def run_or_exit(queries: Queries, typed: str) -> RunRecord:
    """The run that `typed` names: its id, or the start of one (cli_ids.py)."""
    run_id = resolve_run_id(queries.store, typed)
    run = queries.store.find_runs([run_id]).get(run_id)
    if run is None:  # deleted (retention) between the two reads
        raise CliError(f"no run with id {run_id!r}", Exit.NOT_FOUND)
    return run


def runs(ctx: CliContext, args: argparse.Namespace) -> int:
    queries = ctx.queries
    now = datetime.now(UTC)
    found = queries.list_runs(
        RunFilter(
            args.workflow,
            run_status(args.status),
            args.limit,
            parse_time(args.since, "--since", now),
            parse_time(args.until, "--until", now),
        )
    )
    return print_runs(ctx, found, args.json)


# The columns of `wfray runs`, left to right; in narrow terminals those of low `keep` go first.
RUN_COLUMNS = (
    TableColumn("run"),
    TableColumn("workflow", max_width=24, keep=3),
    TableColumn("status", max_width=19, keep=4),
    TableColumn("created", max_width=19, keep=2),
    TableColumn("took", drop_below=72, max_width=9, keep=1),
    TableColumn("trigger", drop_below=110, max_width=12),
    TableColumn("error", max_width=ERROR_CHARS),
)


def print_runs(ctx: CliContext, found: list[RunRecord], as_json: bool) -> int:
    """One line per run, laid out for the terminal's width; ids shortened, as git does."""
    if as_json:
        print_json(found)
        return Exit.OK
    width = ctx.console.width
    shown = short_ids(ctx.queries.store, [run.run_id for run in found])
    when = "%Y-%m-%d %H:%M:%S" if width >= 120 else "%m-%d %H:%M:%S"
    rows = [
        [
            Text(shown[run.run_id]),
            Text(printable(run.workflow)),
            Text(run.status.value, style=STATUS_STYLE.get(run.status.value, "")),
            Text(f"{run.created_at:{when}}"),
            Text(short_duration(run.started_at or run.created_at, run.finished_at)),
            Text(printable(run.trigger)),
            Text(printable(mask_text(run.error or "")[:ERROR_CHARS]), style="red"),
        ]
        for run in found
    ]
    ctx.console.print(fit_table(RUN_COLUMNS, rows, width))
    return Exit.OK


def dead_letter(ctx: CliContext, args: argparse.Namespace) -> int:
    dead = RunFilter(args.workflow, RunStatus.COMPENSATION_FAILED, args.limit)
    found = ctx.queries.list_runs(dead)
    return print_runs(ctx, found, args.json)


def logs(ctx: CliContext, args: argparse.Namespace) -> int:
    queries, console = ctx.queries, ctx.console
    run = run_or_exit(queries, args.run_id)
    last: int | None = None  # the id of the last line shown: each read asks for newer ones
    while True:
        finished = run.status.finished
        lines = queries.logs(LogQuery(run.run_id, args.step, last))
        for line in lines:
            _print_log(line, args.json, console)
        last = lines[-1].id if lines else last
        if not args.follow or finished:
            return Exit.OK
        time.sleep(POLL_S)
        run = run_or_exit(queries, run.run_id)


def _print_log(line: LogRecord, as_json: bool, console: Console) -> None:
    if as_json:
        print_json(line)
        return
    item = f"[{line.map_index}]" if line.map_index >= 0 else ""
    console.print(
        printable(
            f"{line.ts:%H:%M:%S.%f} {line.step}{item}#{line.attempt} {line.level} "
            f"{mask_text(line.message)}",
            keep_lines=True,
        ),
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


def progress_of(tasks: list[TaskRecord]) -> tuple[int, int]:
    """(done, total) units of work: one per step, or one per item of a fanned-out step."""
    done = total = 0
    items: dict[str, list[TaskRecord]] = {}
    for task in tasks:
        if task.map_index >= 0:
            items.setdefault(task.step, []).append(task)
    for task in tasks:
        if task.map_index != WHOLE_STEP:
            continue
        if task.map_count:
            total += task.map_count
            done += sum(1 for item in items.get(task.step, []) if item.status.finished)
        else:
            total += 1
            done += int(task.status.finished)
    return done, total


def watch(ctx: CliContext, args: argparse.Namespace) -> int:
    queries, console = ctx.queries, ctx.console
    """A live progress bar until the run ends; non-zero when it did not complete."""
    run = run_or_exit(queries, args.run_id)
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=console, disable=args.json) as bar:
        task_id = bar.add_task(f"{safe(run.run_id)} {run.status.value}", total=None)
        while True:
            done, total = progress_of(queries.store.get_tasks([run.run_id]))
            bar.update(task_id, completed=done, total=total or None)
            bar.update(task_id, description=f"{safe(run.run_id)} {run.status.value}")
            if run.status.finished:
                break
            if deadline is not None and time.monotonic() > deadline:
                raise CliError(
                    f"run {run.run_id} is still {run.status.value} after {args.timeout}s",
                    Exit.RUN_FAILED,
                )
            time.sleep(POLL_S)
            run = run_or_exit(queries, run.run_id)
    if args.json:
        print_json({"run_id": run.run_id, "status": run.status.value, "error": run.error})
    else:
        console.print(f"{safe(run.run_id)}: {styled(run.status.value)} {safe(run.error or '')}")
    return Exit.OK if run.status is RunStatus.COMPLETED else Exit.RUN_FAILED


def workflows(ctx: CliContext, args: argparse.Namespace) -> int:
    queries, console = ctx.queries, ctx.console
    schemas = queries.workflows()
    if args.json:
        print_json(schemas)
        return Exit.OK
    table = Table("workflow", "version", "steps", "input", "events")
    for schema in schemas:
        steps = " -> ".join(step.name for step in schema.steps)
        events = ", ".join(getattr(schema, "events", ()) or ())
        table.add_row(schema.name, schema.version[:12], steps, schema.input_type or "", events)
    console.print(table)
    return Exit.OK


def export(ctx: CliContext, args: argparse.Namespace) -> int:
    console = ctx.console
    try:
        from wfray.analytics.export import export_parquet
    except ImportError as exc:
        raise CliError(f"export is not available in this wfray: {exc}", Exit.RUN_FAILED) from None
    counts = export_parquet(ctx.settings.database_url, Path(args.parquet))
    if args.json:
        print_json(counts)
    else:
        for table, rows in counts.items():
            console.print(f"{table}: {rows} rows -> {args.parquet}")
    return Exit.OK


def retention(ctx: CliContext, args: argparse.Namespace) -> int:
    console = ctx.console
    try:
        from wfray.analytics.retention import apply_retention
    except ImportError as exc:
        raise CliError(
            f"retention is not available in this wfray: {exc}", Exit.RUN_FAILED
        ) from None
    older_than = parse_duration(args.older_than, "--older-than")
    archive = Path(args.archive) if args.archive else None
    report = apply_retention(
        ctx.settings.database_url,
        older_than,
        archive,
        blob_root=ctx.settings.blob_root,
        origin=cli_origin(),
    )
    if args.json:
        print_json(report)
    else:
        console.print(report)
    return Exit.OK
