"""The http_request task against a real HTTP server on loopback, and its pure classifiers."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.integrations import run_inline
from wfray.domain.errors import NonRetryableError, RetryLater
from wfray.integrations.http import (
    HttpResponse,
    backoff_s,
    classify_response,
    http_request,
    mask_url,
    parse_retry_after,
)
from wfray.sdk.definition import registered

NOW = datetime(2025, 3, 10, 12, 0, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _allow_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """The servers here listen on loopback, which the SSRF guard refuses unless allowed."""
    monkeypatch.setenv("WFRAY_HTTP_ALLOW_NETWORKS", "127.0.0.1/32")


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass

    def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _route(self) -> None:
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        received = self.rfile.read(length) if length else b""
        if path == "/echo":
            echo = {
                "method": self.command,
                "query": parse_qs(urlsplit(self.path).query),
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": received.decode(),
            }
            self._answer(
                200,
                json.dumps(echo).encode(),
                {"Content-Type": "application/json", "Set-Cookie": "a=1"},
            )
        elif path == "/busy":
            self._answer(429, b"slow down", {"Retry-After": "7"})
        elif path == "/busy-until":
            until = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
            self._answer(429, b"slow down", {"Retry-After": until})
        elif path == "/down":
            self._answer(503, b"maintenance")
        elif path == "/big":
            self._answer(200, "ä".encode() * 3000, {"Content-Type": "text/plain; charset=utf-8"})
        elif path == "/slow":
            time.sleep(1.5)
            self._answer(200, b"late")
        elif path == "/moved":
            self._answer(302, b"", {"Location": "/echo"})
        else:
            self._answer(404, b"no such thing")

    do_GET = do_POST = do_PUT = do_DELETE = _route


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_success_returns_status_headers_body_and_timing(server: str) -> None:
    result = http_request(
        f"{server}/echo?fixed=1",
        method="post",
        headers={"X-Trace": "abc"},
        params={"page": "2"},
        json_body={"order": 7},
    )
    assert result.status == 200
    assert result.headers["content-type"] == "application/json"
    assert result.headers["set-cookie"] == "a=1"
    assert not result.truncated
    assert result.elapsed_ms > 0
    echo = json.loads(result.body)
    assert echo["method"] == "POST"
    assert echo["query"] == {"fixed": ["1"], "page": ["2"]}
    assert echo["headers"]["x-trace"] == "abc"
    assert echo["headers"]["content-type"] == "application/json"
    assert json.loads(echo["body"]) == {"order": 7}
    # the result is what the step runner stores: it must survive a JSON round trip
    assert type(result).model_validate_json(result.model_dump_json()) == result


def test_text_body_and_redirect_are_followed(server: str) -> None:
    result = http_request(f"{server}/moved", method="PUT", text_body="grüße")
    assert result.status == 200
    assert result.url == f"{server}/echo"
    assert json.loads(result.body)["method"] == "GET"  # 302 turns the PUT into a GET


def test_429_with_seconds_retry_after_asks_for_that_delay(server: str) -> None:
    with pytest.raises(RetryLater) as caught:
        http_request(f"{server}/busy")
    assert caught.value.delay_s == 7.0
    assert "429" in str(caught.value) and "Retry-After" in str(caught.value)


def test_429_with_http_date_retry_after_asks_for_the_time_left(server: str) -> None:
    with pytest.raises(RetryLater) as caught:
        http_request(f"{server}/busy-until")
    assert 115 <= caught.value.delay_s <= 120


def test_503_without_retry_after_uses_the_default_backoff(server: str) -> None:
    with pytest.raises(RetryLater) as caught:
        http_request(f"{server}/down")
    assert caught.value.delay_s == backoff_s(1) == 1.0
    assert "503" in str(caught.value)


def test_404_is_not_retried_and_names_method_masked_url_and_status(server: str) -> None:
    port = server.rsplit(":", 1)[1]
    with pytest.raises(NonRetryableError) as caught:
        http_request(f"http://bob:hunter2@127.0.0.1:{port}/missing?token=t0p", method="delete")
    message = str(caught.value)
    assert f"DELETE http://bob:***@127.0.0.1:{port}/missing?token=***" in message
    assert "404" in message
    assert "hunter2" not in message and "t0p" not in message


def test_body_is_bounded_and_truncation_flagged(server: str) -> None:
    result = http_request(f"{server}/big", max_body_bytes=1001)
    assert result.truncated
    # 1001 bytes hold 500 two-byte characters and half of the next one
    assert result.body == "ä" * 500 + "\ufffd"
    whole = http_request(f"{server}/big")
    assert not whole.truncated and whole.body == "ä" * 3000


def test_timeout_asks_for_a_retry(server: str) -> None:
    with pytest.raises(RetryLater) as caught:
        http_request(f"{server}/slow", timeout_s=0.3)
    assert "timed out" in str(caught.value)


def test_refused_connection_asks_for_a_retry() -> None:
    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(RetryLater) as caught:
        http_request(f"http://127.0.0.1:{port}/")
    assert "ConnectError" in str(caught.value)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"url": "http://127.0.0.1/", "method": "BREW"}, "method must be one of"),
        ({"url": "http://127.0.0.1/", "json_body": {}, "text_body": "x"}, "not both"),
        ({"url": "ftp://127.0.0.1/"}, "ftp:// is not supported"),
    ],
)
def test_bad_requests_fail_without_retry(kwargs: dict[str, object], expected: str) -> None:
    with pytest.raises(NonRetryableError, match=expected):
        http_request(**kwargs)  # type: ignore[arg-type]


def test_task_is_declared_on_the_io_pool_with_a_validated_input() -> None:
    flow = registered("http_request")
    assert flow is not None
    (step,) = flow.schema.steps
    assert step.pool == "io"
    assert flow.input_model is not None
    parsed = flow.input_model.model_validate({"url": "http://x/", "timeout_s": "2.5"})
    assert parsed.timeout_s == 2.5  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("120", 120.0),
        (" 0 ", 0.0),
        ("Mon, 10 Mar 2025 12:01:30 GMT", 90.0),
        ("Mon, 10 Mar 2025 11:00:00 GMT", 0.0),  # already past
        ("soon", None),
        ("-5", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


@pytest.mark.parametrize("status", [200, 201, 204, 301, 304])
def test_classify_success(status: int) -> None:
    assert classify_response("GET", "http://h/", status, None, NOW) is None


def test_classify_retryable_statuses() -> None:
    busy = classify_response("GET", "http://h/", 429, "30", NOW)
    assert isinstance(busy, RetryLater) and busy.delay_s == 30.0
    down = classify_response("GET", "http://h/", 502, None, NOW, attempt=4)
    assert isinstance(down, RetryLater) and down.delay_s == 8.0
    capped = classify_response("GET", "http://h/", 500, None, NOW, attempt=40)
    assert isinstance(capped, RetryLater) and capped.delay_s == 300.0


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
def test_classify_client_errors_as_final(status: int) -> None:
    error = classify_response("post", "https://u:pw@h/x", status, "5", NOW)
    assert isinstance(error, NonRetryableError)
    assert str(error).startswith(f"POST https://u:***@h/x answered {status}")


def test_mask_url_leaves_harmless_urls_alone() -> None:
    assert mask_url("https://h/p?page=2") == "https://h/p?page=2"
    assert mask_url("https://user@h/") == "https://user@h/"


class _FlakyHandler(BaseHTTPRequestHandler):
    """Answers 429 with Retry-After: 0 to the first request, then 200."""

    calls = 0

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        type(self).calls += 1
        busy = type(self).calls == 1
        body = b"busy" if busy else b"done"
        self.send_response(429 if busy else 200)
        if busy:
            self.send_header("Retry-After", "0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_through_the_coordinator_a_429_is_retried_and_the_response_stored() -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _FlakyHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/job"
        view, attempts = run_inline(http_request, {"url": url, "timeout_s": 5})
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
    assert view.status.name == "COMPLETED", view.error
    assert [a.error_type for a in attempts] == ["wfray.domain.errors.RetryLater", None]
    stored = HttpResponse.model_validate_json(view.result_json or "")
    assert (stored.status, stored.body, stored.url) == (200, "done", url)
