"""The daily invoice workflow on Ray, against the local Ninox server and an aiosmtpd server.

Every test starts from the same small seeded database (6 customers, 40 orders: 4 customers
want their invoices at once, 2 weekly) and checks the outcome in Ninox, in the PDFs (read
back with pypdf) and in the mailbox (.eml files of the SMTP sink).
"""

from __future__ import annotations

import io
import itertools
import os
import signal
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from jobs.invoices.daily import INVOICE_QUEUE, DailyInput, DailySummary, daily_invoices
from jobs.invoices.flows import CUSTOMERS, INVOICE_LINES, INVOICES, ORDER_ITEMS, ORDERS, PRODUCTS
from jobs.invoices.money import HUNDRED, format_eur, to_cents, vat_groups
from jobs.invoices.ninox_client import NinoxClient, NinoxConfig, NinoxRecord
from jobs.invoices.ninox_faults import FaultPlan, FaultRule
from jobs.invoices.ninox_schema import TableSpec
from jobs.invoices.ninox_server import ServerInfo, running_server
from jobs.invoices.ninox_store import NinoxState
from jobs.invoices.seed import DATABASE_ID, SCHEMA, TEAM_ID, seed_data
from jobs.invoices.settings import InvoiceSettings, NinoxTarget
from jobs.invoices.smtp_sink import SmtpSink, running_sink
from tests.integration.conftest import start_wfray
from wfray.application.client_commands import Pid
from wfray.domain.status import RunStatus
from wfray.integrations.email import SmtpSettings

API_KEY = "5d1e0c7a-showcase-test-key"
SEED = 4  # 6 customers with delivered orders: 1, 2, 5, 6 immediate; 3, 4 weekly
INVOICE_DATE = "2025-11-28"
RUN_TIMEOUT_S = 150


def small_state(seed: int = SEED) -> NinoxState:
    """The seeded invoicing database, smaller than the demo's so a run takes seconds."""
    state = NinoxState()
    state.add_team(TEAM_ID, "test")
    state.add_database(TEAM_ID, DATABASE_ID, "Invoicing")
    tables: tuple[TableSpec, ...] = SCHEMA
    for table in tables:
        state.add_table(TEAM_ID, DATABASE_ID, table)
    data = seed_data(seed, customers=6, products=30, orders=40)
    for name, rows in (
        (CUSTOMERS, data.customers),
        (PRODUCTS, data.products),
        (ORDERS, data.orders),
        (ORDER_ITEMS, data.order_items),
    ):
        state.upsert(TEAM_ID, DATABASE_ID, name, [{"fields": row} for row in rows])
    return state


