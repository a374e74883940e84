"""The local Ninox server against the classic v1 API, over real HTTP on loopback."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from decimal import Decimal
from typing import Any

import httpx

from jobs.invoices.ninox_faults import FaultPlan, FaultRule
from jobs.invoices.ninox_server import ServerInfo, push_fault_plan
from jobs.invoices.ninox_store import ListQuery
from jobs.invoices.seed import DATABASE_ID, SCHEMA, TEAM_ID, build_state, seed_data
from tests.showcase.conftest import API_KEY, SERVER_TIME_UTC

RECORD_KEYS = {"id", "sequence", "createdAt", "createdBy", "modifiedAt", "modifiedBy", "fields"}
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$")


def ids(records: list[dict[str, Any]]) -> list[int]:
    return [r["id"] for r in records]


def test_same_seed_gives_identical_data_and_another_seed_differs() -> None:
    assert seed_data(7) == seed_data(7)
    assert seed_data(7) != seed_data(8)
    first, second = build_state(7), build_state(7)
    for table in ("Customers", "Products", "Orders", "OrderItems"):
        query_all = first.list_records(TEAM_ID, DATABASE_ID, table, ListQuery(per_page=5000))
        again = second.list_records(TEAM_ID, DATABASE_ID, table, ListQuery(per_page=5000))
        assert [r["fields"] for r in query_all] == [r["fields"] for r in again]


def test_seed_data_is_realistic() -> None:
    data = seed_data(7)
    assert len(data.customers) == 20 and len(data.products) == 30 and len(data.orders) == 300
    assert {c["Invoice delivery"] for c in data.customers} == {"immediate", "weekly"}
    assert 0 < sum("USt-IdNr." in c for c in data.customers) < 20
    assert {p["VAT rate %"] for p in data.products} == {7, 19}
    for product in data.products:
        # Whole cents as JSON text, so Decimal(text) is exact money.
        cents = Decimal(json.dumps(product["Unit price net"])) * 100
        assert cents == cents.to_integral_value() and cents > 0
    statuses = Counter(o["Status"] for o in data.orders)
    assert set(statuses) == {"new", "confirmed", "shipped", "delivered", "cancelled"}
    for order in data.orders:
        assert ("Delivered on" in order) == (order["Status"] == "delivered")
        assert "Invoice" not in order
    per_order = Counter(item["Order"] for item in data.order_items)
    assert set(per_order) == set(range(1, 301)) and set(per_order.values()) <= {1, 2, 3, 4, 5}


def test_teams_databases_and_tables_by_id_and_by_name(api: httpx.Client) -> None:
    root = httpx.Client(base_url=str(api.base_url).split("/teams")[0], headers=api.headers)
    with root:
        assert root.get("/teams").json() == [{"id": TEAM_ID, "name": "wfray demo"}]
        assert root.get(f"/teams/{TEAM_ID}/databases").json() == [
            {"id": DATABASE_ID, "name": "Invoicing"}
        ]
    tables = api.get("/tables").json()
    assert [(t["id"], t["name"]) for t in tables] == [(t.id, t.name) for t in SCHEMA]
    by_id, by_name = api.get("/tables/C").json(), api.get("/tables/Orders").json()
    assert by_id == by_name
    status = next(f for f in by_id["fields"] if f["name"] == "Status")
    assert [c["caption"] for c in status["choices"]][:2] == ["new", "confirmed"]
    assert api.get("/tables/C/records/1").json() == api.get("/tables/Orders/records/1").json()


def test_records_are_bare_arrays_with_utc_timestamps_without_zone(api: httpx.Client) -> None:
    records = api.get("/tables/Customers/records", params={"perPage": 3}).json()
    assert isinstance(records, list) and len(records) == 3
    for record in records:
        assert set(record) == RECORD_KEYS
        assert TIMESTAMP.match(record["createdAt"]) and TIMESTAMP.match(record["modifiedAt"])
        # The server clock runs in UTC+2; the API speaks UTC.
        assert record["createdAt"] == SERVER_TIME_UTC == "2025-11-28T07:30:15"
        assert "Name" in record["fields"] and "A" not in record["fields"]
    one = api.get("/tables/Customers/records/2").json()
    assert one == records[1]


def test_one_sequence_for_the_whole_database_bumped_on_every_write(api: httpx.Client) -> None:
    start = max(r["sequence"] for r in api.get("/tables/OrderItems/records?perPage=5000").json())
    created = api.post("/tables/Customers/records", json=[{"fields": {"Name": "Neu"}}]).json()
    updated = api.post("/tables/Orders/records", json={"id": 3, "fields": {"Status": "new"}})
    product = api.post("/tables/B/records", json={"fields": {"SKU": "X"}}).json()
    assert api.delete("/tables/Products/records/1").status_code == 200
    last = api.post("/tables/Products/records", json={"id": 2, "fields": {"Active": False}})
    sequences = [created[0]["sequence"], updated.json()["sequence"], product["sequence"]]
    assert sequences == [start + 1, start + 2, start + 3]
    assert last.json()["sequence"] == start + 5  # the delete took start + 4
    since = api.get("/tables/Products/records", params={"sinceSq": start + 3}).json()
    assert ids(since) == [2]
    newest = api.get("/tables/Orders/records", params={"updated": "true", "perPage": 1}).json()
    assert ids(newest) == [3]


def test_paging_is_zero_based_including_an_exact_multiple_of_per_page(api: httpx.Client) -> None:
    pages = [
        api.get("/tables/Products/records", params={"page": p, "perPage": 10}).json()
        for p in range(4)
    ]
    assert [len(p) for p in pages] == [10, 10, 10, 0]
    assert [i for page in pages for i in ids(page)] == list(range(1, 31))
    last = api.get("/tables/Products/records", params={"page": 4, "perPage": 7}).json()
    assert ids(last) == [29, 30]
    after = api.get("/tables/Products/records", params={"sinceId": 25, "perPage": 3}).json()
    assert ids(after) == [26, 27, 28]


def test_equality_filters_by_field_name_and_by_field_id(api: httpx.Client) -> None:
    def listed(filters: dict[str, Any]) -> list[dict[str, Any]]:
        params: dict[str, str | int] = {"filters": json.dumps({"fields": filters}), "perPage": 1000}
        records: list[dict[str, Any]] = api.get("/tables/Orders/records", params=params).json()
        return records

    by_name, by_id = listed({"Status": "delivered"}), listed({"D": "delivered"})
    expected = sum(o["Status"] == "delivered" for o in seed_data(7).orders)
    assert len(by_name) == expected and ids(by_name) == ids(by_id)
    customer = by_name[0]["fields"]["Customer"]
    both = listed({"Status": "delivered", "Customer": customer})
    assert both and all(r["fields"]["Customer"] == customer for r in both)
    assert set(ids(both)) < set(ids(by_name))
    assert listed({"Status": "no such status"}) == []


def test_order_by_field_and_desc(api: httpx.Client) -> None:
    params: dict[str, str | int] = {"order": "Unit price net", "desc": "true", "perPage": 100}
    prices = [
        r["fields"]["Unit price net"]
        for r in api.get("/tables/Products/records", params=params).json()
    ]
    assert prices == sorted(prices, reverse=True) and len(prices) == 30
    newest = api.get("/tables/Products/records", params={"new": "true", "perPage": 3}).json()
    assert ids(newest) == [30, 29, 28]
    refused = api.get("/tables/Products/records", params={"order": "Name", "new": "true"})
    assert refused.status_code == 400


def test_upsert_creates_without_id_and_updates_only_given_fields(api: httpx.Client) -> None:
    body = [{"fields": {"SKU": "N-1", "Name": "Neu"}}, {"fields": {"SKU": "N-2", "Active": True}}]
    created = api.post("/tables/Products/records", json=body).json()
    assert ids(created) == [31, 32]
    assert created[0]["fields"] == {"SKU": "N-1", "Name": "Neu"}
    single = api.post(
        "/tables/Products/records", json={"id": 31, "fields": {"Unit price net": 9.5}}
    )
    assert isinstance(single.json(), dict)
    assert single.json()["fields"] == {"SKU": "N-1", "Name": "Neu", "Unit price net": 9.5}
    cleared = api.post("/tables/Products/records", json=[{"id": 31, "fields": {"Name": None}}])
    assert cleared.json()[0]["fields"] == {"SKU": "N-1", "Unit price net": 9.5}
    assert api.get("/tables/Products/records/31").json() == cleared.json()[0]


def test_delete_one_record(api: httpx.Client) -> None:
    assert api.delete("/tables/Orders/records/5").status_code == 200
    assert api.get("/tables/Orders/records/5").status_code == 404
    assert api.delete("/tables/Orders/records/5").status_code == 404
    assert 5 not in ids(api.get("/tables/Orders/records?perPage=1000").json())


def test_file_upload_into_a_field_then_list_and_download(api: httpx.Client) -> None:
    invoice = api.post("/tables/Invoices/records", json={"fields": {"Invoice no": "RE-1"}}).json()
    content = b"%PDF-1.4\n" + bytes(range(256)) * 40 + b"\r\n--boundary-lookalike\r\n"
    path = f"/tables/Invoices/records/{invoice['id']}/files"
    files = {"file": ("RE-1.pdf", content, "application/pdf")}
    uploaded = api.post(path, files=files, data={"fieldName": "PDF"})
    assert uploaded.status_code == 200, uploaded.text
    listed = api.get(path).json()
    assert [(f["name"], f["size"]) for f in listed] == [("RE-1.pdf", len(content))]
    download = api.get(path + "/RE-1.pdf")
    assert download.content == content
    assert download.headers["content-type"] == "application/pdf"
    record = api.get(f"/tables/Invoices/records/{invoice['id']}").json()
    assert record["fields"]["PDF"] == "RE-1.pdf" and record["sequence"] > invoice["sequence"]
    attachment = api.post(path, files={"file": ("note.txt", b"hi", "text/plain")})
    assert attachment.status_code == 200
    assert sorted(f["name"] for f in api.get(path).json()) == ["RE-1.pdf", "note.txt"]
    assert api.post(path, files={"other": ("x", b"x")}).status_code == 400
    assert api.post(path, files=files, data={"fieldName": "Net"}).status_code == 400


def test_wrong_or_missing_key_is_401(ninox_server: ServerInfo) -> None:
    url = ninox_server.base_url + "/teams"
    wrong = httpx.get(url, headers={"Authorization": "Bearer not-the-key"})
    assert wrong.status_code == 401 and "API key" in wrong.json()["message"]
    assert httpx.get(url).status_code == 401
    assert httpx.get(ninox_server.admin_url + "/faults").status_code == 401
    assert httpx.get(url, headers={"Authorization": f"Bearer {API_KEY}"}).status_code == 200


def test_unknown_ids_are_404(ninox_server: ServerInfo, api: httpx.Client) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    base = ninox_server.base_url
    assert httpx.get(base + "/teams/nope", headers=headers).status_code == 404
    assert (
        httpx.get(f"{base}/teams/{TEAM_ID}/databases/nope/tables", headers=headers).status_code
        == 404
    )
    assert api.get("/tables/Z/records").status_code == 404
    assert api.get("/tables/NoSuchTable/records").status_code == 404
    missing = api.get("/tables/Orders/records/99999")
    assert missing.status_code == 404 and "99999" in missing.json()["message"]
    assert api.post("/tables/Orders/records", json={"id": 99999, "fields": {}}).status_code == 404
    assert api.get("/tables/Orders/records/1/files/none.pdf").status_code == 404


def test_bad_bodies_and_parameters_are_400_and_change_nothing(api: httpx.Client) -> None:
    before = api.get("/tables/Customers/records?perPage=100").json()
    bad = {
        "not json": api.post("/tables/Customers/records", content=b"{nope"),
        "unknown field": api.post("/tables/Customers/records", json={"fields": {"Nam": "x"}}),
        "number as text": api.post("/tables/A/records", json={"fields": {"Payment days": "14"}}),
        "choice case": api.post(
            "/tables/A/records", json={"fields": {"Invoice delivery": "Weekly"}}
        ),
        "bad date": api.post(
            "/tables/Orders/records", json={"fields": {"Order date": "28.11.2025"}}
        ),
        "missing ref": api.post("/tables/Orders/records", json={"fields": {"Customer": 999}}),
        "one bad of two": api.post(
            "/tables/Customers/records",
            json=[{"fields": {"Name": "ok"}}, {"fields": {"Payment days": "x"}}],
        ),
        "bad filters": api.get("/tables/Orders/records", params={"filters": "{not json"}),
        "negative page": api.get("/tables/Orders/records", params={"page": -1}),
        "record id text": api.get("/tables/Orders/records/abc"),
        "script": api.post("/exec", json={"query": "delete (select Orders)"}),
    }
    for what, response in bad.items():
        assert response.status_code == 400, what
        assert response.json()["message"], what
    assert "Nam" in bad["unknown field"].json()["message"]
    assert api.get("/tables/Customers/records?perPage=100").json() == before


def test_fault_rules_from_python_fail_the_next_n_matching_requests(
    ninox_server: ServerInfo, api: httpx.Client
) -> None:
    rule = FaultRule(
        method="GET", path="*/tables/Orders/records*", status=429, retry_after="3", times=2
    )
    ninox_server.state.faults.add(rule)
    assert api.get("/tables/Products/records/1").status_code == 200  # other path: untouched
    first, second = api.get("/tables/Orders/records"), api.get("/tables/Orders/records/1")
    assert (first.status_code, second.status_code) == (429, 429)
    assert first.headers["Retry-After"] == "3"
    assert api.get("/tables/Orders/records/1").status_code == 200
    assert [f.status for f in ninox_server.state.faults.injected] == [429, 429]


def test_probability_faults_replay_identically_for_the_same_seed(
    ninox_server: ServerInfo, api: httpx.Client
) -> None:
    plan = FaultPlan(seed=11, rules=[FaultRule(path="*/Products/*", status=500, probability=0.5)])

    def pattern() -> list[int]:
        ninox_server.state.faults.apply(plan)
        return [api.get("/tables/Products/records/1").status_code for _ in range(20)]

    first = pattern()
    assert first == pattern()
    assert set(first) == {200, 500}


def test_latency_is_injected_before_the_real_answer(
    ninox_server: ServerInfo, api: httpx.Client
) -> None:
    ninox_server.state.faults.add(FaultRule(path="*/records/1", latency_s=0.3, times=1))
    started = time.monotonic()
    response = api.get("/tables/Orders/records/1")
    assert response.status_code == 200 and time.monotonic() - started >= 0.3
    started = time.monotonic()
    api.get("/tables/Orders/records/1")
    assert time.monotonic() - started < 0.3


def test_admin_route_sets_lists_and_clears_the_fault_plan(
    ninox_server: ServerInfo, api: httpx.Client
) -> None:
    plan = FaultPlan(rules=[FaultRule(method="POST", path="*/records", status=503, times=1)])
    push_fault_plan(ninox_server.admin_url, API_KEY, plan)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    listed = httpx.get(ninox_server.admin_url + "/faults", headers=headers).json()
    assert listed["rules"][0]["status"] == 503 and listed["rules"][0]["remaining"] == 1
    assert api.post("/tables/Customers/records", json={"fields": {}}).status_code == 503
    assert api.post("/tables/Customers/records", json={"fields": {}}).status_code == 200
    added = httpx.post(ninox_server.admin_url + "/faults", headers=headers, json={"status": 500})
    assert added.status_code == 200 and api.get("/tables").status_code == 500
    assert httpx.delete(ninox_server.admin_url + "/faults", headers=headers).status_code == 200
    assert api.get("/tables").status_code == 200
    bad = httpx.post(ninox_server.admin_url + "/faults", headers=headers, json={"status": 200})
    assert bad.status_code == 400
