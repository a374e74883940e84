"""The weekly e-mail workflow: one message per weekly customer with all their unsent invoices.

    collect_weekly -> send_weekly (one task per customer) -> summarize

Unsent: status pdf_ready, or issued with its PDF already attached (a daily run stopped
between the upload and the status), and no `Emailed at`.

Once per customer and ISO week, whoever runs it: `send_weekly` claims
`weekly-email:<customer>:<week>` in wfray's store before it sends (`once.py`). Of two runs
at once (a scheduled tick and a manual trigger), one sends; the other waits while the claim
is held, then skips the customer and reports the message as sent by that run (the claim's
result: Message-ID, invoice numbers, records). After the server's 250 the claim is marked
done, then the invoices `sent_weekly` with `Emailed at`, all in one write; a retry after a
failed write finds the claim done and only writes the mark. A run that takes the claim
over from a holder that died (or a retry of the holder itself) first reads the records
in Ninox: what is marked sent is not sent again; the rest goes out with the same
Message-ID as before (it is derived from customer, week and invoice numbers). So only a
crash between handing the message to the server and the claim's done repeats a message.

Invoices that become due after a customer's weekly message went out (a daily run later in
the same week) go out with the next week's message. See `outbox.py` for the Message-IDs.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field, model_validator

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
from jobs.invoices.once import claim_key, claim_or_wait, holder_note
from jobs.invoices.outbox import already_sent, compose, iso_week, mark_sent, send, weekly_message_id
from jobs.invoices.settings import InvoiceSettings, resolve
from wfray import StepContext
from wfray.integrations.email import Attachment

# "2026-W49", or a schedule's per-tick field that becomes one (wfray's `{tick:FORMAT}`)
WEEK_PATTERN = r"^(\d{4}-W\d{2}|\{tick:%G-W%V\})$"
DEFAULT_TIMEZONE: str = InvoiceSettings.model_fields["timezone"].default


class WeeklyInput(BaseModel):
    """settings: None reads INVOICES_* on the workers. week: the ISO week ("2026-W49"); left
    out, the week it is when the run is submitted, in the business time zone. A schedule
    gives each tick's run the tick's week with `{tick:%G-W%V}`."""

    settings: InvoiceSettings | None = None
    week: str | None = Field(default=None, pattern=WEEK_PATTERN)

    @model_validator(mode="after")
    def _this_week_unless_given(self) -> WeeklyInput:
        if self.week is None:
            zone = self.settings.timezone if self.settings else DEFAULT_TIMEZONE
            self.week = iso_week(datetime.now(ZoneInfo(zone)).date())
        return self

    def unique_key(self) -> str:
        """One weekly run per Ninox database and ISO week, whoever starts it."""
        scope = self.settings.scope if self.settings else "workers"
        return f"{scope}:{self.week}"


class DueInvoice(BaseModel):
    record_id: int
    number: str
    gross: str


class WeeklyBatch(BaseModel):
    customer: CustomerInfo
    week: str
    invoices: list[DueInvoice]


class WeeklyOutcome(BaseModel):
    """A customer's weekly message. sent_by: the run that sent it, when another run did."""

    customer_id: int
    message_id: str | None
    numbers: list[str]
    record_ids: list[int] = []
    sent_by: str | None = None


class WeeklySummary(BaseModel):
    """emails, invoices and sent: what this run sent; sent_elsewhere: what it found sent
    this week by another run (it sent nothing to those customers)."""

    week: str
    emails: int
    invoices: int
    sent: list[WeeklyOutcome]
    sent_elsewhere: list[WeeklyOutcome] = []


# How long a step may hold a customer's weekly e-mail claim unfinished: far longer than
# sending one message takes, so a live holder is never taken for dead.
CLAIM_TTL_S = 600.0


