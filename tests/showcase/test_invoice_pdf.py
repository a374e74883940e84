"""The invoice PDF, read back with pypdf and checked against totals computed here."""

from __future__ import annotations

import io
import re
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from pydantic import ValidationError
from pypdf import PdfReader

from jobs.invoices.invoice_pdf import (
    InvoiceDocument,
    invoice_template,
    pdf_filename,
    render_invoice,
)
from jobs.invoices.money import (
    format_eur,
    format_quantity,
    format_rate,
    to_cents,
    vat_groups,
)
from wfray.domain.errors import NonRetryableError
from wfray.integrations.pdf import PdfDocument, render_pdf

SUPPLIER = {
    "name": "Müller & Söhne Feinkost GmbH",
    "address": ["Hauptstraße 5", "50667 Köln"],
    "tax_id": "DE123456789",
    "contact": ["billing@mueller-feinkost.example"],
}
CUSTOMER = {"name": "Café Lindenhof Anna Berg", "address": ["Lindenweg 2", "80331 München"]}
# (description, quantity, unit net, VAT %): half-cent results on purpose, to test rounding.
ITEMS = [
    ("Espressobohnen Bio 1 kg", "3", "18.99", "7"),
    ("Siebträgermaschine <Pro>", "1", "1249.50", "19"),
    ("Milchschaum-Kännchen", "2", "12.345", "19"),
    ("Kochbuch Italienisch", "1", "24.90", "7"),
    ("Entkalker", "2.5", "3.33", "19"),
]


def _eur(amount: Decimal) -> str:
    """Euro formatting, written independently of jobs.invoices.money."""
    text = f"{amount:,.2f}".replace(",", " ").replace(".", ",").replace(" ", ".")
    return f"{text} €"


def _cents(amount: Decimal) -> Decimal:
    return amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _expected_totals(items: list[tuple[str, str, str, str]]) -> dict[str, Any]:
    net: dict[int, Decimal] = {}
    for _, quantity, unit, rate in items:
        net[int(rate)] = net.get(int(rate), Decimal(0)) + _cents(Decimal(quantity) * Decimal(unit))
    vat = {rate: _cents(amount * rate / 100) for rate, amount in net.items()}
    gross = sum(net.values()) + sum(vat.values())
    return {"net": net, "vat": vat, "gross": gross}


def _document(items: list[tuple[str, str, str, str]], number: str = "RE-2025-000123") -> Any:
    return {
        "number": number,
        "invoice_date": "2025-03-10",
        "delivery_date": "2025-03-07",
        "supplier": SUPPLIER,
        "customer": CUSTOMER,
        "customer_number": "K-00042",
        "reference": "Bestellungen 1001, 1002",
        "items": [
            {"description": d, "quantity": q, "unit_net": u, "vat_rate": r} for d, q, u, r in items
        ],
    }


def _pages(pdf: PdfDocument) -> list[str]:
    reader = PdfReader(io.BytesIO(pdf.content()))
    # table cells come out on separate lines: compare with whitespace collapsed
    return [" ".join(page.extract_text().split()) for page in reader.pages]


