"""The Ninox client against the local server: paging, records, files, error classification."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from jobs.invoices.ninox_client import (
    PUBLIC_CLOUD_URL,
    NinoxAuthError,
    NinoxBadRequestError,
    NinoxClient,
    NinoxConfig,
    NinoxError,
    NinoxNotFoundError,
    NinoxPermanentError,
    NinoxRetryableError,
    as_step_error,
    on_premise_url,
    parse_retry_after,
    private_cloud_url,
)
from jobs.invoices.ninox_faults import FaultPlan, FaultRule
from jobs.invoices.ninox_server import ServerInfo, push_fault_plan
from jobs.invoices.seed import DATABASE_ID, TEAM_ID, seed_data
from tests.showcase.conftest import client_config
from wfray.domain.errors import NonRetryableError, RetryLater, StepError


class CountingTransport(httpx.HTTPTransport):
    """Real HTTP that remembers the query string of every request it sends."""

    def __init__(self, drop_page: bool = False) -> None:
        super().__init__()
        self.queries: list[dict[str, str]] = []
        self.drop_page = drop_page

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.drop_page:  # act like a server that ignores `page`
            request.url = request.url.copy_remove_param("page")
        self.queries.append(dict(request.url.params))
        return super().handle_request(request)


@pytest.fixture
def counted(ninox_server: ServerInfo) -> Iterator[tuple[NinoxClient, CountingTransport]]:
    transport = CountingTransport()
    with NinoxClient(client_config(ninox_server), transport=transport) as client:
        yield client, transport


def fail_next(server: ServerInfo, **rule: Any) -> None:
    """Set a fault plan through the admin route, as the demo does from another process."""
    push_fault_plan(server.admin_url, server.api_key, FaultPlan(rules=[FaultRule(**rule)]))


def raised(call: Callable[[], object]) -> NinoxError:
    with pytest.raises(NinoxError) as info:
        call()
    return info.value


def test_list_pages_from_zero_until_an_empty_page_on_an_exact_multiple(counted) -> None:
    client, transport = counted
    orders = client.list_records("Orders", per_page=50)  # 300 orders: 6 full pages + 1 empty
    assert [r.id for r in orders] == list(range(1, 301))
    assert [q["page"] for q in transport.queries] == [str(p) for p in range(7)]
    assert {q["perPage"] for q in transport.queries} == {"50"}


def test_list_stops_on_a_short_page(counted) -> None:
    client, transport = counted
    assert len(client.list_records("Orders", per_page=70)) == 300  # 4 full pages + 20
    assert [q["page"] for q in transport.queries] == ["0", "1", "2", "3", "4"]


def test_list_dedupes_and_stops_when_the_server_repeats_a_page(ninox_server: ServerInfo) -> None:
    transport = CountingTransport(drop_page=True)
    with NinoxClient(client_config(ninox_server), transport=transport) as client:
        orders = client.list_records("Orders", per_page=40)
    assert [r.id for r in orders] == list(range(1, 41))
    assert len(transport.queries) == 2


def test_filters_by_name_and_id_and_find_by_key(ninox: NinoxClient) -> None:
    delivered = ninox.list_records("Orders", filters={"Status": "delivered"}, per_page=25)
    expected = [i for i, o in enumerate(seed_data(7).orders, start=1) if o["Status"] == "delivered"]
    assert [r.id for r in delivered] == expected
    assert ninox.list_records("C", filters={"D": "delivered"}) == delivered
    assert ninox.find_by_key("Invoices", "Idempotency key", "invoice:3:1,2") == []
    created = ninox.create_record(
        "Invoices", {"Invoice no": "RE-7", "Idempotency key": "invoice:3:1,2"}
    )
    found = ninox.find_by_key("Invoices", "Idempotency key", "invoice:3:1,2")
    assert [r.id for r in found] == [created.id]


def test_records_are_typed_with_utc_times_and_decimal_money(ninox: NinoxClient) -> None:
    product = ninox.get_record("Products", 1)
    seeded = seed_data(7).products[0]
    assert product.id == 1 and product.sequence > 0
    assert product.created_at == datetime(2025, 11, 28, 7, 30, 15, tzinfo=UTC)
    price = product.fields["Unit price net"]
    assert isinstance(price, Decimal) and price == Decimal(str(seeded["Unit price net"]))
    assert product.fields["VAT rate %"] == seeded["VAT rate %"]


def test_create_update_upsert_and_delete(ninox: NinoxClient) -> None:
    created = ninox.create_record("Invoices", {"Invoice no": "RE-1", "Net": Decimal("100.10")})
    updated = ninox.update_record("Invoices", created.id, {"Gross": Decimal("119.12"), "Net": None})
    assert updated.fields == {"Invoice no": "RE-1", "Gross": Decimal("119.12")}
    assert updated.sequence > created.sequence
    both = ninox.upsert_records(
        "Invoices",
        [{"id": created.id, "fields": {"Status": "issued"}}, {"fields": {"Invoice no": "RE-2"}}],
    )
    assert [r.id for r in both] == [created.id, created.id + 1]
    assert ninox.get_record("Invoices", created.id).fields["Status"] == "issued"
    ninox.delete_record("Invoices", created.id)
    error = raised(lambda: ninox.get_record("Invoices", created.id))
    assert isinstance(error, NinoxNotFoundError) and error.status == 404
    assert (
        f"GET /teams/{TEAM_ID}/databases/{DATABASE_ID}/tables/Invoices/records/{created.id}"
        in str(error)
    )
    assert "404" in str(error)
    assert isinstance(as_step_error(error), NonRetryableError)


def test_upload_list_and_download_a_file(ninox: NinoxClient) -> None:
    invoice = ninox.create_record("Invoices", {"Invoice no": "RE-9"})
    pdf = b"%PDF-1.7\n" + bytes(range(256)) * 20
    ninox.upload_file(
        "Invoices", invoice.id, "RE 9.pdf", pdf, field_name="PDF", content_type="application/pdf"
    )
    assert [f.name for f in ninox.list_files("Invoices", invoice.id)] == ["RE 9.pdf"]
    assert ninox.download_file("Invoices", invoice.id, "RE 9.pdf") == pdf
    assert ninox.get_record("Invoices", invoice.id).fields["PDF"] == "RE 9.pdf"


def test_permanent_errors_carry_status_and_body(
    ninox_server: ServerInfo, ninox: NinoxClient
) -> None:
    bad = raised(lambda: ninox.create_record("Customers", {"Payment days": "many"}))
    assert isinstance(bad, NinoxBadRequestError) and bad.status == 400
    assert "Payment days" in bad.body and "POST" in str(bad)
    config = NinoxConfig("wrong-key", TEAM_ID, DATABASE_ID, base_url=ninox_server.base_url)
    with NinoxClient(config) as wrong:
        auth = raised(lambda: wrong.list_records("Orders"))
    assert isinstance(auth, NinoxAuthError) and auth.status == 401
    assert isinstance(as_step_error(auth), NonRetryableError)
    assert isinstance(raised(lambda: ninox.list_records("Nope")), NinoxNotFoundError)


def test_429_with_retry_after_seconds_is_retryable(
    ninox_server: ServerInfo, ninox: NinoxClient
) -> None:
    fail_next(ninox_server, path="*/tables/Orders/records", status=429, retry_after="7", times=1)
    error = raised(lambda: ninox.list_records("Orders"))
    assert isinstance(error, NinoxRetryableError)
    assert (error.status, error.retry_after_s) == (429, 7.0)
    step_error = as_step_error(error)
    assert isinstance(step_error, RetryLater) and step_error.delay_s == 7.0
    assert len(ninox.list_records("Orders")) == 300  # the fault was for one request only


def test_503_with_retry_after_http_date_is_retryable(
    ninox_server: ServerInfo, ninox: NinoxClient
) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    fail_next(ninox_server, method="GET", path="*/records/1", status=503, retry_after=when, times=1)
    error = raised(lambda: ninox.get_record("Orders", 1))
    assert isinstance(error, NinoxRetryableError) and error.status == 503
    assert error.retry_after_s is not None and 25 <= error.retry_after_s <= 30


def test_500_without_retry_after_leaves_the_delay_to_the_policy(
    ninox_server: ServerInfo, ninox: NinoxClient
) -> None:
    fail_next(ninox_server, method="POST", status=500, times=1)
    error = raised(lambda: ninox.create_record("Customers", {"Name": "X"}))
    assert isinstance(error, NinoxRetryableError) and error.retry_after_s is None
    step_error = as_step_error(error)
    assert type(step_error) is StepError and "HTTP 500" in str(step_error)
    assert ninox_server.state.count(TEAM_ID, DATABASE_ID, "Customers") == 20  # nothing written


def test_timeout_is_retryable(ninox_server: ServerInfo) -> None:
    fail_next(ninox_server, latency_s=1.0, times=1)
    with NinoxClient(client_config(ninox_server, timeout_s=0.2)) as slow:
        error = raised(lambda: slow.get_record("Orders", 1))
    assert isinstance(error, NinoxRetryableError) and error.status is None
    assert "timed out" in str(error)


def test_connection_refused_is_retryable() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = NinoxConfig("k", "t", "d", base_url=f"http://127.0.0.1:{port}/v1", timeout_s=2)
    with NinoxClient(config) as client:
        error = raised(lambda: client.list_records("Orders"))
    assert isinstance(error, NinoxRetryableError) and "could not reach" in str(error)
    assert isinstance(as_step_error(error), StepError)
    assert not isinstance(as_step_error(error), NonRetryableError)


def test_parse_retry_after() -> None:
    now = datetime(2025, 11, 28, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after("Fri, 28 Nov 2025 12:00:45 GMT", now) == 45.0
    assert parse_retry_after("Fri, 28 Nov 2025 11:00:00 GMT", now) == 0.0
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("soon", now) is None


def test_config_urls_and_validation() -> None:
    assert NinoxConfig("k", "t", "d").base_url == PUBLIC_CLOUD_URL == "https://api.ninox.com/v1"
    assert private_cloud_url("acme") == "https://acme.ninoxdb.de/v1"
    assert on_premise_url("ninox.intern:8443") == "https://ninox.intern:8443/v1"
    with pytest.raises(ValueError, match="api_key"):
        NinoxConfig("", "t", "d")
    with pytest.raises(ValueError, match="timeout_s"):
        NinoxConfig("k", "t", "d", timeout_s=0)
    assert issubclass(NinoxAuthError, NinoxPermanentError)