# A second run for a week (a manual trigger beside the Monday tick, a rerun) is answered
# with the week's run while it is active or once it completed; a new one may start only if
# that one failed. Claims still guard each customer's message inside (retries, takeovers).
weekly_email = wfray.Workflow(
    "weekly-invoice-email",
    input=WeeklyInput,
    retry=NINOX_RETRY,
    unique=WeeklyInput.unique_key,
    unique_policy=wfray.UniquePolicy(while_active="existing", after_finished="new_if_failed"),
)

wfray.schedule(
    weekly_email,
    name="weekly-invoice-email",
    cron="0 7 * * MON",
    tz="Europe/Berlin",
    input={"week": "{tick:%G-W%V}"},
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
    """One message with every PDF, claimed first; then the invoices are marked sent."""
    batch, customer = collect_weekly, collect_weekly.customer
    settings = resolve(input.settings)
    key = claim_key("weekly-email", settings.scope, f"{customer.id}:{batch.week}")
    with ninox_session(settings) as api:
        claim = claim_or_wait(ctx, key, CLAIM_TTL_S)
        if claim.is_done:
            sent = WeeklyOutcome.model_validate(claim.result)
            _mark_unmarked(api, sent.record_ids)  # the sender's mark may not be written yet
            if claim.regained:  # this step sent it; its attempt ended before returning
                return sent
            ctx.logger.info(
                "customer %d: week %s sent by %s as %s",
                customer.id,
                batch.week,
                holder_note(claim),
                sent.message_id,
            )
            return sent.model_copy(update={"sent_by": claim.holder.run_id})
        if claim.taken_over or claim.regained:
            ctx.logger.warning(
                "customer %d: week %s claimed again (%s); what Ninox marks sent is not resent",
                customer.id,
                batch.week,
                f"taken over from {holder_note(claim)}" if claim.taken_over else "a retry",
            )
        records = [api.get_record(INVOICES, i.record_id) for i in batch.invoices]
        unsent = [r for r in records if not already_sent(r)]
        if not unsent:
            # nothing sent under this claim: left unfinished, a later run this week may
            # still send invoices that become due
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
        outcome = WeeklyOutcome(
            customer_id=customer.id,
            message_id=receipt.message_id,
            numbers=numbers,
            record_ids=[r.id for r in unsent],
        )
        claim.done(outcome.model_dump(mode="json"))
        mark_sent(api, outcome.record_ids, "sent_weekly")
    ctx.logger.info(
        "sent %d invoices to customer %d as %s", len(numbers), customer.id, receipt.message_id
    )
    return outcome


def _mark_unmarked(api: NinoxClient, record_ids: list[int]) -> None:
    records = [api.get_record(INVOICES, rid) for rid in record_ids]
    unmarked = [r.id for r in records if not already_sent(r)]
    if unmarked:
        mark_sent(api, unmarked, "sent_weekly")


def _weekly_text(settings: InvoiceSettings, batch: WeeklyBatch, numbers: list[str]) -> str:
    gross = {i.number: i.gross for i in batch.invoices}
    listed = "\n".join(f"  {n}  {gross.get(n, '')}" for n in numbers)
    return (
        f"Guten Tag,\n\nanbei Ihre Rechnungen der Woche {batch.week}:\n\n{listed}\n\n"
        f"Mit freundlichen Grüßen\n{settings.supplier.name}\n"
    )


@weekly_email.step(pool="io")
def summarize(send_weekly: list[WeeklyOutcome], input: WeeklyInput) -> WeeklySummary:
    """What this run sent, and what it found sent by another run this week."""
    sent = [o for o in send_weekly if o.message_id is not None and o.sent_by is None]
    elsewhere = [o for o in send_weekly if o.message_id is not None and o.sent_by is not None]
    week = input.week or (iso_week(today_in(resolve(input.settings))))
    return WeeklySummary(
        week=week,
        emails=len(sent),
        invoices=sum(len(o.numbers) for o in sent),
        sent=sent,
        sent_elsewhere=elsewhere,
    )


__all__ = ["WeeklyInput", "WeeklySummary", "weekly_email"]
