"""The showcase demo: invoices from a (local) Ninox database, as PDFs and e-mails.

    make demo            (or: python -m jobs.demo [--out FOLDER])

It starts a local Ray instance, wfray with a SQLite store, the local Ninox server with its
seeded orders and a local SMTP server that saves every message as an .eml file. A few
transient Ninox faults (429 with Retry-After, 500, 503) are injected so retries show. It
runs the daily invoice workflow, then the weekly e-mail workflow, shows their progress,
copies the PDFs out of Ninox and prints a summary and the folder to open. Everything it
started is stopped before it exits.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import wfray
from jobs.invoices.daily import INVOICE_QUEUE, DailyInput, DailySummary, daily_invoices
from jobs.invoices.flows import CUSTOMERS, INVOICES, ORDERS
from jobs.invoices.ninox_client import NinoxClient
from jobs.invoices.ninox_faults import FaultPlan, FaultRule
from jobs.invoices.ninox_server import push_fault_plan, running_server
from jobs.invoices.outbox import iso_week
from jobs.invoices.seed import DATABASE_ID, DEFAULT_TODAY, TEAM_ID, build_state
from jobs.invoices.settings import InvoiceSettings, NinoxTarget
from jobs.invoices.smtp_sink import running_sink
from jobs.invoices.weekly import WeeklyInput, WeeklySummary, weekly_email
from wfray.integrations.email import SmtpSettings
from wfray.sdk.secrets import SecretRef

NAMESPACE = "wfray-invoice-demo"
API_KEY = "demo-7f3c2a91-1a26-11ec-9621-0242ac130002"
INVOICE_DATE = DEFAULT_TODAY  # the seeded orders end on this day
FAULTS = FaultPlan(
    seed=1,
    rules=[
        FaultRule(
            method="GET", path="*/tables/Orders/records", status=429, retry_after="1", times=1
        ),
        FaultRule(method="GET", path="*/tables/OrderItems/records", status=500, times=1),
        FaultRule(method="POST", path="*/tables/Invoices/records", status=503, times=2),
        FaultRule(method="POST", path="*/files", status=500, times=1),
    ],
)
console = Console(highlight=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_out = Path("demo-output") / datetime.now().strftime("run-%Y%m%d-%H%M%S")
    parser.add_argument("--out", type=Path, default=default_out, help="where PDFs and e-mails go")
    out = parser.parse_args(argv).out.resolve()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # The Ninox key travels as a secret by name: the runs' inputs hold {"secret":
    # "NINOX_API_KEY"}, and the workers (and this process) read it from a secret folder.
    secret_dir = out / "secrets"
    secret_dir.mkdir(parents=True, exist_ok=True)
    (secret_dir / "NINOX_API_KEY").write_text(API_KEY)
    (secret_dir / "NINOX_API_KEY").chmod(0o600)
    os.environ["WFRAY_SECRET_DIR"] = str(secret_dir)
    import ray

    started = time.monotonic()
    with (
        running_server(state=build_state(seed=7), api_key=API_KEY) as ninox_server,
        running_sink(out / "emails") as sink,
    ):
        console.print(
            f"[bold]local Ninox[/] {ninox_server.base_url}   [bold]SMTP[/] {sink.host}:{sink.port}"
        )
        ray.init(
            address="local",
            num_cpus=2,
            resources={"io": 4},
            include_dashboard=False,
            log_to_driver=False,
            namespace=NAMESPACE,
        )
        try:
            client = wfray.connect(
                wfray.load_settings(
                    data_dir=str(out / "wfray"),
                    namespace=NAMESPACE,
                    queues=[INVOICE_QUEUE],
                    secret_dir=str(secret_dir),
                )
            )
            console.print(f"wfray on local Ray, store {client.settings.database_url}")
            settings = InvoiceSettings(
                ninox=NinoxTarget(
                    base_url=ninox_server.base_url,
                    api_key=SecretRef(secret="NINOX_API_KEY"),
                    team_id=TEAM_ID,
                    database_id=DATABASE_ID,
                ),
                smtp=SmtpSettings(host=sink.host, port=sink.port, timeout_s=10),
            )
            without_address = drop_an_email_address(settings)
            console.print(
                f"customer {without_address} has no e-mail address: its invoice will be "
                "voided by compensation and its orders left for the next run"
            )
            push_fault_plan(ninox_server.admin_url, API_KEY, FAULTS)
            daily = watch(
                client, daily_invoices, DailyInput(settings=settings, invoice_date=INVOICE_DATE)
            )
            weekly = watch(
                client, weekly_email, WeeklyInput(settings=settings, week=iso_week(INVOICE_DATE))
            )
            with NinoxClient(settings.ninox.config()) as ninox:
                pdfs = save_pdfs(ninox, out / "pdfs")
                report(client, ninox, daily, weekly, pdfs, len(sink.messages()), ninox_server.state)
            client.shutdown()
        finally:
            ray.shutdown()
    console.print(
        f"\nopen the PDFs and e-mails in [bold]{out}[/]  ({time.monotonic() - started:.0f} s)"
    )
    return 0


def watch(client: wfray.Client, flow: wfray.Workflow, payload: Any) -> tuple[str, Any]:
    """Submit a run and show its steps and child runs until it finishes."""
    run = client.submit(flow, payload)
    steps = [s.name for s in flow.schema.steps]
    with Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        step_bar = progress.add_task(f"{flow.name}: steps", total=len(steps), note="")
        child_bar = progress.add_task("  customers", total=None, note="", visible=False)
        while True:
            detail = client.detail(run.run_id)
            by_step: dict[str, set[str]] = {}
            for task in detail.tasks:
                by_step.setdefault(task.step, set()).add(task.status.value)
            done = [step for step, seen in by_step.items() if seen == {"completed"}]
            retries = sum(
                1 for a in detail.attempts if a.status.value != "succeeded" and a.finished_at
            )
            running = sorted({t.step for t in detail.tasks if t.status.value == "running"})
            progress.update(
                step_bar, completed=len(set(done)), note=", ".join(running) + _retries(retries)
            )
            if detail.children:
                finished = [c for c in detail.children if c.status.finished]
                failed = sum(1 for c in finished if c.status.value != "completed")
                note = f"{failed} compensated" if failed else ""
                progress.update(
                    child_bar,
                    visible=True,
                    total=len(detail.children),
                    completed=len(finished),
                    note=note,
                )
            if detail.run.status.finished:
                break
            time.sleep(0.3)
    result = run.result(timeout=30)
    console.print(f"{flow.name}: [bold]{detail.run.status.value}[/]")
    return run.run_id, result


def drop_an_email_address(settings: InvoiceSettings) -> int:
    """Make one immediate-delivery customer unreachable, so a compensation shows."""
    with NinoxClient(settings.ninox.config()) as ninox:
        immediate = ninox.list_records(CUSTOMERS, filters={"Invoice delivery": "immediate"})
        delivered = ninox.list_records(ORDERS, filters={"Status": "delivered"})
        due = {o.fields.get("Customer") for o in delivered}
        customer = min(c.id for c in immediate if c.id in due)
        ninox.update_record(CUSTOMERS, customer, {"Email": None})
    return customer


def _retries(count: int) -> str:
    return f"  [yellow]{count} retried[/]" if count else ""


def save_pdfs(ninox: NinoxClient, folder: Path) -> list[Path]:
    """Copy every live invoice's PDF out of Ninox, so the user can open them."""
    folder.mkdir(parents=True, exist_ok=True)
    saved = []
    for record in ninox.list_records(INVOICES):
        number = record.fields.get("Invoice no")
        if record.fields.get("Status") == "cancelled" or not record.fields.get("PDF"):
            continue
        path = folder / f"{number}.pdf"
        path.write_bytes(ninox.download_file(INVOICES, record.id, f"{number}.pdf"))
        saved.append(path)
    return saved


