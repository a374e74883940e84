"""What the daily and the weekly invoice workflows share: records as models, Ninox access.

The workflows themselves, with their schedules, are in `daily.py` (invoice creation, one
child run per customer) and `weekly.py` (grouped e-mail delivery).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from jobs.invoices.invoice_pdf import InvoiceDocument, InvoiceLine, Party
from jobs.invoices.money import HUNDRED, to_cents
from jobs.invoices.ninox_client import NinoxClient, NinoxError, NinoxRecord, as_step_error
from jobs.invoices.settings import InvoiceSettings
from wfray.domain.policy import RetryPolicy

CUSTOMERS, PRODUCTS, ORDERS, ORDER_ITEMS = "Customers", "Products", "Orders", "OrderItems"
INVOICES, INVOICE_LINES = "Invoices", "InvoiceLines"
NINOX_TIMESTAMP = "%Y-%m-%dT%H:%M:%S"  # UTC, no zone suffix, as Ninox writes it

# Ninox calls: transient faults (429 honouring Retry-After, 5xx, timeouts) are retried
# quickly; permanent ones (400, 401, 404) arrive as NonRetryableError and stop at once.
NINOX_RETRY = RetryPolicy(max_attempts=6, initial_delay_s=0.3, backoff=2.0, max_delay_s=5.0)
# Rendering a PDF fails only on bad data, which a retry cannot fix; one more try covers a
# worker lost mid-render (those have their own cap anyway).
PDF_RETRY = RetryPolicy(max_attempts=2, initial_delay_s=0.2)

Delivery = Literal["immediate", "weekly"]


class CustomerInfo(BaseModel):
    """A customer as invoices need it."""

    id: int
    name: str
    email: str | None = None
    address: list[str]
    vat_id: str | None = None
    payment_days: int = 14
    delivery: Delivery = "immediate"

    def party(self) -> Party:
        return Party(name=self.name, address=self.address)


class OrderRef(BaseModel):
    """An order as listed: enough to decide whether it is due for an invoice."""

    id: int
    number: str
    customer_id: int | None = None
    delivered_on: date | None = None
    invoice_id: int | None = None


class LineSnapshot(BaseModel):
    """An order item priced at invoicing time (product prices change later)."""

    order_id: int
    description: str
    quantity: Decimal
    unit: str
    unit_net: Decimal
    vat_rate: Decimal

    @property
    def net(self) -> Decimal:
        return to_cents(self.quantity * self.unit_net)


class PricedOrder(BaseModel):
    id: int
    number: str
    delivered_on: date
    lines: list[LineSnapshot]


class CustomerBatch(BaseModel):
    """The delivered, not yet invoiced orders of one customer: one invoice."""

    customer: CustomerInfo
    orders: list[PricedOrder]

    @property
    def order_ids(self) -> list[int]:
        return sorted(order.id for order in self.orders)

    @property
    def idempotency_key(self) -> str:
        return invoice_key(self.customer.id, self.order_ids)


def invoice_key(customer_id: int, order_ids: Iterable[int]) -> str:
    """The key stored on an Invoice record: the same customer and orders, the same key."""
    return f"invoice:{customer_id}:{','.join(str(i) for i in sorted(order_ids))}"


def invoice_number(prefix: str, year: int, value: int) -> str:
    """'RE-2026-000123' from the counter value 123."""
    return f"{prefix}-{year}-{value:06d}"


def today_in(settings: InvoiceSettings) -> date:
    return datetime.now(ZoneInfo(settings.timezone)).date()


def ninox_now() -> str:
    return datetime.now(UTC).strftime(NINOX_TIMESTAMP)


def decimal(value: Any) -> Decimal:
    """A Ninox number as a Decimal (the client already returns fractions as Decimal)."""
    return value if isinstance(value, Decimal) else Decimal(str(value))


@contextmanager
def ninox_session(settings: InvoiceSettings) -> Iterator[NinoxClient]:
    """A Ninox client whose errors leave the block as wfray step errors (retry or give up)."""
    with NinoxClient(settings.ninox.config()) as client:
        try:
            yield client
        except NinoxError as exc:
            raise as_step_error(exc) from exc


def customer_from(record: NinoxRecord) -> CustomerInfo:
    fields = record.fields
    street = fields.get("Street")
    city = " ".join(str(p) for p in (fields.get("ZIP"), fields.get("City")) if p)
    address = [str(line) for line in (street, city, fields.get("Country")) if line]
    return CustomerInfo(
        id=record.id,
        name=str(fields.get("Name") or f"Kunde {record.id}"),
        email=fields.get("Email") or None,
        address=address or ["(keine Anschrift)"],
        vat_id=fields.get("USt-IdNr.") or None,
        payment_days=int(fields.get("Payment days") or 14),
        delivery="weekly" if fields.get("Invoice delivery") == "weekly" else "immediate",
    )


def order_from(record: NinoxRecord) -> OrderRef:
    fields = record.fields
    delivered = fields.get("Delivered on")
    return OrderRef(
        id=record.id,
        number=str(fields.get("Order no") or record.id),
        customer_id=fields.get("Customer"),
        delivered_on=date.fromisoformat(delivered) if delivered else None,
        invoice_id=fields.get("Invoice"),
    )


def line_from(item: NinoxRecord, product: NinoxRecord) -> LineSnapshot:
    """Price one order item: the override if set, else the product's price, less discount."""
    fields, product_fields = item.fields, product.fields
    override = fields.get("Unit price override")
    unit_net = decimal(override if override is not None else product_fields["Unit price net"])
    description = str(product_fields.get("Name") or f"Artikel {product.id}")
    discount = fields.get("Discount %")
    if discount:
        unit_net = to_cents(unit_net * (HUNDRED - decimal(discount)) / HUNDRED)
        description += f" (abzgl. {discount} % Rabatt)"
    return LineSnapshot(
        order_id=int(fields["Order"]),
        description=description,
        quantity=decimal(fields.get("Quantity") or 1),
        unit=str(product_fields.get("Unit") or "Stk."),
        unit_net=unit_net,
        vat_rate=decimal(product_fields.get("VAT rate %") or 0),
    )


def build_document(
    settings: InvoiceSettings, batch: CustomerBatch, number: str, invoice_date: date
) -> InvoiceDocument:
    """The printed invoice for `batch` under `number`: same inputs, same document."""
    delivered = sorted(order.delivered_on for order in batch.orders)
    customer = batch.customer
    return InvoiceDocument(
        number=number,
        invoice_date=invoice_date,
        delivery_date=delivered[0],
        delivery_until=delivered[-1] if delivered[-1] != delivered[0] else None,
        supplier=settings.supplier,
        customer=customer.party(),
        customer_number=f"K-{customer.id:05d}",
        reference="Bestellungen " + ", ".join(o.number for o in batch.orders),
        items=[
            InvoiceLine(
                description=f"{line.description} (Bestellung {order.number})",
                quantity=line.quantity,
                unit=line.unit,
                unit_net=line.unit_net,
                vat_rate=line.vat_rate,
            )
            for order in batch.orders
            for line in order.lines
        ],
        payment_terms=f"Zahlbar innerhalb von {customer.payment_days} Tagen ohne Abzug.",
    )