@pytest.fixture(name="wf", scope="module")
def wf_fixture(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    client = start_wfray(tmp_path_factory.mktemp("invoices"), queues=[INVOICE_QUEUE])
    try:
        yield client
    finally:
        client.shutdown()


@pytest.fixture(name="server")
def server_fixture() -> Iterator[ServerInfo]:
    with running_server(state=small_state(), api_key=API_KEY) as info:
        yield info


@pytest.fixture(name="sink")
def sink_fixture(tmp_path: Path) -> Iterator[SmtpSink]:
    with running_sink(tmp_path / "mail") as running:
        yield running


@pytest.fixture(name="settings")
def settings_fixture(server: ServerInfo, sink: SmtpSink) -> InvoiceSettings:
    return InvoiceSettings(
        ninox=NinoxTarget(
            base_url=server.base_url, api_key=API_KEY, team_id=TEAM_ID, database_id=DATABASE_ID
        ),
        smtp=SmtpSettings(host=sink.host, port=sink.port, timeout_s=5),
        # every test has its own Ninox database but shares the module's wfray: its own
        # claims too (the same customers and orders would otherwise find the last test's)
        claim_scope=f"test-{uuid.uuid4().hex[:12]}",
    )


@pytest.fixture(name="ninox")
def ninox_fixture(settings: InvoiceSettings) -> Iterator[NinoxClient]:
    config: NinoxConfig = settings.ninox.config()
    with NinoxClient(config) as client:
        yield client


def run_daily(wf: Any, settings: InvoiceSettings) -> DailySummary:
    run = wf.submit(daily_invoices, DailyInput(settings=settings, invoice_date=INVOICE_DATE))
    return DailySummary.model_validate(run.result(timeout=RUN_TIMEOUT_S))


def live_invoices(ninox: NinoxClient) -> list[NinoxRecord]:
    return [r for r in ninox.list_records(INVOICES) if r.fields.get("Status") != "cancelled"]


def due_orders_by_customer(ninox: NinoxClient) -> dict[int, list[int]]:
    due: dict[int, list[int]] = defaultdict(list)
    for order in ninox.list_records(ORDERS, filters={"Status": "delivered"}):
        due[int(order.fields["Customer"])].append(order.id)
    return {cid: sorted(ids) for cid, ids in due.items()}


def expected_amounts(ninox: NinoxClient, order_ids: list[int]) -> tuple[list[Any], Decimal]:
    """VAT groups and gross of these orders, priced from the raw Ninox records."""
    products = {p.id: p.fields for p in ninox.list_records(PRODUCTS)}
    lines = []
    for item in ninox.list_records(ORDER_ITEMS):
        if item.fields["Order"] not in order_ids:
            continue
        product = products[item.fields["Product"]]
        unit = Decimal(str(item.fields.get("Unit price override", product["Unit price net"])))
        if item.fields.get("Discount %"):
            unit = to_cents(unit * (HUNDRED - Decimal(item.fields["Discount %"])) / HUNDRED)
        net = to_cents(Decimal(item.fields["Quantity"]) * unit)
        lines.append((Decimal(product["VAT rate %"]), net))
    groups = vat_groups(lines)
    return groups, sum((g.gross for g in groups), Decimal(0))


def assert_invoiced_exactly_once(ninox: NinoxClient) -> dict[int, NinoxRecord]:
    """Every delivered order sits on one live invoice of its customer; keys are unique.

    Returns the live invoices by customer id.
    """
    invoices = live_invoices(ninox)
    keys = Counter(r.fields["Idempotency key"] for r in invoices)
    assert all(n == 1 for n in keys.values()), keys
    numbers = Counter(r.fields["Invoice no"] for r in ninox.list_records(INVOICES))
    assert all(n == 1 for n in numbers.values()), f"an invoice number was reused: {numbers}"
    by_customer = {int(r.fields["Customer"]): r for r in invoices}
    assert len(by_customer) == len(invoices), "a customer has two live invoices"
    due = due_orders_by_customer(ninox)
    assert sorted(by_customer) == sorted(due)
    for customer_id, order_ids in due.items():
        invoice = by_customer[customer_id]
        linked = ninox.list_records(ORDERS, filters={"Invoice": invoice.id})
        assert sorted(o.id for o in linked) == order_ids
        assert invoice.fields["Idempotency key"] == (
            f"invoice:{customer_id}:{','.join(map(str, order_ids))}"
        )
    return by_customer


def mails_by_number(sink: SmtpSink) -> Counter[str]:
    return Counter(m.parsed()["X-Invoice-No"] for m in sink.messages())


def immediate_customers(ninox: NinoxClient) -> set[int]:
    return {c.id for c in ninox.list_records(CUSTOMERS, filters={"Invoice delivery": "immediate"})}


def assert_mailed_once(ninox: NinoxClient, sink: SmtpSink, invoices: dict[int, NinoxRecord]):
    """Immediate customers got exactly one mail per invoice; weekly ones none yet."""
    immediate = immediate_customers(ninox)
    expected = {str(r.fields["Invoice no"]) for c, r in invoices.items() if c in immediate}
    assert mails_by_number(sink) == Counter({number: 1 for number in expected})
    for customer_id, record in invoices.items():
        wanted = "emailed" if customer_id in immediate else "pdf_ready"
        assert record.fields["Status"] == wanted, (customer_id, record.fields)


def test_invoices_pdfs_and_mails_match_the_orders(
    wf: Any, settings: InvoiceSettings, ninox: NinoxClient, sink: SmtpSink
) -> None:
    summary = run_daily(wf, settings)

    invoices = assert_invoiced_exactly_once(ninox)
    assert summary.customers == 6 and summary.failed == []
    assert summary.orders_due == sum(len(ids) for ids in due_orders_by_customer(ninox).values())
    assert_mailed_once(ninox, sink, invoices)
    due = due_orders_by_customer(ninox)
    for customer_id, record in invoices.items():
        number = str(record.fields["Invoice no"])
        assert number.startswith("RE-2025-")
        pdf = ninox.download_file(INVOICES, record.id, f"{number}.pdf")
        text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
        groups, gross = expected_amounts(ninox, due[customer_id])
        assert f"Rechnung {number}" in text
        assert format_eur(gross) in text
        assert Decimal(str(record.fields["Gross"])) == gross
        for group in groups:
            assert format_eur(group.net) in text and format_eur(group.vat) in text
        lines = ninox.list_records(INVOICE_LINES, filters={"Invoice": record.id})
        items = [
            i for i in ninox.list_records(ORDER_ITEMS) if i.fields["Order"] in due[customer_id]
        ]
        assert len(lines) == len(items)
    for mail in sink.messages():
        parsed = mail.parsed()
        (attachment,) = list(parsed.iter_attachments())
        number = parsed["X-Invoice-No"]
        assert attachment.get_filename() == f"{number}.pdf"
        assert parsed["Message-ID"] == f"<{number}.inv@billing.example>"
        record = next(r for r in invoices.values() if r.fields["Invoice no"] == number)
        assert attachment.get_content() == ninox.download_file(INVOICES, record.id, f"{number}.pdf")


def test_a_second_run_creates_and_sends_nothing(
    wf: Any, settings: InvoiceSettings, ninox: NinoxClient, sink: SmtpSink
) -> None:
    run_daily(wf, settings)
    before = ninox.list_records(INVOICES)
    mails = len(sink.messages())

    again = run_daily(wf, settings)

    assert again.customers == 0 and again.invoiced == []
    assert ninox.list_records(INVOICES) == before
    assert len(sink.messages()) == mails


def test_two_runs_at_the_same_time_invoice_each_order_once(
    wf: Any, settings: InvoiceSettings, ninox: NinoxClient, sink: SmtpSink
) -> None:
    payload = DailyInput(settings=settings, invoice_date=INVOICE_DATE)
    runs = [wf.submit(daily_invoices, payload) for _ in range(2)]
    views = wf.wait([r.run_id for r in runs], timeout=RUN_TIMEOUT_S)
    assert {v.status for v in views} == {RunStatus.COMPLETED}

    invoices = assert_invoiced_exactly_once(ninox)
    assert_mailed_once(ninox, sink, invoices)
    # a customer's steps run one at a time across both runs (INVOICE_QUEUE's per-key limit):
    # the second run's claim finds the first run's invoice, so none is created and voided
    assert ninox.list_records(INVOICES, filters={"Status": "cancelled"}) == []
    spans: dict[str, list[tuple[Any, Any]]] = defaultdict(list)
    for run in runs:
        for child in run.detail().children:
            for attempt in wf.detail(child.run_id).attempts:
                spans[child.concurrency_key].append((attempt.started_at, attempt.finished_at))
    assert sorted(spans) == sorted(f"customer:{cid}" for cid in invoices)
    for same_customer in spans.values():
        ordered = sorted(same_customer)
        assert all(end <= start for (_, end), (start, _) in itertools.pairwise(ordered))


def test_a_run_whose_coordinator_is_killed_halfway_finishes_without_duplicates(
    wf: Any, settings: InvoiceSettings, ninox: NinoxClient, sink: SmtpSink
) -> None:
    run = wf.submit(daily_invoices, DailyInput(settings=settings, invoice_date=INVOICE_DATE))
    deadline = time.monotonic() + 60
    while not any(r.fields.get("Status") for r in ninox.list_records(INVOICES)):
        assert time.monotonic() < deadline, "no invoice was created within 60 s"
        time.sleep(0.05)
    pid: int = wf.call(Pid())
    os.kill(pid, signal.SIGKILL)

    summary = DailySummary.model_validate(run.result(timeout=RUN_TIMEOUT_S))

    assert wf.call(Pid()) != pid, "the coordinator was not restarted"
    assert summary.failed == [] and len(summary.invoiced) == 6
    invoices = assert_invoiced_exactly_once(ninox)
    assert_mailed_once(ninox, sink, invoices)


def test_transient_ninox_faults_are_retried_and_everything_completes(
    wf: Any, server: ServerInfo, settings: InvoiceSettings, ninox: NinoxClient, sink: SmtpSink
) -> None:
    server.state.faults.apply(
        FaultPlan(
            rules=[
                FaultRule(
                    method="GET",
                    path="*/tables/Orders/records",
                    status=429,
                    retry_after="1",
                    times=2,
                ),
                FaultRule(method="GET", path="*/tables/Products/records", status=500, times=1),
                FaultRule(method="POST", path="*/tables/Invoices/records", status=503, times=2),
                FaultRule(method="POST", path="*/files", status=502, times=1),
            ]
        )
    )
    run = wf.submit(daily_invoices, DailyInput(settings=settings, invoice_date=INVOICE_DATE))
    summary = DailySummary.model_validate(run.result(timeout=RUN_TIMEOUT_S))
    server.state.faults.clear()

    assert summary.failed == []
    assert Counter(f.status for f in server.state.faults.injected) == {
        429: 2,
        500: 1,
        503: 2,
        502: 1,
    }
    failed_attempts = [a for a in run.detail().attempts if a.status.value != "succeeded"]
    assert len(failed_attempts) == 3  # 2 x 429, 1 x 500 in the parent; the rest in children
    children = run.detail().children
    child_failures = sum(
        1 for c in children for a in wf.detail(c.run_id).attempts if a.status.value != "succeeded"
    )
    assert child_failures == 3
    invoices = assert_invoiced_exactly_once(ninox)
    assert_mailed_once(ninox, sink, invoices)


def test_a_permanent_failure_for_one_customer_is_compensated_and_the_others_complete(
    wf: Any, settings: InvoiceSettings, ninox: NinoxClient, sink: SmtpSink
) -> None:
    broken = 2  # an immediate customer; without an address the invoice cannot be sent
    email = ninox.get_record(CUSTOMERS, broken).fields["Email"]
    ninox.update_record(CUSTOMERS, broken, {"Email": None})

    summary = run_daily(wf, settings)

    assert [line.split(":")[0] for line in summary.failed] == [str(broken)]
    assert "no e-mail address" in summary.failed[0]
    assert sorted(o.customer_id for o in summary.invoiced) == [1, 3, 4, 5, 6]
    (voided,) = ninox.list_records(INVOICES, filters={"Customer": broken})
    assert voided.fields["Status"] == "cancelled"
    assert ninox.list_records(ORDERS, filters={"Invoice": voided.id}) == []
    assert len(mails_by_number(sink)) == 3  # customers 1, 5, 6

    # the address fixed, the next run invoices the orders again under a new number
    ninox.update_record(CUSTOMERS, broken, {"Email": email})
    again = run_daily(wf, settings)
    assert [o.customer_id for o in again.invoiced] == [broken] and again.failed == []
    invoices = assert_invoiced_exactly_once(ninox)
    assert invoices[broken].fields["Invoice no"] != voided.fields["Invoice no"]
    assert_mailed_once(ninox, sink, invoices)