def report(
    client: wfray.Client,
    ninox: NinoxClient,
    daily: tuple[str, Any],
    weekly: tuple[str, Any],
    pdfs: list[Path],
    emails: int,
    state: Any,
) -> None:
    daily_summary = DailySummary.model_validate(daily[1])
    weekly_summary = WeeklySummary.model_validate(weekly[1])
    runs = [daily[0], weekly[0], *(c.run_id for c in client.detail(daily[0]).children)]
    details = [client.detail(r) for r in runs]
    retries = sum(1 for d in details for a in d.attempts if a.attempt > 1)
    compensated = sum(1 for d in details if d.run.status.value == "compensated")
    statuses = Counter(str(r.fields.get("Status")) for r in ninox.list_records(INVOICES))
    invoiced = sum(
        1
        for o in ninox.list_records(ORDERS, filters={"Status": "delivered"})
        if o.fields.get("Invoice")
    )
    table = Table(title="invoice demo", show_header=False)
    rows = [
        ("orders invoiced", f"{invoiced} of {daily_summary.orders_due} due"),
        ("invoices", ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))),
        ("PDFs", str(len(pdfs))),
        (
            "e-mails sent",
            f"{emails} ({emails - weekly_summary.emails} immediate, "
            f"{weekly_summary.emails} weekly)",
        ),
        ("Ninox faults injected", str(len(state.faults.injected))),
        ("retries", str(retries)),
        ("compensations", str(compensated)),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    for line in daily_summary.failed:
        console.print(f"[red]customer {line}[/]")


if __name__ == "__main__":
    sys.exit(main())
