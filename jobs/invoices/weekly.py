"""The weekly e-mail workflow: one message per weekly customer with all their unsent invoices.

    collect_weekly -> send_weekly (one task per customer) -> summarize (marks them sent)

Unsent: status pdf_ready, or issued with its PDF already attached (a daily run stopped
between the upload and the status), and no `Emailed at`. After the server's 250 the
invoices are marked `sent_weekly` with `Emailed at`, all in one write; a second run finds
nothing to send. See `outbox.py` for the at-least-once window and the Message-IDs.
"""

from __future__ import annotations

from collections import defaultdict

from pydantic import BaseModel

import wfray
from jobs.invoices.flows import (
    CUSTOMERS,
    INVOICES,
    NINOX_RETRY,
    CustomerInfo,
    customer_from,
    decimal,
    ninox_session,
    today_in,
)
from jobs.invoices.money import format_eur
from jobs.invoices.ninox_client import NinoxClient, NinoxRecord
from jobs.invoices.outbox import already_sent, compose, iso_week, mark_sent, send, weekly_message_id
from jobs.invoices.settings import InvoiceSettings, resolve
from wfray import StepContext
from wfray.integrations.email import Attachment


class WeeklyInput(BaseModel):
    """settings: None reads INVOICES_* on the workers. week: ISO week, default this week."""

    settings: InvoiceSettings | None = None
    week: str | None = None


class DueInvoice(BaseModel):
    record_id: int
    number: str
    gross: str


class WeeklyBatch(BaseModel):
    customer: CustomerInfo
    week: str
    invoices: list[DueInvoice]


class WeeklyOutcome(BaseModel):
    customer_id: int
    message_id: str | None
    numbers: list[str]
    record_ids: list[int] = []


class WeeklySummary(BaseModel):
    week: str
    emails: int
    invoices: int
    sent: list[WeeklyOutcome]


weekly_email = wfray.Workflow("weekly-invoice-email", input=WeeklyInput, retry=NINOX_RETRY)

wfray.schedule(
    weekly_email,
    name="weekly-invoice-email",
    cron="0 7 * * MON",
    tz="Europe/Berlin",
    input={},
    misfire="latest",
    overlap="skip",
)


@weekly_email.step(pool="io")
def collect_weekly(input: WeeklyInput, ctx: StepContext) -> list[WeeklyBatch]:
    """The weekly customers and their unsent invoices, grouped by customer."""
    settings = resolve(input.settings)
    week = input.week or iso_week(today_in(settings))
    with ninox_session(settings) as api:
        weekly = {
            c.id: customer_from(c)
            for c in api.list_records(CUSTOMERS, filters={"Invoice delivery": "weekly"})
        }
        due: dict[int, list[DueInvoice]] = defaultdict(list)
        for record in _unsent(api):
            customer_id = record.fields.get("Customer")
            if customer_id in weekly:
                due[customer_id].append(
                    DueInvoice(
                        record_id=record.id,
                        number=str(record.fields["Invoice no"]),
                        gross=format_eur(decimal(record.fields.get("Gross") or 0)),
                    )
                )
    batches = [
        WeeklyBatch(customer=weekly[cid], week=week, invoices=sorted(inv, key=lambda i: i.number))
        for cid, inv in sorted(due.items())
    ]
    ctx.logger.info("week %s: %d weekly customers have invoices to send", week, len(batches))
    return batches


def _unsent(api: NinoxClient) -> list[NinoxRecord]:
    ready = api.list_records(INVOICES, filters={"Status": "pdf_ready"})
    issued = [
        r
        for r in api.list_records(INVOICES, filters={"Status": "issued"})
        if any(f.name == _pdf_name(r) for f in api.list_files(INVOICES, r.id))
    ]
    return [r for r in ready + issued if not already_sent(r)]


def _pdf_name(record: NinoxRecord) -> str:
    return f"{record.fields.get('Invoice no')}.pdf"


@weekly_email.step(pool="io", map="collect_weekly")
def send_weekly(collect_weekly: WeeklyBatch, input: WeeklyInput, ctx: StepContext) -> WeeklyOutcome:
    """One message with every PDF; the outbox on the records is checked first."""
    batch, customer = collect_weekly, collect_weekly.customer
    settings = resolve(input.settings)
    with ninox_session(settings) as api:
        records = [api.get_record(INVOICES, i.record_id) for i in batch.invoices]
        unsent = [r for r in records if not already_sent(r)]
        if not unsent:
            ctx.logger.info("customer %d: week %s already sent", customer.id, batch.week)
            return WeeklyOutcome(customer_id=customer.id, message_id=None, numbers=[])
        numbers = [str(r.fields["Invoice no"]) for r in unsent]
        attachments = [
            Attachment.from_bytes(
                _pdf_name(r), api.download_file(INVOICES, r.id, _pdf_name(r)), "application/pdf"
            )
            for r in unsent
        ]
        message = compose(
            settings,
            customer,
            subject=f"Ihre Rechnungen der Woche {batch.week}",
            text=_weekly_text(settings, batch, numbers),
            attachments=attachments,
            message_id=weekly_message_id(customer.id, batch.week, numbers, settings.message_domain),
            numbers=numbers,
        )
        receipt = send(settings, message)
    ctx.logger.info(
        "sent %d invoices to customer %d as %s", len(numbers), customer.id, receipt.message_id
    )
    return WeeklyOutcome(
        customer_id=customer.id,
        message_id=receipt.message_id,
        numbers=numbers,
        record_ids=[r.id for r in unsent],
    )


def _weekly_text(settings: InvoiceSettings, batch: WeeklyBatch, numbers: list[str]) -> str:
    gross = {i.number: i.gross for i in batch.invoices}
    listed = "\n".join(f"  {n}  {gross.get(n, '')}" for n in numbers)
    return (
        f"Guten Tag,\n\nanbei Ihre Rechnungen der Woche {batch.week}:\n\n{listed}\n\n"
        f"Mit freundlichen Grüßen\n{settings.supplier.name}\n"
    )


@weekly_email.step(pool="io")
def summarize(send_weekly: list[WeeklyOutcome], input: WeeklyInput) -> WeeklySummary:
    """Mark what was sent: a step of its own, so a failed write never resends a message."""
    sent = [o for o in send_weekly if o.message_id is not None]
    if sent:
        with ninox_session(resolve(input.settings)) as api:
            mark_sent(api, [rid for o in sent for rid in o.record_ids], "sent_weekly")
    week = input.week or (iso_week(today_in(resolve(input.settings))))
    return WeeklySummary(
        week=week, emails=len(sent), invoices=sum(len(o.numbers) for o in sent), sent=sent
    )


__all__ = ["WeeklyInput", "WeeklySummary", "weekly_email"]
