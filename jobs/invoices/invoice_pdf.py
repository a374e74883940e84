"""The invoice PDF: the "invoice" template of wfray's render_pdf task.

The content follows the German invoice minimum (§14 Abs. 4 UStG): names and addresses of
supplier and customer, the supplier's tax number, invoice date, a unique invoice number,
quantity and description of every item, the delivery date, net amounts and VAT per rate,
and the gross total, in euros. Importing this module registers the template (templates
resolve by registered name only, never by import path).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any
from xml.sax.saxutils import escape

from pydantic import BaseModel, Field
from reportlab.lib import colors
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import Flowable, KeepTogether, Paragraph, Spacer, Table, TableStyle

from jobs.invoices.money import (
    VatGroup,
    format_eur,
    format_quantity,
    format_rate,
    line_net,
    to_cents,
    vat_groups,
)
from wfray.integrations.pdf import FRAME_WIDTH, PdfDocument, register_template, render_document
from wfray.integrations.typeface import BOLD, unicode_styles

TEMPLATE = "invoice"
ITEM_COLUMNS = (
    "Pos.",
    "Menge",
    "Einheit",
    "Beschreibung",
    "USt",
    "Einzelpreis netto",
    "Gesamt netto",
)
_ITEM_WIDTHS_MM = (12, 18, 17, 55, 14, 28, 30)
_TEXT_COLUMNS = frozenset({0, 3})  # left-aligned; the others hold numbers


class Party(BaseModel):
    """A supplier or customer: full name and postal address, one line per entry."""

    name: str = Field(min_length=1)
    address: list[str] = Field(min_length=1)


class Supplier(Party):
    """The invoicing company. `tax_id`: its Steuernummer or USt-IdNr. (e.g. DE123456789)."""

    tax_id: str = Field(min_length=1)
    contact: list[str] = Field(default_factory=list)


class InvoiceLine(BaseModel):
    """One item. Amounts are net euros; `vat_rate` is in percent (19, 7)."""

    description: str = Field(min_length=1)
    quantity: Decimal = Field(gt=0)
    unit: str = "Stk."
    unit_net: Decimal
    vat_rate: Decimal = Field(ge=0, le=100)

    @property
    def net(self) -> Decimal:
        return line_net(self.quantity, self.unit_net)


class InvoiceDocument(BaseModel):
    """Everything printed on an invoice.

    Attributes:
        number: the unique invoice number (never reused).
        delivery_date: date of delivery or service; with `delivery_until`, a period.
        reference: e.g. the order numbers the invoice covers.
    """

    number: str = Field(min_length=1)
    invoice_date: date
    delivery_date: date
    delivery_until: date | None = None
    supplier: Supplier
    customer: Party
    customer_number: str | None = None
    reference: str | None = None
    items: list[InvoiceLine] = Field(min_length=1)
    payment_terms: str = "Zahlbar innerhalb von 14 Tagen ohne Abzug."

    def groups(self) -> list[VatGroup]:
        return vat_groups((item.vat_rate, item.net) for item in self.items)

    @property
    def net_total(self) -> Decimal:
        return to_cents(sum((g.net for g in self.groups()), Decimal(0)))

    @property
    def vat_total(self) -> Decimal:
        return to_cents(sum((g.vat for g in self.groups()), Decimal(0)))

    @property
    def gross_total(self) -> Decimal:
        return self.net_total + self.vat_total


def german_date(day: date) -> str:
    return day.strftime("%d.%m.%Y")


def tax_id_label(tax_id: str) -> str:
    """'USt-IdNr.' for a VAT id (two letters first, e.g. DE123456789), else 'Steuernummer'."""
    return "USt-IdNr." if tax_id[:2].isalpha() else "Steuernummer"


class _Styles:
    def __init__(self) -> None:
        sheet = unicode_styles()
        self.body = ParagraphStyle("inv-body", parent=sheet["BodyText"], fontSize=9, leading=11)
        self.small = ParagraphStyle("inv-small", parent=self.body, fontSize=7.5, leading=9)
        self.right = ParagraphStyle("inv-right", parent=self.body, alignment=2)
        self.bold = ParagraphStyle("inv-bold", parent=self.body, fontName=BOLD)
        self.bold_right = ParagraphStyle("inv-bold-right", parent=self.bold, alignment=2)
        self.title = ParagraphStyle("inv-title", parent=sheet["Heading1"], fontSize=16)


def _p(text: object, style: ParagraphStyle) -> Paragraph:
    return Paragraph(escape(str(text)), style)


def _lines(lines: list[str], style: ParagraphStyle) -> Paragraph:
    return Paragraph("<br/>".join(escape(line) for line in lines), style)


def _letterhead(doc: InvoiceDocument, s: _Styles) -> list[Flowable]:
    supplier = doc.supplier
    sender = " · ".join([supplier.name, *supplier.address])
    tax = f"{tax_id_label(supplier.tax_id)}: {supplier.tax_id}"
    info = [
        ["Rechnungsnummer", doc.number],
        ["Rechnungsdatum", german_date(doc.invoice_date)],
        ["Leistungsdatum" if doc.delivery_until is None else "Leistungszeitraum", _supply(doc)],
    ]
    if doc.customer_number:
        info.append(["Kundennummer", doc.customer_number])
    if doc.reference:
        info.append(["Referenz", doc.reference])
    info_table = Table(
        [[_p(k, s.bold), _p(v, s.body)] for k, v in info], colWidths=[42 * mm, 44 * mm]
    )
    recipient = _lines([doc.customer.name, *doc.customer.address], s.body)
    head = Table(
        [[recipient, info_table]],
        colWidths=[FRAME_WIDTH - 86 * mm, 86 * mm],
        style=[("VALIGN", (0, 0), (-1, -1), "TOP"), ("LEFTPADDING", (0, 0), (0, 0), 0)],
    )
    return [
        _p(supplier.name, s.bold),
        _lines([sender, tax, *supplier.contact], s.small),
        Spacer(1, 10 * mm),
        head,
        Spacer(1, 8 * mm),
        _p(f"Rechnung {doc.number}", s.title),
        Spacer(1, 2 * mm),
    ]


def _supply(doc: InvoiceDocument) -> str:
    if doc.delivery_until is None:
        return german_date(doc.delivery_date)
    return f"{german_date(doc.delivery_date)} - {german_date(doc.delivery_until)}"


def _items(doc: InvoiceDocument, s: _Styles) -> Table:
    rows: list[list[Flowable]] = [
        [
            _p(title, s.bold if i in _TEXT_COLUMNS else s.bold_right)
            for i, title in enumerate(ITEM_COLUMNS)
        ]
    ]
    for position, item in enumerate(doc.items, start=1):
        rows.append(
            [
                _p(position, s.body),
                _p(format_quantity(item.quantity), s.right),
                _p(item.unit, s.right),
                _p(item.description, s.body),
                _p(format_rate(item.vat_rate), s.right),
                _p(format_eur(item.unit_net), s.right),
                _p(format_eur(item.net), s.right),
            ]
        )
    table = Table(rows, colWidths=[w * mm for w in _ITEM_WIDTHS_MM], repeatRows=1)
    table.setStyle(
        TableStyle(
            [
                ("LINEBELOW", (0, 0), (-1, 0), 0.8, colors.black),
                ("LINEBELOW", (0, 1), (-1, -1), 0.25, colors.lightgrey),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee")),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ]
        )
    )
    return table


def _totals_and_terms(doc: InvoiceDocument, s: _Styles) -> Flowable:
    rows: list[list[Flowable]] = []
    for group in doc.groups():
        rate = format_rate(group.rate)
        rows.append([_p(f"Nettobetrag {rate}", s.body), _p(format_eur(group.net), s.right)])
        rows.append([_p(f"USt {rate}", s.body), _p(format_eur(group.vat), s.right)])
    rows.append([_p("Summe netto", s.body), _p(format_eur(doc.net_total), s.right)])
    rows.append([_p("Summe USt", s.body), _p(format_eur(doc.vat_total), s.right)])
    rows.append([_p("Gesamtbetrag", s.bold), _p(format_eur(doc.gross_total), s.bold_right)])
    table = Table(rows, colWidths=[50 * mm, 32 * mm], hAlign="RIGHT")
    table.setStyle(TableStyle([("LINEABOVE", (0, -1), (-1, -1), 0.8, colors.black)]))
    # the terms stay with the totals, so no page carries them alone
    return KeepTogether(
        [Spacer(1, 4 * mm), table, Spacer(1, 8 * mm), _p(doc.payment_terms, s.body)]
    )


def invoice_template(data: Mapping[str, Any]) -> list[Flowable]:
    """The flowables of one invoice; `data` is an InvoiceDocument as JSON-like values."""
    doc = InvoiceDocument.model_validate(data)
    s = _Styles()
    return [
        *_letterhead(doc, s),
        _items(doc, s),
        _totals_and_terms(doc, s),
    ]


def render_invoice(doc: InvoiceDocument) -> PdfDocument:
    """The invoice as a PDF, byte-identical for the same document."""
    return render_document(
        TEMPLATE,
        doc.model_dump(mode="json"),
        title=f"Rechnung {doc.number}",
        author=doc.supplier.name,
    )


def pdf_filename(doc: InvoiceDocument) -> str:
    return f"{doc.number}.pdf"


register_template(TEMPLATE, invoice_template)
