"""Who may call what: every route of the served app, without a token and with a token of
too small a scope; /healthz and /metrics without a token; the browser guards (Host header,
JSON bodies, other web origins) on a real Serve proxy on loopback."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import Request
from fastapi.routing import APIRoute

from tests.security._api_support import (
    ADMIN,
    READ,
    SUBMIT,
    TOKENS_JSON,
    SecuredApi,
    auth,
    secured_api,
)
from wfray.config import API_SCOPES, load_settings
from wfray.coordinator.health import START_CAUSES
from wfray.domain.errors import DefinitionError

__all__ = ["secured_api"]

BELOW = {"read": None, "submit": "read", "admin": "submit"}
SAMPLE = {"run_id": "no-such-run", "name": "no_such_schedule"}


def app_routes(api: SecuredApi) -> list[APIRoute]:
    """The routes of the app this API serves, built here from the same settings."""
    from wfray.entrypoints.http.app import create_app

    app = create_app(api.settings, api.client)
    return list(_walk(app.routes))


def _walk(routes: list[Any]) -> Iterator[APIRoute]:
    # FastAPI keeps an included router as one entry that holds the router's own routes.
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):
            yield from _walk(route.original_router.routes)


def call(api: SecuredApi, route: APIRoute, headers: dict[str, str]) -> httpx.Response:
    path = re.sub(r"{(\w+)}", lambda m: SAMPLE[m.group(1)], route.path)
    (method,) = route.methods - {"HEAD"} if len(route.methods) > 1 else route.methods
    body: dict[str, Any] = {"json": {}} if method in {"POST", "PUT", "PATCH"} else {}
    return api.http.request(method, path, headers=headers, **body)


def test_every_route_declares_a_scope_and_refuses_callers_without_it(
    secured_api: SecuredApi,
) -> None:
    from wfray.entrypoints.http.auth import scope_of

    routes = app_routes(secured_api)
    open_routes = {"/healthz"}
    checked = []
    for route in routes:
        scope = scope_of(route)
        if route.path in open_routes:
            assert scope is None, route.path
            continue
        assert scope in API_SCOPES, f"{route.path} declares no scope"
        for headers in ({}, auth("not-a-token-of-this-api")):
            answer = call(secured_api, route, headers)
            assert answer.status_code == 401, (route.path, answer.status_code, answer.text)
            assert answer.headers["www-authenticate"] == "Bearer"
        lower = BELOW[scope]
        if lower is not None:
            answer = call(secured_api, route, secured_api.as_(lower))
            assert answer.status_code == 403, (route.path, lower, answer.status_code)
            error = answer.json()["error"]
            assert scope in error["message"] and error["code"] == "forbidden"
        answer = call(secured_api, route, secured_api.as_(scope))
        assert answer.status_code not in (401, 403), (route.path, answer.text)
        checked.append((route.path, scope))
    paths = {path for path, _ in checked}
    assert {"/v1/runs", "/v1/runs/{run_id}/cancel", "/metrics", "/openapi.json", "/docs"} <= paths
    scopes = dict(checked)
    assert scopes["/v1/runs/{run_id}/cancel"] == "admin"
    assert scopes["/v1/schedules/{name}"] == "admin"
    assert scopes["/v1/events"] == "submit"
    assert scopes["/v1/upgrade"] == "admin"


def test_each_scope_does_what_it_may(secured_api: SecuredApi) -> None:
    http = secured_api.http
    assert http.get("/v1/runs", headers=auth(READ)).status_code == 200
    assert http.post("/v1/runs", json={"workflow": "noop"}, headers=auth(READ)).status_code == 403
    accepted = http.post("/v1/runs", json={"workflow": "noop"}, headers=auth(SUBMIT))
    assert accepted.status_code == 202, accepted.text
    run_id = accepted.json()["run_id"]
    assert http.post(f"/v1/runs/{run_id}/cancel", headers=auth(SUBMIT)).status_code == 403
    # admin includes submit and read
    assert http.get(f"/v1/runs/{run_id}", headers=auth(ADMIN)).status_code == 200
    answer = http.post(f"/v1/runs/{run_id}/cancel", headers=auth(ADMIN))
    assert answer.status_code in (200, 409), answer.text


def test_an_upgrade_over_http_needs_admin_refuses_bad_bodies_and_is_audited(
    secured_api: SecuredApi,
) -> None:
    http = secured_api.http
    assert http.post("/v1/upgrade", json={}, headers=auth(SUBMIT)).status_code == 403
    bad_bodies = [
        {"timeout_s": 0},
        {"timeout_s": 1e9},
        {"restart": "yes please"},
        {"command": "rm -rf /"},
        {"timeout_s": "\u0000" * 10_000},
    ]
    for body in bad_bodies:
        answer = http.post("/v1/upgrade", json=body, headers=auth(ADMIN))
        assert answer.status_code == 422, (body, answer.text)
    answer = http.post("/v1/upgrade", json={}, headers=auth(ADMIN))
    assert answer.status_code == 200, answer.text
    said = answer.json()
    assert said["nothing_to_do"] is True and said["replaced"] == []
    assert said["lines"][0].startswith("nothing to do: wfray's actors")
    page = http.get("/v1/audit", params={"action": "upgrade"}, headers=auth(ADMIN)).json()
    newest = page["entries"][0]
    assert (newest["actor"], newest["via"]) == ("ops", "http")
    assert newest["outcome"].startswith("nothing to do")


def test_healthz_without_a_token_says_up_or_down_only(secured_api: SecuredApi) -> None:
    anonymous = secured_api.http.get("/healthz")
    reader = secured_api.http.get("/healthz", headers=auth(READ))

    assert anonymous.status_code == 200
    assert anonymous.json() == {"status": "ok"}
    detail = reader.json()
    health = detail.pop("coordinator_health")
    assert detail == {"status": "ok", "coordinator": "ok", "store": "ok"}
    # the coordinator's own health, for operators: bounded, whatever the load
    assert health["start_cause"] in START_CAUSES and health["turns"] >= 1
    assert set(health["attempts_in_flight"]) == set(health["outbox_outcomes"]) >= {"cpu", "io"}
    assert health["commit_failures"] == {}
    assert len(reader.content) < 4096


def test_metrics_and_docs_need_a_token_unless_made_public(secured_api: SecuredApi) -> None:
    for path in ("/metrics", "/openapi.json", "/docs"):
        assert secured_api.http.get(path).status_code == 401, path
        assert secured_api.http.get(path, headers=auth(READ)).status_code == 200, path
    schema = secured_api.http.get("/openapi.json", headers=auth(READ)).json()
    assert schema["paths"]["/v1/runs"]["post"]["security"] == [{"HTTPBearer": []}]


def test_a_host_header_naming_another_host_is_refused(secured_api: SecuredApi) -> None:
    # DNS rebinding: a page on evil.example whose name now resolves to 127.0.0.1
    for host in ("evil.example", "evil.example:80", "127.0.0.1.evil.example"):
        answer = secured_api.http.get("/v1/runs", headers={"Host": host, **auth(READ)})
        assert answer.status_code == 400, host
        assert answer.json()["error"]["code"] == "invalid_host"
    assert secured_api.http.get("/healthz", headers={"Host": "evil.example"}).status_code == 400
    assert secured_api.http.get("/v1/runs", headers={"Host": "localhost", **auth(READ)}).is_success


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
def test_a_v1_body_that_is_not_json_is_415(secured_api: SecuredApi, content_type: str) -> None:
    # What an HTML form or a "simple" cross-site fetch can send without a preflight.
    body = b'{"workflow": "noop"}'
    headers = {"Content-Type": content_type, **auth(ADMIN)}

    answer = secured_api.http.post("/v1/runs", content=body, headers=headers)
    cancel = secured_api.http.post("/v1/runs/x/cancel", content=b"", headers=headers)

    assert answer.status_code == 415, answer.text
    assert "application/json" in answer.json()["error"]["message"]
    assert cancel.status_code == 415


def test_an_unsafe_v1_request_from_another_web_origin_is_refused(secured_api: SecuredApi) -> None:
    headers = {"Origin": "https://evil.example", **auth(ADMIN)}

    answer = secured_api.http.post("/v1/runs/some-run/retry", headers=headers)
    same = secured_api.http.post(
        "/v1/runs/some-run/retry", headers={"Origin": "http://127.0.0.1:1", **auth(ADMIN)}
    )

    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "cross_origin"
    assert same.status_code == 404  # reached the route: no such run


def test_the_token_name_is_recorded_on_the_request(secured_api: SecuredApi) -> None:
    import anyio

    from wfray.entrypoints.http.app import create_app
    from wfray.entrypoints.http.auth import TokenBook, needs_factory

    app = create_app(secured_api.settings, secured_api.client)
    needs = needs_factory(TokenBook(secured_api.settings))

    @app.get("/whoami", dependencies=[needs("read")])
    def whoami(request: Request) -> str:
        return str(request.state.caller.name)

    async def ask(token: str) -> Any:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as local:
            return (await local.get("/whoami", headers=auth(token))).json()

    assert anyio.run(ask, SUBMIT) == "ci"
    assert anyio.run(ask, ADMIN) == "ops"


def test_scoped_tokens_come_from_the_environment_and_stay_out_of_reprs(tmp_path: Any) -> None:
    from wfray.entrypoints.http.auth import TokenBook

    settings = load_settings(
        env={"WFRAY_API_TOKENS": TOKENS_JSON, "WFRAY_API_TOKEN": "legacy-admin-token-123"},
        data_dir=str(tmp_path),
    )
    assert [(t.name, sorted(t.scopes)) for t in settings.api_tokens] == [
        ("dash", ["read"]),
        ("ci", ["submit"]),
        ("ops", ["admin"]),
    ]
    for text in (repr(settings), repr(settings.api_tokens), repr(TokenBook(settings))):
        assert READ not in text and "legacy-admin-token-123" not in text
    book = TokenBook(settings)
    assert book.caller("legacy-admin-token-123").name == "admin"  # type: ignore[union-attr]
    assert book.caller(SUBMIT).scopes == {"read", "submit"}  # type: ignore[union-attr]
    assert book.caller("nearly" + READ) is None and book.caller(None) is None
    token_file = tmp_path / "tokens.json"
    token_file.write_text(TOKENS_JSON)
    from_file = load_settings(
        env={"WFRAY_API_TOKENS_FILE": str(token_file)}, data_dir=str(tmp_path)
    )
    assert from_file.api_tokens == settings.api_tokens


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"ci": {"token": "short", "scopes": ["read"]}}', "at least 16"),
        ('{"ci": {"token": "long-enough-secret-1", "scopes": ["root"]}}', "read, submit, admin"),
        ("[1]", "JSON object"),
        ("{nope", "not JSON"),
    ],
)
def test_a_bad_token_setting_names_the_token_never_its_value(text: str, match: str) -> None:
    with pytest.raises(DefinitionError, match=match) as caught:
        load_settings(env={"WFRAY_API_TOKENS": text}, data_dir="/tmp/wfray-unused")
    assert "long-enough-secret-1" not in str(caught.value)
