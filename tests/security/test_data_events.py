"""An event payload is validated against every subscriber's input model before any run is
stored: through the HTTP API and the Python client, on a real coordinator on Ray."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.security import _data_support as support
from tests.security._data_support import ARRIVED, start_wfray
from wfray.application.client_commands import Publish
from wfray.domain.errors import InputValidationError
from wfray.entrypoints.http.app import create_app

SUBSCRIBERS = ("sec_on_arrived_note", "sec_on_arrived_weigh")


@pytest.fixture(scope="module")
def client(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    wf = start_wfray(
        tmp_path_factory.mktemp("sec-events") / "wfray", modules=("tests.security._data_support",)
    )
    wf.register(support.on_arrived_note, support.on_arrived_weigh)
    yield wf
    wf.shutdown()


class Http:
    """The real API app over an in-process ASGI transport (no Serve proxy needed here)."""

    def __init__(self, client: Any) -> None:
        self.app = create_app(client.settings, client)

    def post(self, path: str, json: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as h:
                return await h.post(path, json=json)

        return asyncio.run(send())


@pytest.fixture(scope="module")
def http(client: Any) -> Http:
    return Http(client)


def runs_of_subscribers(client: Any) -> list[Any]:
    return [r for r in client.list_runs(limit=500) if r.workflow in SUBSCRIBERS]


def test_a_payload_one_subscriber_refuses_is_a_422_naming_it_and_starts_no_run(
    client: Any, http: Http
) -> None:
    answer = http.post(
        "/v1/events", json={"name": ARRIVED, "payload": {"parcel": "p-1"}, "id": "e-missing"}
    )
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_input"
    assert "subscriber 'sec_on_arrived_weigh'" in error["message"]
    assert "grams: Field required" in error["message"]
    assert "sec_on_arrived_note" not in error["message"]  # that one accepted the payload
    assert runs_of_subscribers(client) == []  # not even the note run


def test_a_wrong_field_type_from_the_python_client_names_subscriber_and_field(
    client: Any,
) -> None:
    with pytest.raises(InputValidationError) as refused:
        client.publish(ARRIVED, {"parcel": "p-2", "grams": "heavy"}, id="e-heavy")
    assert "subscriber 'sec_on_arrived_weigh'" in str(refused.value)
    assert "grams: Input should be a valid integer" in str(refused.value)
    assert runs_of_subscribers(client) == []


def test_a_publisher_that_skips_validation_is_refused_by_the_coordinator(client: Any) -> None:
    # the coordinator's own publish, called without the validated inputs
    with pytest.raises(InputValidationError, match="was not validated against the input model"):
        client.call(Publish(ARRIVED, json.dumps({"parcel": 3}), "e-raw", "client"))
    assert runs_of_subscribers(client) == []


def test_a_valid_payload_starts_each_subscriber_with_its_own_validated_input(
    client: Any, http: Http
) -> None:
    payload = {"parcel": "p-3", "grams": "250"}
    answer = http.post("/v1/events", json={"name": ARRIVED, "payload": payload, "id": "e-ok"})
    assert answer.status_code == 202, answer.text
    views = client.wait(answer.json()["runs"], timeout=60)
    results = sorted(json.dumps(v.result_json) for v in views)
    assert len(views) == 2 and all(v.status.value == "completed" for v in views), results
    inputs = {r.workflow: json.loads(r.input_json) for r in runs_of_subscribers(client)}
    assert inputs == {
        "sec_on_arrived_note": {"parcel": "p-3"},
        "sec_on_arrived_weigh": {"parcel": "p-3", "grams": 250},
    }
