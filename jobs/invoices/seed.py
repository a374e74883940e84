"""Seed data for the local Ninox server: the invoicing schema and a realistic, repeatable data set.

    state = build_state(seed=7)          # same seed (and `today`) -> identical records

The schema is that of `shared/ninox.md` section 8: Customers (A), Products (B), Orders (C),
OrderItems (D), Invoices (E), InvoiceLines (F), with the field names listed there. Prices are
JSON numbers with at most two decimals (whole cents), so `Decimal(str(x))` is exact. No
invoices are seeded: creating them is the workflow's job.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from jobs.invoices.ninox_schema import FieldSpec, TableSpec
from jobs.invoices.ninox_store import NinoxState

TEAM_ID = "wfrayDemoTeam01"
TEAM_NAME = "wfray demo"
DATABASE_ID = "invoicing01"
DATABASE_NAME = "Invoicing"
DEFAULT_TODAY = date(2025, 11, 28)

ORDER_STATUSES = ("new", "confirmed", "shipped", "delivered", "cancelled")
INVOICE_STATUSES = ("issued", "pdf_ready", "emailed", "sent_weekly", "paid", "cancelled")
DELIVERY_CHOICES = ("immediate", "weekly")


def _fields(
    *specs: tuple[str, str] | tuple[str, str, tuple[str, ...] | str],
) -> tuple[FieldSpec, ...]:
    """Field specs with ids A, B, C, ... in declaration order (fewer than 27 per table)."""
    out = []
    for index, spec in enumerate(specs):
        name, kind, *extra = spec
        field_id = chr(ord("A") + index)
        if kind == "choice":
            out.append(FieldSpec(field_id, name, kind, choices=tuple(extra[0])))
        elif kind == "ref":
            out.append(FieldSpec(field_id, name, kind, ref_table=str(extra[0])))
        else:
            out.append(FieldSpec(field_id, name, kind))
    return tuple(out)


SCHEMA: tuple[TableSpec, ...] = (
    TableSpec(
        "A",
        "Customers",
        _fields(
            ("Name", "string"),
            ("Email", "email"),
            ("Street", "string"),
            ("ZIP", "string"),
            ("City", "string"),
            ("Country", "string"),
            ("USt-IdNr.", "string"),
            ("Payment days", "number"),
            ("Invoice delivery", "choice", DELIVERY_CHOICES),
        ),
    ),
    TableSpec(
        "B",
        "Products",
        _fields(
            ("SKU", "string"),
            ("Name", "string"),
            ("Unit", "string"),
            ("Unit price net", "number"),
            ("VAT rate %", "number"),
            ("Active", "boolean"),
        ),
    ),
    TableSpec(
        "C",
        "Orders",
        _fields(
            ("Order no", "string"),
            ("Customer", "ref", "A"),
            ("Order date", "date"),
            ("Status", "choice", ORDER_STATUSES),
            ("Delivered on", "date"),
            ("Invoice", "ref", "E"),
            ("Invoiced", "boolean"),
        ),
    ),
    TableSpec(
        "D",
        "OrderItems",
        _fields(
            ("Order", "ref", "C"),
            ("Product", "ref", "B"),
            ("Quantity", "number"),
            ("Unit price override", "number"),
            ("Discount %", "number"),
        ),
    ),
    TableSpec(
        "E",
        "Invoices",
        _fields(
            ("Invoice no", "string"),
            ("Customer", "ref", "A"),
            ("Invoice date", "date"),
            ("Service date", "date"),
            ("Net", "number"),
            ("VAT", "number"),
            ("Gross", "number"),
            ("Status", "choice", INVOICE_STATUSES),
            ("Idempotency key", "string"),
            ("PDF", "file"),
            ("Emailed at", "timestamp"),
        ),
    ),
    TableSpec(
        "F",
        "InvoiceLines",
        _fields(
            ("Invoice", "ref", "E"),
            ("Order", "ref", "C"),
            ("Position", "number"),
            ("Description", "string"),
            ("Quantity", "number"),
            ("Unit", "string"),
            ("Unit net", "number"),
            ("VAT rate %", "number"),
            ("Line net", "number"),
        ),
    ),
)

_FIRST: tuple[str, ...] = (
    "Anna",
    "Lukas",
    "Sophie",
    "Jonas",
    "Marie",
    "Felix",
    "Lena",
    "Paul",
    "Clara",
    "Max",
)
_FIRST += ("Hannah", "Leon", "Emma", "Moritz", "Greta", "Tobias", "Jana", "Stefan", "Ute", "Jörg")
_LAST: tuple[str, ...] = (
    "Müller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Meyer",
    "Wagner",
    "Becker",
)
_LAST += ("Schulz", "Hoffmann", "Koch", "Richter", "Klein", "Wolf", "Schröder", "Neumann")
_TRADES = ("Bäckerei", "Café", "Buchhandlung", "Praxis", "Kanzlei", "Werkstatt", "Atelier")
_LEGAL = ("GmbH", "KG", "e.K.", "AG", "GbR", "UG (haftungsbeschränkt)")
_STREETS: tuple[str, ...] = (
    "Hauptstraße",
    "Bahnhofstraße",
    "Lindenweg",
    "Schillerstraße",
    "Gartenstraße",
)
_STREETS += ("Goethestraße", "Am Markt", "Kirchplatz", "Rosenweg", "Industriestraße")
_CITIES = (
    ("10115", "Berlin"),
    ("20095", "Hamburg"),
    ("80331", "München"),
    ("50667", "Köln"),
    ("60311", "Frankfurt am Main"),
    ("70173", "Stuttgart"),
    ("40213", "Düsseldorf"),
    ("04109", "Leipzig"),
    ("01067", "Dresden"),
    ("90402", "Nürnberg"),
    ("28195", "Bremen"),
    ("30159", "Hannover"),
)
# (name, unit, lowest and highest net price in cents, VAT rate %): 7 % for food and books.
_PRODUCTS = (
    ("Kaffeebohnen Espresso 1 kg", "Packung", 1290, 2490, 7),
    ("Bio-Tee Earl Grey 250 g", "Packung", 450, 990, 7),
    ("Hafermilch Barista 1 l", "Karton", 179, 299, 7),
    ("Dinkelkekse 400 g", "Packung", 249, 499, 7),
    ("Fachbuch Buchhaltung", "Stück", 2990, 5990, 7),
    ("Wandkalender 2026", "Stück", 1290, 2490, 7),
    ("Mineralwasser 12 x 0,75 l", "Kiste", 599, 1099, 7),
    ("Honig aus der Region 500 g", "Glas", 690, 1290, 7),
    ("Druckerpapier A4 500 Blatt", "Paket", 499, 899, 19),
    ("Toner schwarz", "Stück", 3990, 8990, 19),
    ("USB-C Kabel 2 m", "Stück", 899, 1999, 19),
    ("Bürostuhl Ergo", "Stück", 18900, 34900, 19),
    ("Schreibtischlampe LED", "Stück", 2990, 6990, 19),
    ("Ordner breit, blau", "Stück", 249, 499, 19),
    ("Kugelschreiber 10er", "Packung", 399, 899, 19),
    ("Whiteboard 90 x 60 cm", "Stück", 4990, 8990, 19),
    ("Monitor 27 Zoll", "Stück", 17900, 29900, 19),
    ("Tastatur kabellos", "Stück", 2990, 5990, 19),
    ("Maus ergonomisch", "Stück", 1990, 4490, 19),
    ("Headset Büro", "Stück", 3990, 8990, 19),
    ("Kaffeemaschine Filter", "Stück", 4990, 12900, 19),
    ("Reinigungstücher 100er", "Packung", 299, 699, 19),
    ("Briefumschläge DIN lang 50er", "Packung", 349, 699, 19),
    ("Haftnotizen gelb 12er", "Packung", 499, 999, 19),
    ("Aktenvernichter P-4", "Stück", 8990, 15900, 19),
    ("Laminiergerät A4", "Stück", 3490, 6990, 19),
    ("Etikettendrucker", "Stück", 6990, 12900, 19),
    ("Netzwerkkabel 5 m", "Stück", 599, 1299, 19),
    ("Wartungsvertrag Drucker", "Monat", 1990, 4990, 19),
    ("Schulung Datenschutz", "Stunde", 6500, 9500, 19),
)


@dataclass(frozen=True, slots=True)
class SeedData:
    """The `fields` of every seeded record, per table name, in id order (ids count from 1)."""

    customers: list[dict[str, Any]]
    products: list[dict[str, Any]]
    orders: list[dict[str, Any]]
    order_items: list[dict[str, Any]]


def _money(cents: int) -> float:
    # A float with at most two decimals prints as exactly those digits in JSON.
    return round(cents / 100, 2)


def _customer(rng: random.Random, index: int) -> dict[str, Any]:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    company = rng.random() < 0.6
    name = f"{rng.choice(_TRADES)} {last} {rng.choice(_LEGAL)}" if company else f"{first} {last}"
    zip_code, city = rng.choice(_CITIES)
    slug = last.lower().replace("ü", "ue").replace("ö", "oe").replace("ä", "ae")
    fields: dict[str, Any] = {
        "Name": name,
        "Email": f"{first.lower().replace('ö', 'oe')}.{slug}{index}@kunde{index}.example",
        "Street": f"{rng.choice(_STREETS)} {rng.randint(1, 120)}",
        "ZIP": zip_code,
        "City": city,
        "Country": "Deutschland",
        "Payment days": rng.choice((14, 14, 30)),
        "Invoice delivery": "weekly" if rng.random() < 0.4 else "immediate",
    }
    if company:
        fields["USt-IdNr."] = f"DE{rng.randint(100_000_000, 999_999_999)}"
    return fields


def _product(rng: random.Random, index: int) -> dict[str, Any]:
    name, unit, low, high, vat = _PRODUCTS[index % len(_PRODUCTS)]
    return {
        "SKU": f"P-{1001 + index}",
        "Name": name,
        "Unit": unit,
        "Unit price net": _money(rng.randint(low, high)),
        "VAT rate %": vat,
        "Active": rng.random() > 0.07,
    }


def _order(rng: random.Random, number: int, customers: int, today: date) -> dict[str, Any]:
    ordered = today - timedelta(days=rng.randint(1, 60))
    status = rng.choices(ORDER_STATUSES, weights=(12, 13, 15, 50, 10))[0]
    fields: dict[str, Any] = {
        "Order no": f"B-{today.year}-{number:05d}",
        "Customer": rng.randint(1, customers),
        "Order date": ordered.isoformat(),
        "Status": status,
    }
    if status == "delivered":
        delivered = min(today, ordered + timedelta(days=rng.randint(1, 6)))
        fields["Delivered on"] = delivered.isoformat()
    return fields


def _items(
    rng: random.Random, order_id: int, products: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    active = [pid for pid, p in enumerate(products, start=1) if p["Active"]]
    items = []
    for product_id in sorted(rng.sample(active, rng.randint(1, 5))):
        item: dict[str, Any] = {"Order": order_id, "Product": product_id}
        item["Quantity"] = rng.choice((1, 1, 1, 2, 2, 3, 5, 10))
        if rng.random() < 0.04:
            price = products[product_id - 1]["Unit price net"]
            item["Unit price override"] = _money(round(price * 90))
        if rng.random() < 0.12:
            item["Discount %"] = rng.choice((5, 10))
        items.append(item)
    return items


def seed_data(
    seed: int,
    customers: int = 20,
    products: int = 30,
    orders: int = 300,
    today: date = DEFAULT_TODAY,
) -> SeedData:
    """Generate every record's fields from `seed` alone (and `today`, the newest order date)."""
    rng = random.Random(seed)
    customer_rows = [_customer(rng, i + 1) for i in range(customers)]
    product_rows = [_product(rng, i) for i in range(products)]
    order_rows = [_order(rng, n + 1, customers, today) for n in range(orders)]
    order_rows.sort(key=lambda o: (o["Order date"], o["Order no"]))
    for n, order in enumerate(order_rows, start=1):
        order["Order no"] = f"B-{today.year}-{n:05d}"  # numbered in date order, like a shop
    item_rows = [item for oid in range(1, orders + 1) for item in _items(rng, oid, product_rows)]
    return SeedData(customer_rows, product_rows, order_rows, item_rows)


def build_state(
    seed: int = 7,
    *,
    today: date = DEFAULT_TODAY,
    clock: Callable[[], datetime] | None = None,
    fault_seed: int = 0,
) -> NinoxState:
    """A `NinoxState` with the invoicing schema and the data of `seed_data(seed, today=today)`."""
    state = NinoxState(clock, fault_seed=fault_seed) if clock else NinoxState(fault_seed=fault_seed)
    state.add_team(TEAM_ID, TEAM_NAME)
    state.add_database(TEAM_ID, DATABASE_ID, DATABASE_NAME)
    for table in SCHEMA:
        state.add_table(TEAM_ID, DATABASE_ID, table)
    data = seed_data(seed, today=today)
    for table_name, rows in (
        ("Customers", data.customers),
        ("Products", data.products),
        ("Orders", data.orders),
        ("OrderItems", data.order_items),
    ):
        state.upsert(TEAM_ID, DATABASE_ID, table_name, [{"fields": row} for row in rows])
    return state
