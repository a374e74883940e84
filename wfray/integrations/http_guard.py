"""Where `http_request` may connect: the SSRF guard and the transport that holds to it.

A run input is hostile (issue 13), so a caller must not turn the io workers against the
cluster: its loopback services, private networks, or the cloud metadata service at
169.254.169.254. Before each hop (the first request and every redirect) the guard resolves
the host once through a `Resolver` and refuses loopback, private, link-local, multicast,
reserved, unspecified and other non-global addresses, IPv4 addresses hidden in IPv6
(::ffff:127.0.0.1, NAT64, 6to4, Teredo) and the numeric forms the C resolver accepts
(2130706433, 0x7f.1, 0177.0.0.1), unless the operator allows the host or its network on the
worker (WFRAY_HTTP_ALLOW_HOSTS, WFRAY_HTTP_ALLOW_NETWORKS).

The connection then goes to the address that was checked, never to a second lookup (no DNS
rebinding between check and connect): the transport's network backend connects to the pinned
address while TLS still sends and verifies the original name. Proxy variables are ignored (a
proxy would resolve the name itself). Every socket operation is clipped to one deadline for
the whole request, so a server that drips a byte at a time cannot hold an io thread longer.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import ssl
import time
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

import httpcore
import httpx

# its home before every error moved to domain/errors.py; users import it from here
from wfray.domain.errors import DestinationRefusedError as DestinationRefusedError
from wfray.domain.errors import NonRetryableError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_MAX_REDIRECTS = 5
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# what inet_aton would read as an IPv4 address: 2130706433, 0x7f.1, 0177.0.0.1, 127.1
_NUMERIC_HOST = re.compile(r"^[0-9][0-9a-fx.]*$", re.IGNORECASE)


class Resolver(Protocol):
    """Turns a host name into the addresses to connect to (the guard's one lookup)."""

    def resolve(self, host: str, port: int) -> list[IPAddress]:
        """All addresses of `host`; raises OSError when the name cannot be resolved."""
        ...


class SystemResolver:
    """The operating system's resolver (getaddrinfo)."""

    def resolve(self, host: str, port: int) -> list[IPAddress]:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        found = (ipaddress.ip_address(str(info[4][0])) for info in infos)
        return list(dict.fromkeys(found))


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """The operator's rules for http_request, read on the worker (`from_env`).

    Attributes:
        allow_hosts: host names always allowed, whatever they resolve to; ".corp.example"
            (or "*.corp.example") allows every name under it.
        allow_networks: networks whose addresses are allowed (10.1.0.0/16, 127.0.0.1/32).
        timeout_s: the longest a request may take, redirects and body included; a caller
            may ask for less, never more.
        max_body_bytes: the most of a response body kept; a caller may ask for less.
        max_redirects: redirects followed at most.
    """

    allow_hosts: tuple[str, ...] = ()
    allow_networks: tuple[IPNetwork, ...] = ()
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_redirects: int = DEFAULT_MAX_REDIRECTS

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> HttpLimits:
        """WFRAY_HTTP_ALLOW_HOSTS and _ALLOW_NETWORKS (comma-separated), WFRAY_HTTP_TIMEOUT_S,
        _MAX_BODY_BYTES and _MAX_REDIRECTS."""
        env = os.environ if env is None else env
        hosts = tuple(h.strip().lower().rstrip(".") for h in _items(env, "ALLOW_HOSTS"))
        networks = []
        for item in _items(env, "ALLOW_NETWORKS"):
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError as exc:
                raise NonRetryableError(
                    f"WFRAY_HTTP_ALLOW_NETWORKS on this worker: {item!r} is not a network "
                    "such as 10.1.0.0/16 or 127.0.0.1/32"
                ) from exc
        limits = cls(
            hosts,
            tuple(networks),
            _number(env, "TIMEOUT_S", float, DEFAULT_TIMEOUT_S),
            _number(env, "MAX_BODY_BYTES", int, DEFAULT_MAX_BODY_BYTES),
            _number(env, "MAX_REDIRECTS", int, DEFAULT_MAX_REDIRECTS),
        )
        if limits.timeout_s <= 0 or limits.max_body_bytes < 0 or limits.max_redirects < 0:
            raise NonRetryableError(
                "WFRAY_HTTP_TIMEOUT_S must be positive, WFRAY_HTTP_MAX_BODY_BYTES and "
                f"WFRAY_HTTP_MAX_REDIRECTS not negative; this worker has {limits.timeout_s}, "
                f"{limits.max_body_bytes} and {limits.max_redirects}"
            )
        return limits

    def host_allowed(self, host: str) -> bool:
        name = host.lower().rstrip(".")
        for allowed in self.allow_hosts:
            suffix = allowed.removeprefix("*")
            if name == allowed or (suffix.startswith(".") and name.endswith(suffix)):
                return True
        return False

    def address_allowed(self, address: IPAddress) -> bool:
        forms = (address, *_embedded(address))
        return any(form in network for form in forms for network in self.allow_networks)


def _items(env: Mapping[str, str], name: str) -> list[str]:
    return [item.strip() for item in env.get(f"WFRAY_HTTP_{name}", "").split(",") if item.strip()]


_N = typing.TypeVar("_N", int, float)


def _number(env: Mapping[str, str], name: str, kind: type[_N], default: _N) -> _N:
    raw = env.get(f"WFRAY_HTTP_{name}")
    if raw is None or not raw.strip():
        return default
    try:
        return kind(raw)
    except ValueError as exc:
        raise NonRetryableError(
            f"WFRAY_HTTP_{name} on this worker must be a number, got {raw!r}"
        ) from exc


def _embedded(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (and reaches, through the right gateway)."""
    if isinstance(address, ipaddress.IPv4Address):
        return []
    found = [address.ipv4_mapped, address.sixtofour]
    if address.teredo is not None:
        found.extend(address.teredo)
    if address in _NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return [a for a in found if a is not None]


def why_refused(address: IPAddress) -> str | None:
    """Why the guard refuses `address` by default, or None for a public address."""
    # the IPv4 address inside first: it names what is reached (a v6 "private" says less)
    for form in (*_embedded(address), address):
        reason = _reason(form)
        if reason is not None:
            return reason if form is address else f"an IPv6 address carrying {form}, {reason}"
    return None


def _reason(address: IPAddress) -> str | None:
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address (where cloud metadata services answer)"
    if address.is_multicast:
        return "a multicast address"
    if address.is_reserved:
        return "a reserved address"
    if address.is_private:
        return "a private address"
    if not address.is_global:
        return "an address that is not globally routable"
    return None


def literal_address(host: str) -> IPAddress | None:
    """The address a host names by itself (an IP literal in any form), else None."""
    text = host.replace("%25", "%")  # an IPv6 zone as it appears in a URL
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if _NUMERIC_HOST.match(host):
        try:  # the forms the C resolver (and so a browser or curl) reads as IPv4
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


class HttpGuard:
    """Checks each request's destination against the operator's rules.

    Args:
        limits: the operator's rules (HttpLimits.from_env() on a worker).
        resolver: where host names are looked up, once per hop.
    """

    def __init__(self, limits: HttpLimits, resolver: Resolver | None = None) -> None:
        self.limits = limits
        self.resolver = resolver if resolver is not None else SystemResolver()

    def check(self, url: httpx.URL) -> IPAddress:
        """The address to connect to for `url`; raises DestinationRefusedError when the
        destination is not allowed, httpx.ConnectError when the name does not resolve."""
        if url.scheme not in ("http", "https"):
            raise DestinationRefusedError(
                f"{url.scheme}:// is not supported: http_request sends http and https only"
            )
        host = url.raw_host.decode("ascii")
        if not host:
            raise DestinationRefusedError("the URL names no host")
        port = url.port or (443 if url.scheme == "https" else 80)
        literal = literal_address(host)
        if literal is not None:
            addresses = [literal]
        else:
            try:
                addresses = self.resolver.resolve(host, port)
            except OSError as exc:
                raise httpx.ConnectError(f"cannot resolve {host}: {exc}") from exc
            if not addresses:
                raise httpx.ConnectError(f"cannot resolve {host}: no addresses")
        if self.limits.host_allowed(host):
            return addresses[0]
        for address in addresses:
            reason = why_refused(address)
            if reason is not None and not self.limits.address_allowed(address):
                raise DestinationRefusedError(_refusal(host, literal, address, reason))
        return addresses[0]


def _refusal(host: str, literal: IPAddress | None, address: IPAddress, reason: str) -> str:
    if literal is None:
        what = f"{host} resolves to {address},"
    elif _standard_literal(host):
        what = f"{host} is"
    else:  # 2130706433, 0x7f.1: say which address it stands for
        what = f"{host} is {address},"
    network = ipaddress.ip_network(address)  # the single address, as /32 or /128
    allow = f"WFRAY_HTTP_ALLOW_NETWORKS={network}"
    if literal is None:
        allow = f"WFRAY_HTTP_ALLOW_HOSTS={host} or {allow}"
    return (
        f"refused to connect: {what} {reason}, which http_request does not call unless the "
        f"operator allows it on the workers ({allow})"
    )


def _standard_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.replace("%25", "%"))
    except ValueError:
        return False
    return True


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write ends by the request's deadline."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: float) -> None:
        self.inner = inner
        self.deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.inner.read(max_bytes, _clip(timeout, self.deadline, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.inner.write(buffer, _clip(timeout, self.deadline, httpcore.WriteTimeout))

    def close(self) -> None:
        self.inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        clipped = _clip(timeout, self.deadline, httpcore.ConnectTimeout)
        return _DeadlineStream(
            self.inner.start_tls(ssl_context, server_hostname, clipped), self.deadline
        )

    def get_extra_info(self, info: str) -> typing.Any:
        return self.inner.get_extra_info(info)


def _clip(timeout: float | None, deadline: float, error: type[Exception]) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise error("the request ran out of its time (WFRAY_HTTP_TIMEOUT_S or timeout_s)")
    return left if timeout is None else min(timeout, left)


class _PinnedBackend(httpcore.SyncBackend):
    """Connects to the checked address only, whatever name the connection is for."""

    def __init__(self, host: str, address: IPAddress, deadline: float) -> None:
        self.host = host
        self.address = address
        self.deadline = deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        if host != self.host:
            raise httpcore.ConnectError(f"{host} was not checked (this connection is {self.host})")
        clipped = _clip(timeout, self.deadline, httpcore.ConnectTimeout)
        stream = super().connect_tcp(
            str(self.address), port, clipped, local_address, socket_options
        )
        return _DeadlineStream(stream, self.deadline)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("http_request does not connect to unix sockets")


class GuardedTransport(httpx.BaseTransport):
    """Checks every request it sends, then sends it over a connection pinned to the checked
    address; TLS keeps the original name for SNI and certificate checks.

    Args:
        guard: the destination check.
        deadline: time.monotonic() by which the whole exchange must end.
        ssl_context: the TLS settings (certificate verification on by default).
    """

    def __init__(
        self, guard: HttpGuard, deadline: float, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.guard = guard
        self.deadline = deadline
        # certifi's CAs, or the worker's SSL_CERT_FILE / SSL_CERT_DIR (not proxies: trust_env
        # is off for the client)
        self.ssl_context = ssl_context if ssl_context is not None else httpx.create_ssl_context()
        self._pools: list[httpx.HTTPTransport] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        address = self.guard.check(request.url)
        backend = _PinnedBackend(request.url.raw_host.decode("ascii"), address, self.deadline)
        pool = httpx.HTTPTransport(verify=self.ssl_context, trust_env=False)
        # httpx takes no network backend of its own: give its pool ours (the pin tests in
        # tests/security/test_ssrf.py fail loudly should httpx change this attribute)
        pool._pool = httpcore.ConnectionPool(ssl_context=self.ssl_context, network_backend=backend)
        self._pools.append(pool)
        return pool.handle_request(request)

    def close(self) -> None:
        for pool in self._pools:
            pool.close()
