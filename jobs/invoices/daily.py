"""The daily invoice workflow: delivered, not yet invoiced orders become invoices.

    fetch_orders -> select_uninvoiced -> fetch_details -> invoice_customers
                                                             |  one child run per customer
    invoice-customer:  take_number -> create_invoice -> render_invoice_pdf (cpu)
                       -> attach_pdf -> email_invoice -> record_delivery

Never twice: each invoice carries the key `invoice:<customer>:<sorted order ids>`.
`create_invoice` first claims that key in wfray's store (`once.py`), so of two runs that
overlap (a manual rerun beside the scheduled one, a rerun after a crash) one creates the
invoice and marks the claim done with its record id and number; the other waits while it
is held, then reuses that invoice and does nothing more for the customer. A retry of the
same step gets its claim back; a run whose holder died takes the claim over and finishes
the record it finds in Ninox under the key instead of creating another. The key is also
looked up in Ninox before any create, and should two creates ever race anyway (a run of
an older version without claims), the record with the lowest id wins and the other is
voided at once. Numbers come from wfray's store counter: never handed out twice; a number
taken by a run that then did not create an invoice is a gap.

The e-mail of an immediate customer is claimed too (`invoice-email:<number>`), done after
the server's 250: a retry after a crash resends only if the crash cut the SMTP
conversation short, with the same Message-ID.

If a customer's invoice cannot be completed (e.g. no e-mail address), the child's
compensation voids the invoice (status cancelled, its number is not reused) and unlinks
its orders, so the next daily run invoices them afresh (under a fresh claim: the key's
claim counts the voided invoices of the key); the other customers go on.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date

from pydantic import BaseModel

import wfray
from jobs.invoices.flows import (
    CUSTOMERS,
    INVOICE_LINES,
    INVOICES,
    NINOX_RETRY,
    ORDER_ITEMS,
    ORDERS,
    PDF_RETRY,
    PRODUCTS,
    CustomerBatch,
    OrderRef,
    PricedOrder,
    build_document,
    customer_from,
    invoice_number,
    line_from,
    ninox_session,
    order_from,
    today_in,
)
from jobs.invoices.invoice_pdf import render_invoice
from jobs.invoices.ninox_client import NinoxClient, NinoxRecord
from jobs.invoices.once import claim_key, claim_or_wait, holder_note
from jobs.invoices.outbox import already_sent, compose, invoice_message_id, mark_sent, send
from jobs.invoices.settings import InvoiceSettings, resolve
from wfray import StepContext
from wfray.integrations.email import Attachment
from wfray.integrations.pdf import PdfDocument

INVOICE_COUNTER = "invoice"
# How long a step may hold an invoice or e-mail claim unfinished: far longer than creating
# one invoice or sending one message takes, so a live holder is never taken for dead.
CLAIM_TTL_S = 600.0
# Customer runs wait here, one running per customer at a time across daily runs that overlap
# (a manual rerun beside the scheduled one): configure it with `wfray.load_settings(queues=
# [INVOICE_QUEUE])`. Without it the queue has no limits and the record-level checks below
# still keep an invoice from being issued twice.
INVOICE_QUEUE = wfray.QueueConfig(name="invoices", per_key_limit=1)


class DailyInput(BaseModel):
    """settings: None reads INVOICES_* on the workers. invoice_date: default today."""

    settings: InvoiceSettings | None = None
    invoice_date: date | None = None


class CustomerInvoiceInput(BaseModel):
    settings: InvoiceSettings | None = None
    invoice_date: date
    batch: CustomerBatch


class InvoiceClaim(BaseModel):
    """The invoice record for a batch. owner=False: another run holds it, this one stops."""

    record_id: int | None
    number: str | None
    owner: bool
    note: str = ""


class CustomerOutcome(BaseModel):
    customer_id: int
    number: str | None
    orders: list[int]
    delivery: str  # "emailed", "weekly", "already emailed", "skipped: <why>"


class DailySummary(BaseModel):
    orders_due: int
    customers: int
    invoiced: list[CustomerOutcome]
    failed: list[str]  # "<customer id>: <error>" of children that were compensated


daily_invoices = wfray.Workflow("daily-invoices", input=DailyInput, retry=NINOX_RETRY)
invoice_customer = wfray.Workflow("invoice-customer", input=CustomerInvoiceInput, retry=NINOX_RETRY)

wfray.schedule(
    daily_invoices,
    name="daily-invoices",
    cron="0 6 * * *",
    tz="Europe/Berlin",
    input={},
    misfire="latest",  # after an outage, catch up once: the run takes every order due
    overlap="skip",
)


# --- the daily run ------------------------------------------------------------------------


@daily_invoices.step(pool="io")
def fetch_orders(input: DailyInput, ctx: StepContext) -> list[OrderRef]:
    """1. Retrieve the delivered orders (every page)."""
    with ninox_session(resolve(input.settings)) as api:
        records = api.list_records(ORDERS, filters={"Status": "delivered"})
    ctx.logger.info("%d delivered orders in Ninox", len(records))
    return [order_from(r) for r in records]


@daily_invoices.step(pool="io")
def select_uninvoiced(fetch_orders: list[OrderRef], ctx: StepContext) -> list[OrderRef]:
    """2. Keep those not yet invoiced (Invoice empty: Ninox filters cannot say 'empty')."""
    due = [o for o in fetch_orders if o.invoice_id is None and o.customer_id and o.delivered_on]
    ctx.logger.info("%d of %d delivered orders are not invoiced yet", len(due), len(fetch_orders))
    return due


@daily_invoices.step(pool="io")
def fetch_details(
    select_uninvoiced: list[OrderRef], input: DailyInput, ctx: StepContext
) -> list[CustomerBatch]:
    """3. Fetch items, prices and customers; group the orders by customer."""
    if not select_uninvoiced:
        return []
    with ninox_session(resolve(input.settings)) as api:
        products = {p.id: p for p in api.list_records(PRODUCTS)}
        customers = {c.id: customer_from(c) for c in api.list_records(CUSTOMERS)}
        due = {o.id: o for o in select_uninvoiced}
        items: dict[int, list[NinoxRecord]] = defaultdict(list)
        for item in api.list_records(ORDER_ITEMS):
            if item.fields.get("Order") in due:
                items[int(item.fields["Order"])].append(item)
    per_customer: dict[int, list[PricedOrder]] = defaultdict(list)
    for order in sorted(select_uninvoiced, key=lambda o: (o.delivered_on, o.number)):
        lines = [line_from(i, products[int(i.fields["Product"])]) for i in items[order.id]]
        if not lines or order.customer_id not in customers or order.delivered_on is None:
            ctx.logger.warning("order %s has no items or customer: not invoiced", order.number)
            continue
        per_customer[order.customer_id].append(
            PricedOrder(
                id=order.id, number=order.number, delivered_on=order.delivered_on, lines=lines
            )
        )
    batches = [
        CustomerBatch(customer=customers[cid], orders=o) for cid, o in sorted(per_customer.items())
    ]
    ctx.logger.info("%d customers to invoice", len(batches))
    return batches


@daily_invoices.step(pool="io")
def invoice_customers(
    fetch_details: list[CustomerBatch], input: DailyInput, ctx: StepContext
) -> DailySummary:
    """4-6. One child run per customer; a failed customer does not stop the others."""
    invoice_date = input.invoice_date or today_in(resolve(input.settings))
    inputs = [
        CustomerInvoiceInput(settings=input.settings, invoice_date=invoice_date, batch=batch)
        for batch in fetch_details
    ]
    children = ctx.run_children(
        invoice_customer,
        inputs,
        on_failure="continue",
        timeout_s=600,
        queue=INVOICE_QUEUE.name,
        concurrency_keys=[f"customer:{batch.customer.id}" for batch in fetch_details],
    )
    failed = [
        f"{fetch_details[c.index].customer.id}: {c.error or c.status}" for c in children.failed
    ]
    for line in failed:
        ctx.logger.warning("customer %s (compensated)", line)
    return DailySummary(
        orders_due=sum(len(b.orders) for b in fetch_details),
        customers=len(fetch_details),
        invoiced=[CustomerOutcome.model_validate(r) for r in children.results],
        failed=failed,
    )


# --- one customer -------------------------------------------------------------------------


@invoice_customer.step(pool="io")
def take_number(ctx: StepContext) -> int:
    """A fresh number from wfray's store; completed once, it is this run's for good."""
    return ctx.next_number(INVOICE_COUNTER)


def void_invoice(result: InvoiceClaim, input: CustomerInvoiceInput, ctx: StepContext) -> None:
    """Compensation: cancel the invoice (its number stays used) and unlink its orders."""
    if not result.owner or result.record_id is None:
        return
    with ninox_session(resolve(input.settings)) as api:
        linked = api.list_records(ORDERS, filters={"Invoice": result.record_id})
        if linked:
            api.upsert_records(
                ORDERS,
                [{"id": o.id, "fields": {"Invoice": None, "Invoiced": False}} for o in linked],
            )
        api.update_record(INVOICES, result.record_id, {"Status": "cancelled"})
    ctx.logger.warning("voided %s and unlinked %d orders", result.number, len(linked))


@invoice_customer.step(pool="io", compensate=void_invoice)
def create_invoice(take_number: int, input: CustomerInvoiceInput, ctx: StepContext) -> InvoiceClaim:
    """4. The invoice record, its lines, and the orders linked to it, once across runs."""
    settings = resolve(input.settings)
    batch = input.batch
    number = invoice_number(settings.number_prefix, input.invoice_date.year, take_number)
    with ninox_session(settings) as api:
        claim = claim_or_wait(ctx, _invoice_claim_key(api, settings, batch), CLAIM_TTL_S)
        if claim.is_done:
            done = InvoiceRef.model_validate(claim.result)
            if claim.regained:  # this step created it; its attempt ended before returning
                return InvoiceClaim(record_id=done.record_id, number=done.number, owner=True)
            note = f"already invoiced as {done.number} by {holder_note(claim)}"
            ctx.logger.info("customer %d: %s", batch.customer.id, note)
            return InvoiceClaim(
                record_id=done.record_id, number=done.number, owner=False, note=note
            )
        if claim.taken_over:
            ctx.logger.warning(
                "customer %d: took the invoice over from %s, which died; finishing the "
                "record it may have created",
                batch.customer.id,
                holder_note(claim),
            )
        record = _record(api, settings, input, number)
        if not record.owner or record.record_id is None:
            ctx.logger.info("customer %d: %s", batch.customer.id, record.note)
            return record
        _write_lines(api, record.record_id, batch)
        api.upsert_records(
            ORDERS,
            [
                {"id": oid, "fields": {"Invoice": record.record_id, "Invoiced": True}}
                for oid in batch.order_ids
            ],
        )
        claim.done(InvoiceRef(record_id=record.record_id, number=record.number or number))
    ctx.logger.info(
        "%s for customer %d: orders %s", record.number, batch.customer.id, batch.order_ids
    )
    return record


class InvoiceRef(BaseModel):
    """The result of a done invoice claim: which record the invoice is."""

    record_id: int
    number: str


def _invoice_claim_key(api: NinoxClient, settings: InvoiceSettings, batch: CustomerBatch) -> str:
    """The batch's key in wfray's store; a voided invoice of the key (its run was
    compensated) moves it to a new generation, so a later run can invoice the orders."""
    key = batch.idempotency_key
    found = api.find_by_key(INVOICES, "Idempotency key", key)
    voided = sum(1 for r in found if r.fields.get("Status") == "cancelled")
    return claim_key("invoice", settings.scope, key + (f"#{voided}" if voided else ""))


def _live(api: NinoxClient, key: str) -> list[NinoxRecord]:
    found = api.find_by_key(INVOICES, "Idempotency key", key)
    return sorted((r for r in found if r.fields.get("Status") != "cancelled"), key=lambda r: r.id)


def _record(
    api: NinoxClient, settings: InvoiceSettings, input: CustomerInvoiceInput, number: str
) -> InvoiceClaim:
    """The invoice record of the batch, created unless found: the caller holds its claim,
    so a live record under the key was created by this step's earlier attempt or by a
    holder that died before marking the claim done; either way it is the one to finish."""
    key = input.batch.idempotency_key
    live = _live(api, key)
    if live:
        found = str(live[0].fields.get("Invoice no"))
        note = "resumed" if found == number else f"resumed {found}, created by a dead holder"
        return InvoiceClaim(record_id=live[0].id, number=found, owner=True, note=note)
    taken = [
        o.fields.get("Invoice")
        for o in (api.get_record(ORDERS, oid) for oid in input.batch.order_ids)
        if o.fields.get("Invoice")
    ]
    if taken:
        return InvoiceClaim(
            record_id=None, number=None, owner=False, note=f"orders already on invoices {taken}"
        )
    document = build_document(settings, input.batch, number, input.invoice_date)
    created = api.create_record(
        INVOICES,
        {
            "Invoice no": number,
            "Customer": input.batch.customer.id,
            "Invoice date": input.invoice_date.isoformat(),
            "Service date": document.delivery_date.isoformat(),
            "Net": document.net_total,
            "VAT": document.vat_total,
            "Gross": document.gross_total,
            "Status": "issued",
            "Idempotency key": key,
        },
    )
    winner = _live(api, key)[0]
    if winner.id != created.id:  # a concurrent run created its record first
        api.update_record(INVOICES, created.id, {"Status": "cancelled"})
        holder = winner.fields.get("Invoice no")
        return InvoiceClaim(
            record_id=winner.id,
            number=holder,
            owner=False,
            note=f"lost the race to {holder}; {number} voided",
        )
    return InvoiceClaim(record_id=created.id, number=number, owner=True, note="created")


def _write_lines(api: NinoxClient, record_id: int, batch: CustomerBatch) -> None:
    written = {
        r.fields.get("Position")
        for r in api.list_records(INVOICE_LINES, filters={"Invoice": record_id})
    }
    lines = [(order, line) for order in batch.orders for line in order.lines]
    missing = [
        {
            "fields": {
                "Invoice": record_id,
                "Order": order.id,
                "Position": position,
                "Description": line.description,
                "Quantity": line.quantity,
                "Unit": line.unit,
                "Unit net": line.unit_net,
                "VAT rate %": line.vat_rate,
                "Line net": line.net,
            }
        }
        for position, (order, line) in enumerate(lines, start=1)
        if position not in written
    ]
    if missing:
        api.upsert_records(INVOICE_LINES, missing)


@invoice_customer.step(retry=PDF_RETRY)
def render_invoice_pdf(
    create_invoice: InvoiceClaim, input: CustomerInvoiceInput
) -> PdfDocument | None:
    """5. The PDF (cpu pool): the same invoice renders to the same bytes."""
    if not create_invoice.owner or create_invoice.number is None:
        return None
    settings = resolve(input.settings)
    return render_invoice(
        build_document(settings, input.batch, create_invoice.number, input.invoice_date)
    )


@invoice_customer.step(pool="io")
def attach_pdf(
    create_invoice: InvoiceClaim,
    render_invoice_pdf: PdfDocument | None,
    input: CustomerInvoiceInput,
) -> str | None:
    """Upload the PDF to the invoice record (same name: an upload again replaces it)."""
    if (
        render_invoice_pdf is None
        or create_invoice.record_id is None
        or create_invoice.number is None
    ):
        return None
    filename = f"{create_invoice.number}.pdf"
    with ninox_session(resolve(input.settings)) as api:
        content = render_invoice_pdf.content()
        api.upload_file(
            INVOICES, create_invoice.record_id, filename, content, "PDF", "application/pdf"
        )
        if api.get_record(INVOICES, create_invoice.record_id).fields.get("Status") == "issued":
            api.update_record(INVOICES, create_invoice.record_id, {"Status": "pdf_ready"})
    return filename


@invoice_customer.step(pool="io")
def email_invoice(
    create_invoice: InvoiceClaim,
    render_invoice_pdf: PdfDocument | None,
    attach_pdf: str | None,
    input: CustomerInvoiceInput,
    ctx: StepContext,
) -> CustomerOutcome:
    """6. E-mail the PDF to customers who want it at once; weekly ones wait for Monday."""
    customer = input.batch.customer
    outcome = CustomerOutcome(
        customer_id=customer.id,
        number=create_invoice.number,
        orders=input.batch.order_ids,
        delivery="",
    )
    if not create_invoice.owner or render_invoice_pdf is None or attach_pdf is None:
        return outcome.model_copy(update={"delivery": f"skipped: {create_invoice.note}"})
    if customer.delivery == "weekly":
        return outcome.model_copy(update={"delivery": "weekly"})
    settings = resolve(input.settings)
    number = create_invoice.number or ""
    message_id = invoice_message_id(number, settings.message_domain)
    with ninox_session(settings) as api:
        claim = claim_or_wait(ctx, claim_key("invoice-email", settings.scope, number), CLAIM_TTL_S)
        if claim.is_done:  # sent by this step's earlier attempt: mark it, never resend
            emailed = "emailed" if claim.regained else "already emailed"
            return outcome.model_copy(update={"delivery": emailed})
        record_id = create_invoice.record_id or 0
        if already_sent(api.get_record(INVOICES, record_id)):
            return outcome.model_copy(update={"delivery": "already emailed"})
        message = compose(
            settings,
            customer,
            subject=f"Ihre Rechnung {number}",
            text=f"Guten Tag,\n\nanbei erhalten Sie Ihre Rechnung {number}.\n\n"
            f"Mit freundlichen Grüßen\n{settings.supplier.name}\n",
            attachments=[
                Attachment.from_bytes(attach_pdf, render_invoice_pdf.content(), "application/pdf")
            ],
            message_id=message_id,
            numbers=[number],
        )
        receipt = send(settings, message)
        claim.done({"message_id": receipt.message_id})
    ctx.logger.info("sent %s to %s as %s", number, customer.email, receipt.message_id)
    return outcome.model_copy(update={"delivery": "emailed"})


@invoice_customer.step(pool="io")
def record_delivery(
    email_invoice: CustomerOutcome, create_invoice: InvoiceClaim, input: CustomerInvoiceInput
) -> CustomerOutcome:
    """Mark the invoice e-mailed: a step of its own, so a failed write never resends."""
    if email_invoice.delivery == "emailed" and create_invoice.record_id is not None:
        with ninox_session(resolve(input.settings)) as api:
            mark_sent(api, [create_invoice.record_id], "emailed")
    return email_invoice


__all__ = ["DailyInput", "DailySummary", "daily_invoices", "invoice_customer"]
