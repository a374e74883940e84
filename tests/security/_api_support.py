"""One wfray and one Serve application per attack module, with scoped tokens.

Serve's proxy is one per Ray cluster: when another tier started it first, the app joins it
(on that proxy's port, which `start_api` reports); the module stops only what it started.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port

READ = "read-token-0123456789abcdef"
SUBMIT = "submit-token-0123456789abcdef"
ADMIN = "admin-token-0123456789abcdef"
TOKENS_JSON = (
    f'{{"dash": {{"token": "{READ}", "scopes": ["read"]}},'
    f' "ci": {{"token": "{SUBMIT}", "scopes": ["submit"]}},'
    f' "ops": {{"token": "{ADMIN}", "scopes": ["admin"]}}}}'
)
TOKEN_OF = {"read": READ, "submit": SUBMIT, "admin": ADMIN}
MODULES = ("tests.fixtures.flows", "tests.api", "tests.security.api_flows")


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class SecuredApi:
    url: str
    settings: Any
    client: Any
    http: httpx.Client

    def as_(self, scope: str) -> dict[str, str]:
        return auth(TOKEN_OF[scope])


def wait_until_served(url: str, timeout_s: float = 60.0) -> None:
    """Serve reports the app running before its proxy routes to it: poll /healthz (open to
    anyone) until the app answers."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(f"{url}/healthz", timeout=5)
            if answer.status_code in (200, 503) and "status" in answer.json():
                return
            last = answer.status_code
        except (httpx.HTTPError, ValueError) as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"the API at {url} did not come up within {timeout_s}s: {last!r}")


def serve_running() -> bool:
    from ray.serve.context import _get_global_client

    try:
        return _get_global_client() is not None
    except Exception:  # no Serve controller on this cluster
        return False


@pytest.fixture(scope="module")
def secured_api(
    ray_session: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecuredApi]:
    """wfray with three scoped tokens (read, submit, admin), served at its own prefix."""
    from ray import serve

    import wfray
    from wfray.config import parse_api_tokens
    from wfray.entrypoints.http.serve import start_api, stop_api

    tag = uuid.uuid4().hex[:8]
    settings = wfray.load_settings(
        data_dir=str(tmp_path_factory.mktemp("wfray-sec-api")),
        namespace=f"wfray-sec-{tag}",
        modules=MODULES,
        api_port=free_port(),
        api_route_prefix=f"/sec{tag}",
        api_tokens=parse_api_tokens(TOKENS_JSON),
        api_max_streams=2,
        api_follow_max_s=5.0,
        max_log_line_chars=1000,
        queues=[wfray.QueueConfig(name="declared_q", concurrency=2)],
    )
    client = wfray.connect(settings)
    started_serve = not serve_running()
    name = f"wfray-sec-{tag}"
    try:
        url = start_api(settings, app_name=name)
        try:
            wait_until_served(url)
            with httpx.Client(base_url=url, timeout=30) as http:
                yield SecuredApi(url, settings, client, http)
        finally:
            if started_serve:
                serve.shutdown()
            else:
                stop_api(name)
    finally:
        client.shutdown()


def gate_dir(tmp_path: Path) -> Path:
    gate = tmp_path / "gate"
    gate.mkdir()
    return gate


def wait_for(check: Any, timeout_s: float = 60.0, what: str = "") -> Any:
    """Poll `check()` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what or check}")
        time.sleep(0.05)
