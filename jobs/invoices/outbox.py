"""The e-mail outbox of the invoices: who was sent what, and the Message-IDs that prove it.

The outbox lives on the Invoice records themselves: `Emailed at` plus the status
(`emailed` for an immediate mail, `sent_weekly` for the weekly one). A step checks it
before sending and writes it after the server answered 250, so a second run sends nothing.

Across runs, each message is claimed in wfray's store first (`once.py`) and the claim is
marked done right after the server's 250, before the records are marked; a retry or a run
taking over a dead sender's claim checks the records before sending again. What remains
of SMTP's at-least-once: a crash after the message was handed to the server and before
its claim was marked done sends that message again. Every message therefore carries a
deterministic Message-ID (the same invoices always get the same id) and an X-Invoice-No
header, so a receiver or mail archive can drop the duplicate.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import date

from pydantic import ValidationError

from jobs.invoices.flows import INVOICES, CustomerInfo, ninox_now
from jobs.invoices.ninox_client import NinoxClient, NinoxRecord
from jobs.invoices.settings import InvoiceSettings
from wfray.domain.errors import NonRetryableError
from wfray.integrations.email import Attachment, EmailReceipt, OutgoingEmail, send_message

SENT_STATUSES = frozenset({"emailed", "sent_weekly"})


def iso_week(day: date) -> str:
    """'2025-W48': the ISO year and week of `day`."""
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def invoice_message_id(number: str, domain: str) -> str:
    return f"<{number}.inv@{domain}>"


def weekly_message_id(customer_id: int, week: str, numbers: Sequence[str], domain: str) -> str:
    """One id per customer, ISO week and set of invoices.

    The digest of the invoice numbers keeps a later mail of the same week (new invoices)
    from reusing the id of a different message.
    """
    digest = hashlib.sha256(",".join(sorted(numbers)).encode()).hexdigest()[:10]
    return f"<weekly-{customer_id}-{week}-{digest}@{domain}>"


def already_sent(record: NinoxRecord) -> bool:
    return bool(record.fields.get("Emailed at")) or record.fields.get("Status") in SENT_STATUSES


def compose(
    settings: InvoiceSettings,
    customer: CustomerInfo,
    subject: str,
    text: str,
    attachments: list[Attachment],
    message_id: str,
    numbers: Sequence[str],
) -> OutgoingEmail:
    """The message, or NonRetryableError if the customer cannot be mailed (no address)."""
    if not customer.email:
        raise NonRetryableError(
            f"customer {customer.id} ({customer.name}) has no e-mail address in Ninox; "
            f"expected one in field 'Email' to send {', '.join(numbers)}"
        )
    try:
        return OutgoingEmail(
            sender=settings.sender,
            to=[f"{customer.name} <{customer.email}>"],
            subject=subject,
            text=text,
            attachments=attachments,
            message_id=message_id,
            headers={"X-Invoice-No": ", ".join(numbers)},
        )
    except ValidationError as exc:
        raise NonRetryableError(
            f"cannot e-mail {', '.join(numbers)} to customer {customer.id} ({customer.name}): "
            f"{exc.errors()[0]['msg']}"
        ) from exc


def send(settings: InvoiceSettings, message: OutgoingEmail) -> EmailReceipt:
    """Send over SMTP; a server refusing every recipient is a permanent failure."""
    receipt = send_message(settings.smtp, message)
    if not receipt.accepted:
        raise NonRetryableError(
            f"SMTP {settings.smtp.host}:{settings.smtp.port} refused every recipient of "
            f"{receipt.message_id}: {receipt.refused}"
        )
    return receipt


def mark_sent(api: NinoxClient, record_ids: Sequence[int], status: str) -> None:
    """Write the outbox entry: one POST for all records, so they are marked together."""
    stamp = ninox_now()
    api.upsert_records(
        INVOICES,
        [{"id": rid, "fields": {"Status": status, "Emailed at": stamp}} for rid in record_ids],
    )
