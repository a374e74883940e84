"""SSRF through the built-in http_request task (issue 13, item 2).

Real HTTP servers on loopback stand in for the cluster's internal services: every attack
must be refused before a byte reaches them, unless the operator allowed the address. A
resolver stub plays DNS (names that resolve to loopback, a name rebound between lookups).
"""

from __future__ import annotations

import ipaddress
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import start_wfray
from tests.security._ssrf_support import Server, StubResolver, certificates, same_port, serve
from wfray.domain.errors import DestinationRefusedError, NonRetryableError, RetryLater
from wfray.domain.status import AttemptStatus, RunStatus
from wfray.integrations.http import http_request, send_request
from wfray.integrations.http_guard import (
    HttpGuard,
    HttpLimits,
    literal_address,
    why_refused,
)
from wfray.sdk.secrets import SecretRef

_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy")
_GUARD_VARIABLES = (
    "WFRAY_HTTP_ALLOW_HOSTS",
    "WFRAY_HTTP_ALLOW_NETWORKS",
    "WFRAY_HTTP_TIMEOUT_S",
    "WFRAY_HTTP_MAX_BODY_BYTES",
    "WFRAY_HTTP_MAX_REDIRECTS",
)


@pytest.fixture(autouse=True)
def _clean_worker_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sets the operator's settings it means; none leak in from the machine."""
    for name in (*_GUARD_VARIABLES, *_PROXY_VARIABLES, "NO_PROXY", "no_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def internal() -> Iterator[Server]:
    """An internal service on loopback that no caller should reach."""
    with serve({"/admin": (200, {}, b"secret")}) as server:
        yield server


def test_a_name_that_resolves_to_loopback_is_refused(internal: Server) -> None:
    resolver = StubResolver({"evil.test": ["127.0.0.1"]})
    with pytest.raises(DestinationRefusedError) as caught:
        send_request(HttpGuard(HttpLimits(), resolver), f"http://evil.test:{internal.port}/admin")
    message = str(caught.value)
    assert f"GET http://evil.test:{internal.port}/admin" in message
    assert "evil.test resolves to 127.0.0.1, a loopback address" in message
    assert "WFRAY_HTTP_ALLOW_HOSTS=evil.test or WFRAY_HTTP_ALLOW_NETWORKS=127.0.0.1/32" in message
    assert isinstance(caught.value, NonRetryableError)
    assert internal.seen == []


def test_localhost_is_refused(internal: Server) -> None:
    with pytest.raises(DestinationRefusedError, match=r"localhost resolves to (127\.0\.0\.1|::1)"):
        http_request(f"http://localhost:{internal.port}/admin", timeout_s=5)
    assert internal.seen == []


def test_a_loopback_literal_is_refused(internal: Server) -> None:
    with pytest.raises(DestinationRefusedError, match=r"127\.0\.0\.1 is a loopback address"):
        http_request(f"{internal.url}/admin", timeout_s=5)
    assert internal.seen == []


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("2130706433", "127.0.0.1"),  # decimal
        ("0x7f000001", "127.0.0.1"),  # hex
        ("0x7f.0.0.1", "127.0.0.1"),  # hex first part
        ("017700000001", "127.0.0.1"),  # octal
        ("127.1", "127.0.0.1"),  # short form
    ],
)
def test_numeric_encodings_of_loopback_are_refused(
    internal: Server, host: str, address: str
) -> None:
    with pytest.raises(DestinationRefusedError) as caught:
        http_request(f"http://{host}:{internal.port}/admin", timeout_s=5)
    assert f"{host} is {address}, a loopback address" in str(caught.value)
    assert internal.seen == []


