"""The HTTP API served by real Ray Serve on loopback, driven with httpx."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import (
    MAX_BODY_BYTES,
    TOKEN,
    Api,
    start_app,
    wait_finished,
    wait_until_served,
)
from tests.fixtures import flows
from wfray.domain.errors import DefinitionError
from wfray.entrypoints.http.serve import check_bind


def submit(api: Api, workflow: str, input: Any = None, **extra: Any) -> httpx.Response:
    headers = extra.pop("headers", {})
    return api.http.post(
        "/v1/runs", json={"workflow": workflow, "input": input, **extra}, headers=headers
    )


# -- submitting ----------------------------------------------------------------------------------


def test_a_submitted_run_is_accepted_with_a_link_and_runs_to_its_result(api: Api) -> None:
    answer = submit(api, "numbers", {"count": 4}, priority=5)

    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["workflow"] == "numbers"
    assert body["link"] == f"{api.url}/v1/runs/{body['run_id']}"
    assert answer.headers["location"] == body["link"]
    detail = wait_finished(api.http, body["run_id"])
    assert detail["run"]["status"] == "completed"
    assert detail["run"]["result"] == 0 + 1 + 4 + 9
    assert detail["run"]["priority"] == 5
    assert detail["run"]["trigger"] == "http"
    assert {t["step"] for t in detail["tasks"]} >= {"make", "square", "total"}


def test_a_plain_task_is_submitted_by_its_name(api: Api) -> None:
    answer = submit(api, "big_result", {"size": 3})

    assert answer.status_code == 202, answer.text
    assert wait_finished(api.http, answer.json()["run_id"])["run"]["result"] == "xxx"


def test_the_same_idempotency_key_returns_the_first_run(api: Api) -> None:
    key = {"Idempotency-Key": f"order-{uuid.uuid4().hex}"}

    first = submit(api, "noop", {}, headers=key)
    again = submit(api, "noop", {}, headers=key)
    other = submit(api, "noop", {})

    assert first.status_code == again.status_code == 202
    assert again.json()["run_id"] == first.json()["run_id"]
    assert other.json()["run_id"] != first.json()["run_id"]


def test_an_unknown_workflow_is_404_naming_it(api: Api) -> None:
    answer = submit(api, "no_such_workflow", {})

    assert answer.status_code == 404
    error = answer.json()["error"]
    assert error["code"] == "unknown_workflow"
    assert "no_such_workflow" in error["message"]


def test_input_that_does_not_fit_the_workflow_model_is_422_with_the_field_path(api: Api) -> None:
    answer = submit(api, "numbers", {"count": "many"})

    assert answer.status_code == 422
    (problem,) = answer.json()["detail"]
    assert problem["loc"] == ["body", "input", "count"]
    assert "integer" in problem["msg"]


def test_a_malformed_request_is_422_naming_the_field(api: Api) -> None:
    missing = api.http.post("/v1/runs", json={"input": {}})
    unknown_field = api.http.post("/v1/runs", json={"workflow": "noop", "colour": "red"})
    bad_priority = submit(api, "noop", {}, priority=10**12)

    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"] == ["body", "workflow"]
    assert unknown_field.status_code == 422
    assert unknown_field.json()["detail"][0]["loc"] == ["body", "colour"]
    assert bad_priority.status_code == 422
    assert bad_priority.json()["detail"][0]["loc"] == ["body", "priority"]


def test_a_body_over_the_limit_is_refused_with_413(api: Api) -> None:
    padding = "x" * (MAX_BODY_BYTES + 1)
    answer = submit(api, "big_result", {"size": 1, "padding": padding})

    assert answer.status_code == 413


def test_a_chunked_body_over_the_limit_is_refused_with_413(api: Api) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: the bytes received are counted
        yield b'{"workflow": "noop", "input": {"pad": "'
        for _ in range(MAX_BODY_BYTES // 1024 + 1):
            yield b"y" * 1024
        yield b'"}}'

    answer = api.http.post(
        "/v1/runs", content=chunks(), headers={"Content-Type": "application/json"}
    )

    assert answer.status_code == 413


@pytest.fixture(scope="module")
def tight(api: Api, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """A second wfray whose backlog holds one queued task, served at /tight."""
    import wfray
    from wfray.entrypoints.http.serve import start_api, stop_api

    settings = wfray.load_settings(
        data_dir=str(tmp_path_factory.mktemp("wfray-tight")),
        namespace=f"wfray-tight-{uuid.uuid4().hex[:8]}",
        modules=api.settings.modules,
        api_port=api.settings.api_port,
        api_route_prefix="/tight",
        max_backlog=1,
        queues=[wfray.QueueConfig(name="api_slow", concurrency=1)],
    )
    client = wfray.connect(settings)
    try:
        url = start_api(settings, app_name="wfray-api-tight")
        wait_until_served(url)
        with httpx.Client(base_url=url, timeout=30) as http:
            yield Api(url, settings, client, http)
    finally:
        try:
            stop_api("wfray-api-tight")
        finally:
            client.shutdown()


def test_a_full_backlog_is_429_with_retry_after(tight: Api) -> None:
    answers = []
    for _ in range(5):  # one runs, one waits in the backlog, the next is refused
        answer = submit(tight, "async_hold", {"seconds": 60}, queue="api_slow")
        answers.append(answer)
        if answer.status_code == 429:
            break

    refused = answers[-1]
    assert refused.status_code == 429, [a.status_code for a in answers]
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["code"] == "backlog_full"
    accepted = [a.json()["run_id"] for a in answers if a.status_code == 202]
    assert 1 <= len(accepted) <= 3
    for run_id in accepted:  # free the executor for the tests that follow
        tight.http.post(f"/v1/runs/{run_id}/cancel", json={"compensate": False})


# -- reading -------------------------------------------------------------------------------------


def test_runs_are_listed_newest_first_and_paginated_without_gaps_or_repeats(api: Api) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    # One batch: the runs share their creation time, so the order falls back on the run id.
    handles = api.client.submit_many(flows.noop, [{}] * 7)
    api.client.wait([h.run_id for h in handles], timeout=60)
    expected = sorted(
        (api.client.detail(h.run_id).run for h in handles),
        key=lambda r: (r.created_at, r.run_id),
        reverse=True,
    )

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"workflow": "noop", "created_after": since.isoformat()}
        params |= {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = api.http.get("/v1/runs", params=params).raise_for_status().json()
        assert len(page["runs"]) <= 3
        seen += [r["run_id"] for r in page["runs"] if r["run_id"] in {h.run_id for h in handles}]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert seen == [r.run_id for r in expected]


def test_runs_are_filtered_by_workflow_status_and_creation_time(api: Api) -> None:
    before = datetime.now(UTC)
    run_id = submit(api, "chain5").json()["run_id"]
    wait_finished(api.http, run_id)

    def ids(**params: Any) -> set[str]:
        page = api.http.get("/v1/runs", params=params).raise_for_status().json()
        return {r["run_id"] for r in page["runs"]}

    assert run_id in ids(workflow="chain5", status="completed", created_after=before.isoformat())
    assert run_id not in ids(workflow="chain5", status="failed")
    assert run_id not in ids(workflow="numbers")
    assert run_id not in ids(workflow="chain5", created_before=before.isoformat())
    assert api.http.get("/v1/runs", params={"status": "asleep"}).status_code == 422
    assert api.http.get("/v1/runs", params={"cursor": "not-a-cursor"}).status_code == 422


def test_a_run_shows_its_steps_statuses_and_attempts(api: Api) -> None:
    run_id = submit(api, "flaky", {}).json()["run_id"]
    detail = wait_finished(api.http, run_id)

    assert detail["run"]["status"] == "completed"
    (task,) = detail["tasks"]
    assert task["status"] == "completed"
    assert (task["attempts"], task["retries"], task["failures"]) == (3, 2, 2)
    attempts = sorted(detail["attempts"], key=lambda a: a["attempt"])
    assert [a["status"] for a in attempts] == ["failed", "failed", "succeeded"]
    assert attempts[0]["error_type"].endswith("ConnectionError")
    assert attempts[0]["error_message"] == "transient failure 1"
    for attempt in attempts:
        assert attempt["worker_id"] and attempt["node_id"] and attempt["pid"]
        assert attempt["started_at"] <= attempt["finished_at"]


def test_unknown_run_ids_are_404(api: Api) -> None:
    for path in ("/v1/runs/nope", "/v1/runs/nope/logs"):
        answer = api.http.get(path)
        assert answer.status_code == 404, path
        assert answer.json()["error"]["code"] == "run_not_found"
    for path in ("/v1/runs/nope/cancel", "/v1/runs/nope/retry"):
        assert api.http.post(path).status_code == 404, path


def test_logs_are_read_whole_or_by_step(api: Api) -> None:
    run_id = submit(api, "numbers", {"count": 3}).json()["run_id"]
    wait_finished(api.http, run_id)

    every = api.http.get(f"/v1/runs/{run_id}/logs").raise_for_status().json()
    squares = api.http.get(f"/v1/runs/{run_id}/logs", params={"step": "square"}).json()
    totals = api.http.get(f"/v1/runs/{run_id}/logs", params={"step": "total"}).json()

    assert sorted(line["message"] for line in squares) == [f"squaring {i}" for i in range(3)]
    assert {line["step"] for line in every} == {"square"}
    assert totals == []


def test_following_logs_streams_lines_as_they_come_until_the_run_ends(api: Api) -> None:
    run_id = submit(api, "api_chatty", {"pause_s": 1.0}).json()["run_id"]
    arrivals: list[tuple[float, dict[str, Any]]] = []

    with api.http.stream("GET", f"/v1/runs/{run_id}/logs", params={"follow": "true"}) as stream:
        assert stream.headers["content-type"].startswith("application/x-ndjson")
        for text in stream.iter_lines():
            if text:
                arrivals.append((time.monotonic(), json.loads(text)))
    ended = time.monotonic()

    followed = [(line["step"], line["message"]) for _, line in arrivals]
    stored = api.http.get(f"/v1/runs/{run_id}/logs").json()
    assert followed == [(line["step"], line["message"]) for line in stored]
    assert followed == [("first", "first line"), ("second", "second line"), ("third", "third line")]
    # Streamed, not collected at the end: the first line came a step's pause before the last.
    assert arrivals[-1][0] - arrivals[0][0] > 1.0
    assert ended - arrivals[0][0] > 1.0
    assert api.http.get(f"/v1/runs/{run_id}").json()["run"]["status"] == "completed"


# -- steering ------------------------------------------------------------------------------------


def test_a_cancelled_run_stops_and_cancelling_it_again_is_a_conflict(api: Api) -> None:
    run_id = submit(api, "async_hold", {"seconds": 60}).json()["run_id"]

    answer = api.http.post(f"/v1/runs/{run_id}/cancel", json={"compensate": False})
    again = api.http.post(f"/v1/runs/{run_id}/cancel")

    assert answer.status_code == 200, answer.text
    assert answer.json()["applied"] is True
    assert wait_finished(api.http, run_id, timeout_s=30)["run"]["status"] == "cancelled"
    assert again.status_code == 409
    assert again.json()["applied"] is False


def test_a_failed_run_is_retried_from_where_it_failed(api: Api, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    run_id = submit(api, "needs_marker", {"marker": str(marker)}).json()["run_id"]
    assert wait_finished(api.http, run_id)["run"]["status"] == "failed"

    marker.write_text("here")
    answer = api.http.post(f"/v1/runs/{run_id}/retry")

    assert answer.status_code == 200, answer.text
    assert answer.json()["applied"] is True
    detail = wait_finished(api.http, run_id)
    assert detail["run"]["status"] == "completed"
    assert detail["run"]["result"] == "found it"
    assert [a["attempt"] for a in detail["attempts"]] == [1, 2]
    assert api.http.post(f"/v1/runs/{run_id}/retry").status_code == 409  # nothing to resume


def test_an_event_starts_its_subscribers_once_per_event_id(api: Api) -> None:
    event = {"name": "user.signed_up", "payload": {"email": "ada@example.org"}, "id": "signup-1"}

    first = api.http.post("/v1/events", json=event)
    again = api.http.post("/v1/events", json=event)
    nobody = api.http.post("/v1/events", json={"name": "nobody.listens", "payload": {}})

    assert first.status_code == 202, first.text
    (run_id,) = first.json()["runs"]
    assert again.json()["runs"] == [run_id]
    assert nobody.json()["runs"] == []
    assert nobody.json()["id"]  # an event without an id gets one
    detail = wait_finished(api.http, run_id)
    assert detail["run"]["result"] == "hello ada@example.org"
    assert detail["run"]["trigger"] == "event"


# -- catalogue and operations --------------------------------------------------------------------


def test_workflows_are_listed_with_their_dag_and_input_schema(api: Api) -> None:
    listed = api.http.get("/v1/workflows").raise_for_status().json()

    numbers = next(f for f in listed if f["name"] == "numbers" and f["submittable"])
    steps = {s["name"]: s for s in numbers["dag"]["steps"]}
    assert list(steps) == ["make", "square", "total"]
    assert steps["square"]["map"] == "make"
    assert steps["total"]["after"] == ["square"]
    assert numbers["input_schema"]["properties"]["count"]["type"] == "integer"
    assert any(f["name"] == "api_welcome" for f in listed)


def test_queues_show_their_depth_running_count_and_limits(api: Api) -> None:
    body = api.http.get("/v1/queues").raise_for_status().json()

    queues = {q["name"]: q for q in body["queues"]}
    assert queues["api_slow"]["concurrency"] == 1
    assert queues["default"]["concurrency"] is None
    assert {"depth", "running", "rate_per_s", "per_key_limit"} <= set(queues["default"])
    assert body["max_backlog"] == api.settings.max_backlog


def test_metrics_are_prometheus_text_with_queue_gauges_and_request_counts(api: Api) -> None:
    api.http.get("/v1/queues").raise_for_status()

    answer = api.http.get("/metrics")

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    text = answer.text
    assert "\nwfray_queued " in text or text.startswith("wfray_queued ")
    assert "# TYPE wfray_queue_depth gauge" in text
    assert 'wfray_http_requests_total{method="GET",route="/v1/queues",status="200"}' in text


def test_metrics_count_the_runs_that_completed(api: Api) -> None:
    answer = submit(api, "numbers", {"count": 2})
    assert answer.status_code == 202, answer.text
    assert wait_finished(api.http, answer.json()["run_id"])["run"]["status"] == "completed"

    text = api.http.get("/metrics").text

    completed = [
        line
        for line in text.splitlines()
        if line.startswith("wfray_runs_total{")
        and 'workflow="numbers"' in line
        and 'status="completed"' in line
    ]
    assert completed and float(completed[0].rsplit(" ", 1)[1]) >= 1, text
    assert "# TYPE wfray_attempts_total counter" in text


def test_healthz_is_503_with_the_reason_when_the_coordinator_is_not_there(api: Api) -> None:
    from wfray.entrypoints.http.serve import stop_api

    url, _ = start_app(api, "wfray-api-down", namespace="wfray-nowhere", api_route_prefix="/down")
    try:
        answer = httpx.get(f"{url}/healthz", timeout=30)
    finally:
        stop_api("wfray-api-down")

    assert answer.status_code == 503
    body = answer.json()
    assert body["status"] == "unavailable"
    assert body["coordinator"].startswith("unreachable: CoordinatorUnavailableError")
    assert "wfray-nowhere" in body["coordinator"]


def test_openapi_documents_every_v1_route_and_docs_are_served(api: Api, secured: Api) -> None:
    schema = api.http.get("/openapi.json").raise_for_status().json()
    secured_schema = (
        secured.http.get("/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})
        .raise_for_status()
        .json()
    )

    assert set(schema["paths"]) >= {
        "/v1/runs",
        "/v1/runs/{run_id}",
        "/v1/runs/{run_id}/logs",
        "/v1/runs/{run_id}/cancel",
        "/v1/runs/{run_id}/retry",
        "/v1/events",
        "/v1/workflows",
        "/v1/queues",
        "/healthz",
        "/metrics",
    }
    assert "HTTPBearer" not in json.dumps(schema["paths"]["/v1/runs"])
    assert secured_schema["paths"]["/v1/runs"]["post"]["security"] == [{"HTTPBearer": []}]
    docs = api.http.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


# -- authentication ------------------------------------------------------------------------------


def test_without_a_token_set_no_authentication_is_asked(api: Api) -> None:
    assert api.http.get("/v1/queues").status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}],
    ids=["none", "wrong token", "not bearer"],
)
def test_with_a_token_set_v1_routes_refuse_requests_without_it(
    secured: Api, headers: dict[str, str]
) -> None:
    for method, path in (("GET", "/v1/runs"), ("POST", "/v1/runs"), ("GET", "/v1/queues")):
        answer = secured.http.request(method, path, headers=headers, json={"workflow": "noop"})
        assert answer.status_code == 401, (method, path)
        assert answer.headers["www-authenticate"] == "Bearer"


def test_with_the_token_v1_routes_answer_and_health_needs_none(secured: Api) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}

    accepted = secured.http.post("/v1/runs", json={"workflow": "noop"}, headers=auth)

    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["link"].startswith(f"{secured.url}/v1/runs/")
    assert secured.http.get("/v1/queues", headers=auth).status_code == 200
    assert secured.http.get("/healthz").status_code == 200


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_hosts_need_no_token(host: str) -> None:
    check_bind(host, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "::", "api.example.org"])
def test_listening_beyond_loopback_without_a_token_is_refused(host: str) -> None:
    with pytest.raises(DefinitionError, match="WFRAY_API_TOKEN"):
        check_bind(host, None)
    check_bind(host, "a-token")  # with a token, it may


def test_start_api_refuses_a_public_host_without_a_token(api: Api) -> None:
    from wfray.entrypoints.http.serve import start_api

    with pytest.raises(DefinitionError, match=r"refusing to serve the HTTP API on '0\.0\.0\.0'"):
        start_api(api.settings.with_(api_host="0.0.0.0"), app_name="never-started")


def test_start_api_refuses_modules_that_cannot_be_imported(api: Api) -> None:
    from wfray.entrypoints.http.serve import start_api

    for module in ("tests.fixtures.no_such_flows", "no_such_package.flows"):
        with pytest.raises(DefinitionError, match=f"WFRAY_MODULES names '{module}'"):
            start_api(api.settings.with_(modules=(module,)), app_name="never-started")


def test_api_settings_are_read_from_the_environment() -> None:
    import wfray

    settings = wfray.load_settings(
        env={
            "WFRAY_API_HOST": "0.0.0.0",
            "WFRAY_API_PORT": "9000",
            "WFRAY_API_ROUTE_PREFIX": "/wfray",
            "WFRAY_API_TOKEN": TOKEN,
            "WFRAY_API_MAX_BODY_BYTES": "2048",
            "WFRAY_MODULES": "shop.flows, shop.tasks,",
        },
        data_dir="/tmp/wfray-unused",
    )

    assert (settings.api_host, settings.api_port) == ("0.0.0.0", 9000)
    assert settings.api_route_prefix == "/wfray"
    assert settings.api_token == TOKEN
    assert settings.api_max_body_bytes == 2048
    assert settings.modules == ("shop.flows", "shop.tasks")
    assert TOKEN not in repr(settings)  # settings get logged: the secret must not be
    assert wfray.load_settings(env={"WFRAY_API_TOKEN": ""}, data_dir="/tmp/x").api_token is None
    with pytest.raises(DefinitionError, match="WFRAY_API_PORT must be an integer"):
        wfray.load_settings(env={"WFRAY_API_PORT": "http"}, data_dir="/tmp/wfray-unused")


def test_a_builtin_task_is_not_started_over_http_unless_listed(api: Api) -> None:
    data = {"title": "Stock", "columns": ["item", "n"], "rows": [["bolts", "12"]]}
    answer = submit(api, "render_pdf", {"template": "table", "data": data, "title": "Stock"})
    assert answer.status_code == 403, answer.text
    assert "WFRAY_API_TASKS" in answer.json()["error"]["message"]
