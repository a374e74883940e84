"""What the SSRF and io-timeout attacks need: loopback servers that record what reached them,
a resolver stub, and a sync io step stuck on a slow-drip server (importable by Ray workers as
tests.security._ssrf_support)."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from wfray.domain.policy import RetryPolicy
from wfray.integrations.http_guard import IPAddress
from wfray.sdk.tasks import task

# path -> (status, headers, body)
Route = tuple[int, dict[str, str], bytes]


@dataclass
class Server:
    """A loopback HTTP server and every request that reached it (path, Host header)."""

    host: str
    port: int
    seen: list[tuple[str, str]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def at(self, name: str, scheme: str = "http") -> str:
        """This server's base URL under another host name."""
        return f"{scheme}://{name}:{self.port}"


class _V6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


@contextmanager
def serve(
    routes: dict[str, Route] | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    drip: threading.Event | None = None,
    tls: ssl.SSLContext | None = None,
) -> Iterator[Server]:
    """Serve `routes` on host:port (0: any free port); unknown paths answer 200 "hello".

    With `drip`, the path /drip answers 200 and sends one byte every 0.1 s for 5 s, or until
    `drip` is set (the test's end), like a server that wants to hold its client. With `tls`,
    it speaks HTTPS and records the names clients ask for (SNI) in `server_names`.
    """
    routes = routes or {}
    record = Server(host, port)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _answer(self) -> None:
            record.seen.append((self.path, self.headers.get("Host", "")))
            record.headers.append({k.lower(): v for k, v in self.headers.items()})
            if drip is not None and self.path == "/drip":
                self.send_response(200)
                self.send_header("Content-Length", "50")
                self.end_headers()
                for _ in range(50):
                    if drip.wait(0.1):
                        return
                    self.wfile.write(b".")
                    self.wfile.flush()
                return
            status, headers, body = routes.get(self.path, (200, {}, b"hello"))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = _answer

    server_class = _V6Server if ":" in host else ThreadingHTTPServer
    httpd = server_class((host, port), Handler)
    httpd.daemon_threads = True
    record.port = httpd.server_address[1]
    if tls is not None:
        tls.sni_callback = lambda _sock, name, _ctx: record.server_names.append(name)
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield record
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@contextmanager
def same_port(good_routes: dict[str, Route] | None = None) -> Iterator[tuple[Server, Server]]:
    """Two servers on one port: an allowed one on 127.0.0.2 and an internal one on
    127.0.0.1, so only the address a connection goes to tells them apart."""
    for _ in range(20):
        with serve(good_routes, host="127.0.0.2") as good:
            try:
                internal = serve(host="127.0.0.1", port=good.port)
                evil = internal.__enter__()
            except OSError:  # the port is taken on 127.0.0.1: try another
                continue
            try:
                yield good, evil
            finally:
                internal.__exit__(None, None, None)
            return
    raise AssertionError("no port free on both 127.0.0.1 and 127.0.0.2")


def certificates(folder: Path, name: str) -> tuple[Path, ssl.SSLContext]:
    """A throwaway CA (its PEM file, for SSL_CERT_FILE) and a server context whose
    certificate, signed by it, is valid for `name` only."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)

    def build(subject: str, issuer: x509.Name, key: Any, signer: Any, ca: bool) -> Any:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wfray test CA")])
    ca_cert = build("wfray test CA", ca_name, ca_key, ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = build(name, ca_name, key, ca_key, ca=False)
    ca_file = folder / "ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    chain = folder / f"{name}.pem"
    chain.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain)
    return ca_file, context


class StubResolver:
    """A resolver with fixed answers; a list of answers is handed out one per lookup (the
    last one repeats), to play a DNS server that rebinds a name between lookups."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    def resolve(self, host: str, port: int) -> list[IPAddress]:
        self.calls.append(host)
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        queue = self.answers[host]
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        return [ipaddress.ip_address(answer)]


@task(pool="io", retry=RetryPolicy(max_attempts=2, initial_delay_s=0.1))
def read_slowly(url: str) -> int:
    """A user's sync io step with a per-read timeout only, as most HTTP clients default to:
    a server that drips a byte at a time keeps it busy for as long as it likes."""
    with httpx.stream("GET", url, timeout=10.0, trust_env=False) as response:
        return sum(len(chunk) for chunk in response.iter_bytes())


@task(pool="io", timeout_s=30.0)
def read_slowly_within_its_own_timeout(url: str) -> int:
    """The same, with a timeout of its own: the default does not cut it short."""
    with httpx.stream("GET", url, timeout=10.0, trust_env=False) as response:
        return sum(len(chunk) for chunk in response.iter_bytes())