def test_an_allowed_numeric_form_connects_to_the_address_it_stands_for(
    internal: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WFRAY_HTTP_ALLOW_NETWORKS", "127.0.0.1/32")
    result = http_request(f"http://2130706433:{internal.port}/admin", timeout_s=5)
    assert result.body == "secret"
    assert internal.seen == [("/admin", f"2130706433:{internal.port}")]


def test_ipv6_loopback_and_ipv4_mapped_loopback_are_refused() -> None:
    with serve(host="::1") as v6, serve() as v4:
        with pytest.raises(DestinationRefusedError, match=r"::1 is a loopback address"):
            http_request(f"{v6.url}/", timeout_s=5)
        mapped = f"http://[::ffff:127.0.0.1]:{v4.port}/"
        with pytest.raises(DestinationRefusedError) as caught:
            http_request(mapped, timeout_s=5)
        assert "::ffff:127.0.0.1 is an IPv6 address carrying 127.0.0.1, a loopback address" in str(
            caught.value
        )
        assert v6.seen == [] and v4.seen == []


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://[fe80::1]/", "fe80::1 is a link-local address"),
        ("http://[fe80::1%25lo]/", "link-local"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
        ("http://[::ffff:169.254.169.254]/", "carrying 169.254.169.254, a link-local address"),
        ("http://[64:ff9b::a9fe:a9fe]/", "carrying 169.254.169.254, a link-local address"),
        ("http://10.0.0.1/", "private"),
        ("http://[fd00::1]/", "private"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://[::]/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://[ff02::1]/", "multicast"),
        ("http://240.0.0.1/", "reserved"),
        ("http://100.64.0.1/", "not globally routable"),
    ],
)
def test_internal_addresses_are_refused_before_any_connection(url: str, reason: str) -> None:
    # timeout_s=2: code without the guard would try to connect and time out instead
    with pytest.raises(DestinationRefusedError, match=re.escape(reason)):
        http_request(url, timeout_s=2)


def test_a_redirect_from_an_allowed_server_to_the_metadata_service_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    metadata = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
    monkeypatch.setenv("WFRAY_HTTP_ALLOW_NETWORKS", "127.0.0.1/32")
    with (
        serve({"/go": (302, {"Location": metadata}, b"")}) as allowed,
        pytest.raises(DestinationRefusedError) as caught,
    ):
        http_request(f"{allowed.url}/go", timeout_s=2)
    message = str(caught.value)
    assert f"redirected to {metadata}" in message
    assert "169.254.169.254 is a link-local address" in message
    assert "WFRAY_HTTP_ALLOW_NETWORKS=169.254.169.254/32" in message
    assert allowed.seen == [("/go", f"127.0.0.1:{allowed.port}")]


def test_each_redirect_is_checked_again_even_to_the_same_machine(
    monkeypatch: pytest.MonkeyPatch, internal: Server
) -> None:
    # the operator allows one local service (on 127.0.0.2); it may not bounce a caller on
    # to another one (127.0.0.1)
    monkeypatch.setenv("WFRAY_HTTP_ALLOW_NETWORKS", "127.0.0.2/32")
    bounce = (302, {"Location": f"{internal.url}/admin"}, b"")
    with serve({"/go": bounce}, host="127.0.0.2") as allowed:
        assert http_request(f"{allowed.url}/", timeout_s=5).body == "hello"
        with pytest.raises(DestinationRefusedError, match=r"127\.0\.0\.1 is a loopback address"):
            http_request(f"{allowed.url}/go", timeout_s=5)
    assert internal.seen == []


def test_a_secret_header_does_not_follow_a_redirect_to_another_origin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """httpx drops Authorization on a cross-origin redirect, not X-Api-Key: a header whose
    value is a secret by name goes to the first request's origin only."""
    monkeypatch.setenv("WFRAY_HTTP_ALLOW_NETWORKS", "127.0.0.1/32,127.0.0.2/32")
    monkeypatch.setenv("WFRAY_SECRET_PARTNER_KEY", "k-123-do-not-leak")
    headers: dict[str, Any] = {"X-Api-Key": SecretRef(secret="PARTNER_KEY"), "X-Plain": "p"}
    with serve(host="127.0.0.2") as elsewhere:
        same_origin = (302, {"Location": "/landed"}, b"")
        cross_origin = (302, {"Location": f"{elsewhere.url}/landed"}, b"")
        with serve({"/same": same_origin, "/cross": cross_origin}) as first:
            assert http_request(f"{first.url}/same", headers=headers, timeout_s=5).body == "hello"
            assert [h.get("x-api-key") for h in first.headers] == ["k-123-do-not-leak"] * 2
            http_request(f"{first.url}/cross", headers=headers, timeout_s=5)
            assert first.headers[-1]["x-api-key"] == "k-123-do-not-leak"
    assert [path for path, _ in elsewhere.seen] == ["/landed"]
    assert "x-api-key" not in elsewhere.headers[0]
    assert elsewhere.headers[0]["x-plain"] == "p"


def test_dns_rebinding_cannot_move_the_connection_after_the_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The name is looked up once per hop, and the connection goes to the address that was
    checked: a resolver that answers an allowed address first and loopback afterwards (a
    rebinding DNS server with TTL 0) never gets the request to loopback."""
    monkeypatch.setenv("WFRAY_HTTP_ALLOW_NETWORKS", "127.0.0.2/32")
    with same_port() as (good, evil):
        resolver = StubResolver({"rebind.test": ["127.0.0.2", "127.0.0.1"]})
        guard = HttpGuard(HttpLimits.from_env(), resolver)
        result = send_request(guard, f"http://rebind.test:{good.port}/page", timeout_s=5)
        assert result.body == "hello"
        assert result.url == f"http://rebind.test:{good.port}/page"
        assert resolver.calls == ["rebind.test"]
        # the checked server got it, under the original name (Host header kept)
        assert good.seen == [("/page", f"rebind.test:{good.port}")]
        assert evil.seen == []
        # the next request looks the name up again: loopback now, refused
        with pytest.raises(DestinationRefusedError, match=r"rebind\.test resolves to 127\.0\.0\.1"):
            send_request(guard, f"http://rebind.test:{good.port}/page", timeout_s=5)
        assert resolver.calls == ["rebind.test", "rebind.test"]
    assert evil.seen == []


def test_a_redirect_to_a_rebound_name_is_looked_up_and_checked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WFRAY_HTTP_ALLOW_NETWORKS", "127.0.0.2/32")
    bounce = (302, {"Location": "/admin"}, b"")  # same name, same port, new lookup
    with same_port({"/go": bounce}) as (good, evil):
        resolver = StubResolver({"rebind.test": ["127.0.0.2", "127.0.0.1"]})
        guard = HttpGuard(HttpLimits.from_env(), resolver)
        with pytest.raises(DestinationRefusedError) as caught:
            send_request(guard, f"http://rebind.test:{good.port}/go", timeout_s=5)
        assert f"redirected to http://rebind.test:{good.port}/admin" in str(caught.value)
        assert "rebind.test resolves to 127.0.0.1" in str(caught.value)
        assert resolver.calls == ["rebind.test", "rebind.test"]  # once per hop
        assert good.seen == [("/go", f"rebind.test:{good.port}")]
    assert evil.seen == []


def test_tls_goes_to_the_checked_address_but_sends_and_verifies_the_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WFRAY_HTTP_ALLOW_NETWORKS", "127.0.0.1/32")
    ca_file, context = certificates(tmp_path, "secure.test")
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # the operator's CA, as httpx reads it
    resolver = StubResolver({"secure.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
    guard = HttpGuard(HttpLimits.from_env(), resolver)
    with serve(tls=context) as server:
        result = send_request(guard, f"{server.at('secure.test', 'https')}/", timeout_s=5)
        assert result.body == "hello"
        assert server.server_names == ["secure.test"]  # SNI: the name, not 127.0.0.1
        assert server.seen == [("/", f"secure.test:{server.port}")]
        # the certificate is checked against the name asked for, not the pinned address
        with pytest.raises(RetryLater, match="CERTIFICATE_VERIFY_FAILED"):
            send_request(guard, f"{server.at('other.test', 'https')}/", timeout_s=5)
    assert len(server.seen) == 1


def test_an_allowed_host_name_is_served(monkeypatch: pytest.MonkeyPatch, internal: Server) -> None:
    monkeypatch.setenv("WFRAY_HTTP_ALLOW_HOSTS", "localhost")
    with serve(host="127.0.0.1") as v4:
        guard = HttpGuard(HttpLimits.from_env(), StubResolver({"localhost": ["127.0.0.1"]}))
        assert send_request(guard, f"http://localhost:{v4.port}/").body == "hello"
    assert internal.seen == []


def test_proxy_variables_on_the_worker_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy resolves the name itself, past the guard: the request goes direct."""
    monkeypatch.setenv("WFRAY_HTTP_ALLOW_NETWORKS", "127.0.0.1/32")
    with serve({"/": (200, {}, b"from the proxy")}) as proxy, serve() as target:
        for name in _PROXY_VARIABLES:
            monkeypatch.setenv(name, proxy.url)
        result = http_request(f"{target.url}/", timeout_s=5)
    assert result.body == "hello"
    assert target.seen == [("/", f"127.0.0.1:{target.port}")]
    assert proxy.seen == []


def test_the_operators_body_cap_is_a_ceiling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WFRAY_HTTP_ALLOW_NETWORKS", "127.0.0.1/32")
    monkeypatch.setenv("WFRAY_HTTP_MAX_BODY_BYTES", "100")
    with serve({"/big": (200, {}, b"x" * 10_000)}) as server:
        asked_for_more = http_request(f"{server.url}/big", max_body_bytes=10**9)
        asked_for_less = http_request(f"{server.url}/big", max_body_bytes=10)
    assert asked_for_more.truncated and len(asked_for_more.body) == 100
    assert asked_for_less.truncated and len(asked_for_less.body) == 10


def test_the_operators_timeout_bounds_the_whole_request_against_a_slow_drip(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server that sends a byte every 0.1 s never trips a per-read timeout; the deadline
    covers the whole request, and a caller cannot raise it."""
    monkeypatch.setenv("WFRAY_HTTP_ALLOW_NETWORKS", "127.0.0.1/32")
    monkeypatch.setenv("WFRAY_HTTP_TIMEOUT_S", "0.5")
    stop = threading.Event()
    with serve(drip=stop) as server:
        started = time.monotonic()
        try:
            with pytest.raises(RetryLater, match="timed out"):
                http_request(f"{server.url}/drip", timeout_s=60)
        finally:
            stop.set()
        took = time.monotonic() - started
    assert took < 2.5  # the drip lasts 5 s


def test_redirects_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WFRAY_HTTP_ALLOW_NETWORKS", "127.0.0.1/32")
    monkeypatch.setenv("WFRAY_HTTP_MAX_REDIRECTS", "2")
    with (
        serve({"/loop": (302, {"Location": "/loop"}, b"")}) as server,
        pytest.raises(NonRetryableError, match=r"more than 2 times \(WFRAY_HTTP_MAX"),
    ):
        http_request(f"{server.url}/loop", timeout_s=5)
    assert len(server.seen) == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0251.0376.0251.0376", "169.254.169.254"),
        ("::ffff:a9fe:a9fe", "::ffff:a9fe:a9fe"),
        ("example.org", None),
        ("cafe.be", None),
        ("1e100.net", None),
    ],
)
def test_literal_addresses_in_every_form(text: str, expected: str | None) -> None:
    found = literal_address(text)
    assert (None if found is None else str(found)) == expected


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("93.184.215.14", False),
        ("2606:4700:4700::1111", False),
        ("2002:5db8:d70e::1", False),  # 6to4 of a public address
        ("2002:7f00:1::1", True),  # 6to4 of 127.0.0.1
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", True),  # Teredo to 127.0.0.1
        ("::127.0.0.1", True),  # IPv4-compatible (deprecated)
        ("192.168.1.1", True),
        ("172.16.0.1", True),
    ],
)
def test_which_addresses_are_refused(address: str, refused: bool) -> None:
    assert (why_refused(ipaddress.ip_address(address)) is not None) == refused


def test_allowed_hosts_and_networks_read_from_the_worker_env() -> None:
    limits = HttpLimits.from_env(
        {
            "WFRAY_HTTP_ALLOW_HOSTS": "Api.Internal., *.corp.example",
            "WFRAY_HTTP_ALLOW_NETWORKS": "10.1.0.0/16, 127.0.0.1",
        }
    )
    assert limits.host_allowed("api.internal") and limits.host_allowed("a.b.corp.example")
    assert not limits.host_allowed("corp.example.evil.test")
    assert not limits.host_allowed("xapi.internal")
    assert limits.address_allowed(ipaddress.ip_address("10.1.2.3"))
    assert limits.address_allowed(ipaddress.ip_address("::ffff:127.0.0.1"))
    assert not limits.address_allowed(ipaddress.ip_address("10.2.0.1"))
    with pytest.raises(NonRetryableError, match="WFRAY_HTTP_ALLOW_NETWORKS on this worker"):
        HttpLimits.from_env({"WFRAY_HTTP_ALLOW_NETWORKS": "intranet"})
    with pytest.raises(NonRetryableError, match="WFRAY_HTTP_TIMEOUT_S must be positive"):
        HttpLimits.from_env({"WFRAY_HTTP_TIMEOUT_S": "0"})


def test_an_unknown_name_asks_for_a_retry() -> None:
    guard = HttpGuard(HttpLimits(), StubResolver({}))
    with pytest.raises(RetryLater, match=r"cannot resolve nowhere\.test"):
        send_request(guard, "http://nowhere.test/")


# --- the same refusal in a real wfray run on Ray (io executor) ---------------------------


@pytest.fixture(scope="module")
def wf(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    import wfray.integrations  # noqa: F401  (declares the built-in tasks)

    client = start_wfray(tmp_path_factory.mktemp("wfray"))
    yield client
    client.shutdown()


@pytest.mark.timeout(180)
def test_on_ray_a_refused_request_fails_at_once_with_the_reason(wf: Any, internal: Server) -> None:
    run = wf.submit("http_request", {"url": f"http://localhost:{internal.port}/admin"})
    (view,) = wf.wait([run.run_id], timeout=120)
    assert view.status is RunStatus.FAILED
    attempts = run.detail().attempts
    assert len(attempts) == 1  # not retried: an address does not become allowed by waiting
    (attempt,) = attempts
    assert attempt.status is AttemptStatus.FAILED
    assert attempt.executor.startswith("io")
    assert attempt.error_type == "wfray.domain.errors.DestinationRefusedError"
    assert "localhost resolves to" in (attempt.error_message or "")
    assert "WFRAY_HTTP_ALLOW_HOSTS=localhost" in (attempt.error_message or "")
    assert internal.seen == []
