"""One wfray instance and one Serve application for the whole API tier (Serve is slow to
start), on the session's shared Ray instance, served on a free loopback port."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import free_port

API_MODULES = ("tests.fixtures.flows", "tests.fixtures.unique_flows", "tests.api")
MAX_BODY_BYTES = 64 * 1024
TOKEN = "s3cret-token-for-tests"


@dataclass
class Api:
    """A served API: its base URL, the settings it runs with and a Python client."""

    url: str
    settings: Any
    client: Any
    http: httpx.Client


def wait_until_served(url: str, timeout_s: float = 60.0) -> None:
    """Serve reports the app running before its proxy routes to it: poll until it does."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(f"{url}/openapi.json", timeout=5)
            if answer.status_code in (200, 401):  # the app answers (with a token: 401)
                return
            last = answer.status_code
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"the API at {url} did not come up within {timeout_s}s: {last!r}")


@pytest.fixture(scope="session")
def api_settings(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Any:
    import wfray

    return wfray.load_settings(
        data_dir=str(tmp_path_factory.mktemp("wfray-api")),
        namespace=f"wfray-api-{uuid.uuid4().hex[:8]}",
        modules=API_MODULES,
        api_port=free_port(),
        api_route_prefix="/wf",
        api_max_body_bytes=MAX_BODY_BYTES,
        queues=[wfray.QueueConfig(name="api_slow", concurrency=1)],
    )


@pytest.fixture(scope="session")
def served(api_settings: Any) -> Iterator[Any]:
    """wfray, and Serve with its proxy on the settings' port (stopped at the end)."""
    import wfray
    from wfray.entrypoints.http.serve import stop_api

    client = wfray.connect(api_settings)
    try:
        yield client
    finally:
        try:
            stop_api()
        finally:
            client.shutdown()


@pytest.fixture(scope="session")
def api(served: Any, api_settings: Any) -> Iterator[Api]:
    """The API without authentication, at /wf."""
    from wfray.entrypoints.http.serve import start_api

    url = start_api(api_settings)
    wait_until_served(url)
    with httpx.Client(base_url=url, timeout=30) as http:
        yield Api(url, api_settings, served, http)


def start_app(api: Api, name: str, **changes: Any) -> tuple[str, Any]:
    """Another application on the same Serve proxy (same port), at its own route prefix."""
    from wfray.entrypoints.http.serve import start_api

    settings = api.settings.with_(**changes)
    url = start_api(settings, app_name=name)
    wait_until_served(url)
    return url, settings


@pytest.fixture(scope="session")
def secured(api: Api) -> Iterator[Api]:
    """The same wfray behind a bearer token, at /secure."""
    from wfray.entrypoints.http.serve import stop_api

    url, settings = start_app(api, "wfray-api-secure", api_token=TOKEN, api_route_prefix="/secure")
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            yield Api(url, settings, api.client, http)
    finally:
        stop_api("wfray-api-secure")


def wait_finished(http: httpx.Client, run_id: str, timeout_s: float = 60.0) -> dict[str, Any]:
    """Poll a run over HTTP until it has finished; its detail."""
    finished = {"completed", "failed", "cancelled", "compensated", "compensation_failed"}
    deadline = time.monotonic() + timeout_s
    while True:
        detail: dict[str, Any] = http.get(f"/v1/runs/{run_id}").raise_for_status().json()
        if detail["run"]["status"] in finished:
            return detail
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} still {detail['run']['status']} after {timeout_s}s")
        time.sleep(0.1)
