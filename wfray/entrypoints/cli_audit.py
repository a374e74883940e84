"""`wfray audit` (the audit trail, read from the store) and `wfray erase` (a data subject's
runs, removed from the store, the blobs and the Parquet archives)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

from wfray.bootstrap import build_audit_log
from wfray.domain.audit import ACTIONS, AuditQuery
from wfray.domain.records import as_row
from wfray.entrypoints.cli_support import (
    CliContext,
    CliError,
    Exit,
    cli_origin,
    parse_time,
    print_json,
)

if TYPE_CHECKING:  # analytics pulls in pyarrow: imported when erasing, not on every command
    from wfray.analytics.erasure import ErasureReport

CANCEL_WAIT_S = 300.0


def add_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    audit = command("audit", read_audit, "the audit trail: operator actions, newest first")
    audit.add_argument("--actor", help="a token's name, an OS user, 'client'")
    audit.add_argument("--action", choices=ACTIONS)
    audit.add_argument("--target", help="a run id or schedule name the action was about")
    audit.add_argument("--since", help="recorded after: ISO time, or a duration back (2h, 7d)")
    audit.add_argument("--until", help="recorded before: ISO time, or a duration back")
    audit.add_argument("--before-id", type=int, help="older than this entry (paging)")
    audit.add_argument("--limit", type=int, default=50)

    erase = command("erase", erase_runs, "erase a data subject's runs everywhere")
    erase.add_argument("runs", nargs="*", metavar="RUN", help="run ids to erase")
    erase.add_argument(
        "--tag", action="append", default=[], metavar="KEY=VALUE", help="top-level input field"
    )
    erase.add_argument(
        "--input-field",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="input field by dotted path (customer.id=42); several must all match",
    )
    erase.add_argument(
        "--archive",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder of Parquet archives or exports to clean too (repeatable)",
    )
    erase.add_argument("--cancel", action="store_true", help="cancel active runs first")
    erase.add_argument("--dry-run", action="store_true", help="count, erase nothing")


def read_audit(ctx: CliContext, args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= 10_000:
        raise CliError("--limit must be between 1 and 10000", Exit.USAGE)
    now = datetime.now(UTC)
    query = AuditQuery(
        actor=args.actor,
        action=args.action,
        target=args.target,
        since=parse_time(args.since, "--since", now),
        until=parse_time(args.until, "--until", now),
        before_id=args.before_id,
        limit=args.limit,
    )
    audit = build_audit_log(ctx.settings)
    try:
        entries = audit.read(query)
    finally:
        close = getattr(audit, "close", None)
        if close is not None:
            close()
    if args.json:
        print_json(entries)
        return Exit.OK
    table = Table("id", "at", "who", "from", "action", "targets", "outcome")
    for e in entries:
        where = f"{e.via} {e.address or ''}".strip()
        targets = ", ".join(e.targets)
        # escaped: an entry's text is what a caller sent, never markup to render
        cells = (str(e.id), e.at.strftime("%Y-%m-%d %H:%M:%S"), e.actor, where, e.action)
        table.add_row(*(escape(c) for c in (*cells, targets, e.outcome)))
    ctx.console.print(table)
    if len(entries) == args.limit and entries[-1].id is not None:
        ctx.console.print(f"older entries: --before-id {entries[-1].id}", highlight=False)
    return Exit.OK


def _pairs(values: list[str], option: str) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key.strip():
            raise CliError(f"{option} expects KEY=VALUE, got {value!r}", Exit.USAGE)
        pairs.append((key.strip(), text))
    return pairs


def erase_runs(ctx: CliContext, args: argparse.Namespace) -> int:
    from wfray.analytics.erasure import Selector, erase

    fields = [*_pairs(args.tag, "--tag"), *_pairs(args.input_field, "--input-field")]
    for key, _ in _pairs(args.tag, "--tag"):
        if "." in key:
            raise CliError(
                f"--tag {key!r}: a tag is a top-level field (use --input-field)", Exit.USAGE
            )
    try:
        selector = Selector(tuple(args.runs), tuple(fields))
    except ValueError as exc:
        raise CliError(f"erase: {exc} (name runs, --tag or --input-field)", Exit.USAGE) from None
    archives = [Path(folder) for folder in args.archive]
    for folder in archives:
        if not folder.is_dir():
            raise CliError(f"--archive {str(folder)!r} is not a folder", Exit.USAGE)
    report = erase(
        ctx.settings.database_url,
        selector,
        blob_root=ctx.settings.blob_root,
        archive_dirs=archives,
        cancel=_canceller(ctx) if args.cancel else None,
        origin=cli_origin(),
        dry_run=args.dry_run,
    )
    if args.json:
        print_json({"summary": report.summary(), **_counts(report)})
    else:
        ctx.console.print(report.summary(), highlight=False, markup=False)
    return Exit.OK if report.matched else Exit.NOT_FOUND


def _counts(report: ErasureReport) -> dict[str, object]:
    """The report's fields but its selector (which the command line gave)."""
    return {name: value for name, value in as_row(report).items() if name != "selector"}


def _canceller(ctx: CliContext) -> Callable[[list[str]], None]:
    def cancel(run_ids: list[str]) -> None:
        from wfray.entrypoints.cli_instance import connect_client

        client = connect_client(ctx.settings)
        for run_id in run_ids:
            client.cancel(run_id, "cancelled to erase its data")
        views = client.wait(run_ids, CANCEL_WAIT_S)
        if len(views) < len(run_ids) or not all(v.status.finished for v in views):
            raise CliError(
                f"the cancelled runs did not finish within {CANCEL_WAIT_S:.0f}s: nothing erased",
                Exit.RUN_FAILED,
            )

    return cancel