def test_invoice_shows_every_legally_required_field_and_correct_totals() -> None:
    doc = InvoiceDocument.model_validate(_document(ITEMS))
    pdf = render_invoice(doc)
    (text,) = _pages(pdf)

    for expected in [
        "Rechnung RE-2025-000123",
        "Rechnungsnummer RE-2025-000123",
        "Müller & Söhne Feinkost GmbH · Hauptstraße 5 · 50667 Köln",
        "USt-IdNr.: DE123456789",
        "Café Lindenhof Anna Berg Lindenweg 2 80331 München",
        "Rechnungsdatum 10.03.2025",
        "Leistungsdatum 07.03.2025",
        "Kundennummer K-00042",
    ]:
        assert expected in text, expected
    for position, (description, quantity, unit, rate) in enumerate(ITEMS, start=1):
        line = _cents(Decimal(quantity) * Decimal(unit))
        shown_quantity = quantity.replace(".", ",")
        unit_net = _eur(_cents(Decimal(unit)))
        row = f"{position} {shown_quantity} Stk. {description} {rate} % {unit_net} {_eur(line)}"
        assert row in text, row

    totals = _expected_totals(ITEMS)
    assert totals["net"] == {7: Decimal("81.87"), 19: Decimal("1282.52")}
    for percent in (19, 7):
        assert f"Nettobetrag {percent} % {_eur(totals['net'][percent])}" in text
        assert f"USt {percent} % {_eur(totals['vat'][percent])}" in text
    assert f"Summe netto {_eur(sum(totals['net'].values()))}" in text
    assert f"Gesamtbetrag {_eur(totals['gross'])}" in text
    assert "Gesamtbetrag 1.613,80 €" in text  # 1.364,39 net + 243,68 + 5,73 VAT
    assert doc.gross_total == totals["gross"]


def test_same_invoice_gives_identical_bytes() -> None:
    doc = InvoiceDocument.model_validate(_document(ITEMS))
    assert render_invoice(doc).content() == render_invoice(doc).content()
    other = InvoiceDocument.model_validate(_document(ITEMS, number="RE-2025-000124"))
    assert render_invoice(other).sha256 != render_invoice(doc).sha256
    assert pdf_filename(doc) == "RE-2025-000123.pdf"


def test_long_invoice_spans_pages_with_the_item_header_repeated() -> None:
    items = [
        (f"Artikel Nr. {n:03d} Feinkost", str(1 + n % 4), f"{n}.15", "19" if n % 3 else "7")
        for n in range(1, 61)
    ]
    pdf = render_invoice(InvoiceDocument.model_validate(_document(items)))
    pages = _pages(pdf)
    assert pdf.pages == len(pages)
    with_items = [number for number, text in enumerate(pages, start=1) if "Artikel Nr." in text]
    assert len(with_items) >= 2
    for number in with_items:
        header = "Pos. Menge Einheit Beschreibung USt Einzelpreis netto Gesamt netto"
        assert header in pages[number - 1], f"page {number} lacks the item header"
    for number, text in enumerate(pages, start=1):
        assert f"Rechnung RE-2025-000123 - Seite {number}" in text
    everything = " ".join(pages)
    for description, *_ in items:
        assert everything.count(description) == 1, description
    totals = _expected_totals(items)
    assert f"Gesamtbetrag {_eur(totals['gross'])}" in pages[-1]
    for rate in (19, 7):
        assert f"USt {rate} % {_eur(totals['vat'][rate])}" in pages[-1]


def test_render_pdf_task_takes_the_invoice_as_json_by_its_registered_name_only() -> None:
    data = InvoiceDocument.model_validate(_document(ITEMS)).model_dump(mode="json")
    by_name = render_pdf("invoice", data, title="Rechnung RE-2025-000123")
    assert "Gesamtbetrag 1.613,80 €" in _pages(by_name)[0]
    with pytest.raises(NonRetryableError, match="registered"):
        render_pdf("jobs.invoices.invoice_pdf:invoice_template", data, title="x")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"items": []}, "items"),
        ({"number": ""}, "number"),
        ({"invoice_date": "10.03.2025"}, "invoice_date"),
        ({"supplier": {**SUPPLIER, "tax_id": ""}}, "supplier.tax_id"),
        (
            {"items": [{"description": "x", "quantity": "0", "unit_net": "1", "vat_rate": "19"}]},
            "quantity",
        ),
        (
            {"items": [{"description": "x", "quantity": "1", "unit_net": "1", "vat_rate": "-7"}]},
            "vat_rate",
        ),
    ],
)
def test_incomplete_invoice_data_is_refused_naming_the_field(
    change: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ValidationError, match=re.escape(expected)):
        invoice_template({**_document(ITEMS), **change})


@pytest.mark.parametrize(
    ("amount", "cents"),
    [("2.345", "2.35"), ("2.344", "2.34"), ("-2.345", "-2.35"), ("0.005", "0.01"), ("7", "7.00")],
)
def test_to_cents_rounds_half_up(amount: str, cents: str) -> None:
    assert to_cents(Decimal(amount)) == Decimal(cents)


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        ("1234.5", "1.234,50 €"),
        ("0.5", "0,50 €"),
        ("1234567.891", "1.234.567,89 €"),
        ("-3", "-3,00 €"),
        ("999.995", "1.000,00 €"),
    ],
)
def test_format_eur(amount: str, text: str) -> None:
    assert format_eur(Decimal(amount)) == text


def test_quantities_and_rates_drop_needless_decimals() -> None:
    assert format_quantity(Decimal("3.000")) == "3"
    assert format_quantity(Decimal("2.50")) == "2,5"
    assert format_quantity(Decimal("1250")) == "1.250"
    assert format_rate(Decimal("19.00")) == "19 %"
    assert format_rate(Decimal("5.5")) == "5,5 %"


def test_vat_is_computed_per_rate_on_the_rate_net_not_per_line() -> None:
    # 7 % of 0.07 is 0.0049: 0.00 per line, but 7 % of the rate's net 0.21 is 0.0147 -> 0.01
    lines = [(Decimal(19), Decimal("0.25"))] + [(Decimal(7), Decimal("0.07"))] * 3
    groups = vat_groups(lines)
    assert [(g.rate, g.net, g.vat) for g in groups] == [
        (Decimal(19), Decimal("0.25"), Decimal("0.05")),
        (Decimal(7), Decimal("0.21"), Decimal("0.01")),
    ]
    assert groups[0].gross == Decimal("0.30")
    with pytest.raises(ValueError, match="negative"):
        vat_groups([(Decimal(-1), Decimal(1))])


def test_delivery_period_and_tax_number_labels() -> None:
    data = {
        **_document(ITEMS),
        "delivery_until": "2025-03-09",
        "supplier": {**SUPPLIER, "tax_id": "214/5678/1234"},
    }
    doc = InvoiceDocument.model_validate(data)
    assert doc.delivery_until == date(2025, 3, 9)
    (text,) = _pages(render_invoice(doc))
    assert "Leistungszeitraum 07.03.2025 - 09.03.2025" in text
    assert "Steuernummer: 214/5678/1234" in text


NAMES_IN_ANY_ALPHABET = [
    ("Polish", "Zakład Łódź Żółć", ["ul. Piotrkowska 3", "90-001 Łódź"]),
    ("Czech", "Příliš Žluťoučký Kůň s.r.o.", ["Náměstí 1", "602 00 Brno"]),
    ("Danish", "Ærø Bageri Ødegård", ["Vestergade 4", "5970 Ærøskøbing"]),
    ("Greek", "Ελληνικά Τρόφιμα Α.Ε.", ["Οδός Ερμού 12", "105 63 Αθήνα"]),  # noqa: RUF001
    ("Cyrillic", "Кондитерская Москва", ["ул. Тверская 7", "125009 Москва"]),
]


@pytest.mark.parametrize(
    ("alphabet", "name", "address"),
    NAMES_IN_ANY_ALPHABET,
    ids=[n[0] for n in NAMES_IN_ANY_ALPHABET],
)
def test_customer_names_in_any_alphabet_print_and_read_back(
    alphabet: str, name: str, address: list[str]
) -> None:
    """The standard PDF fonts know Latin-1 only; the embedded DejaVu Sans prints them all."""
    data = {**_document(ITEMS), "customer": {"name": name, "address": address}}
    data["items"][0]["description"] = f"{name}: Sonderposten"
    (text,) = _pages(render_invoice(InvoiceDocument.model_validate(data)))
    for expected in [name, *address, f"{name}: Sonderposten"]:
        assert " ".join(expected.split()) in text, (alphabet, expected, text[:400])
    again = render_invoice(InvoiceDocument.model_validate(data))
    assert again.content() == render_invoice(InvoiceDocument.model_validate(data)).content()
