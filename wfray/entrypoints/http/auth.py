"""Who may call what: scoped bearer tokens, and the guards a browser cannot pass.

    read    list and show runs, logs, workflows, queues, schedules; /metrics and the docs
    submit  read, and start runs and publish events
    admin   submit, and cancel, retry, and manage schedules

Each route declares the one scope it needs (`needs("read")`); `scope_of(route)` reads it back,
so a test can walk the routes. Without any token configured every route is open and the API
listens on loopback only (`serve.check_bind`); the browser guards below still hold there:

- the Host header must name this API (no DNS rebinding of a loopback port);
- a /v1 request body must be `application/json` (415), and an unsafe /v1 request coming
  from a web page of another origin is refused (403): no cross-site request forgery.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.responses import Response

from wfray.config import API_SCOPES, ApiToken, Settings

ANONYMOUS = "anonymous"  # the caller's name when the API has no token
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

BEARER = HTTPBearer(auto_error=False, description="a token of WFRAY_API_TOKEN(S)")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a request came from: the token's name (recorded on `request.state.caller`)."""

    name: str
    scopes: frozenset[str]


def granted(scopes: frozenset[str]) -> frozenset[str]:
    """A token's scopes with those each includes (admin > submit > read)."""
    top = max((API_SCOPES.index(s) for s in scopes if s in API_SCOPES), default=-1)
    return frozenset(API_SCOPES[: top + 1])


class TokenBook:
    """The configured tokens, compared in constant time (digests of equal length, every
    token tried whatever matched), so timing leaks neither a token nor which one matched."""

    def __init__(self, settings: Settings) -> None:
        tokens = list(settings.api_tokens)
        if settings.api_token:
            tokens.append(ApiToken("admin", settings.api_token, frozenset(API_SCOPES)))
        self._entries = [
            (hashlib.sha256(t.token.encode()).digest(), Caller(t.name, granted(t.scopes)))
            for t in tokens
        ]

    @property
    def enabled(self) -> bool:
        return bool(self._entries)

    def __repr__(self) -> str:
        return f"TokenBook({len(self._entries)} tokens)"

    def caller(self, given: str | None) -> Caller | None:
        """The caller a presented token belongs to; None for an unknown or missing one."""
        if not self.enabled:
            return Caller(ANONYMOUS, frozenset(API_SCOPES))
        digest = hashlib.sha256((given or "").encode()).digest()
        found = None
        for expected, caller in self._entries:
            if hmac.compare_digest(digest, expected) and given is not None:
                found = caller
        return found


# Told of every use of a scope: (who, scope, request, "granted" | "denied: why").
OnUse = Callable[[str, str, Request, str], None]
UNKNOWN_TOKEN = "(no valid token)"


def _ignore(actor: str, scope: str, request: Request, outcome: str) -> None:
    return None


class Needs:
    """The dependency a route declares: its caller must hold `scope`."""

    def __init__(self, book: TokenBook, scope: str, on_use: OnUse = _ignore) -> None:
        if scope not in API_SCOPES:
            raise ValueError(f"unknown scope {scope!r}; known: {', '.join(API_SCOPES)}")
        self.book = book
        self.scope = scope
        self.on_use = on_use

    def __call__(self, request: Request, credentials: Credentials) -> Caller:
        caller = self.book.caller(credentials.credentials if credentials else None)
        if caller is None:
            reason = "denied: a token was given but none matched" if credentials else "denied"
            self.on_use(UNKNOWN_TOKEN, self.scope, request, reason)
            raise HTTPException(
                status_code=401,
                detail="a valid bearer token is required: Authorization: Bearer <token>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        request.state.caller = caller  # the audit trail's "who"
        if self.scope not in caller.scopes:
            self.on_use(caller.name, self.scope, request, "denied: scope not granted")
            raise HTTPException(
                status_code=403,
                detail=f"token {caller.name!r} lacks the scope {self.scope!r} this route needs",
            )
        self.on_use(caller.name, self.scope, request, "granted")
        return caller


class OpenNeeds(Needs):
    """The same declaration on an API without tokens: every caller is let through (and
    the schema asks for no bearer token)."""

    def __call__(self, request: Request) -> Caller:  # type: ignore[override]
        caller = self.book.caller(None)
        assert caller is not None  # without tokens, everyone is the anonymous caller
        request.state.caller = caller
        self.on_use(caller.name, self.scope, request, "granted")
        return caller


def needs_factory(book: TokenBook, on_use: OnUse = _ignore) -> Callable[[str], Any]:
    """`needs("read")`: the route dependency requiring a scope, for `dependencies=[...]`;
    `on_use` is told of every use (the audit trail's token use)."""

    def needs(scope: str) -> Any:
        kind = Needs if book.enabled else OpenNeeds
        return Depends(kind(book, scope, on_use))

    return needs


def scope_of(route: APIRoute) -> str | None:
    """The scope a route declared, if any."""
    for dependency in route.dependant.dependencies:
        if isinstance(dependency.call, Needs):
            return dependency.call.scope
    return None


def caller_of(request: Request, book: TokenBook) -> Caller | None:
    """The caller of a route that declared no scope (/healthz), from its header if any."""
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        return None if book.enabled else book.caller(None)
    return book.caller(given.strip())


# -- browser guards ------------------------------------------------------------------------------


def allowed_hosts(settings: Settings) -> tuple[str, ...]:
    """WFRAY_API_ALLOWED_HOSTS, or the loopback names and the address the API binds."""
    if settings.api_allowed_hosts:
        return settings.api_allowed_hosts
    host = settings.api_host.strip("[]")
    if _is_wildcard(host):
        # Listening everywhere: a token guards the API, whatever name reaches it.
        return ("*",) if TokenBook(settings).enabled else LOOPBACK_HOSTS
    return tuple(dict.fromkeys((*LOOPBACK_HOSTS, host)))


def _is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


Next = Callable[[Request], Awaitable[Response]]


class BrowserGuard:
    """Middleware: Host header check on every route; on /v1, JSON bodies and same origin."""

    def __init__(self, hosts: Sequence[str]) -> None:
        self.any_host = "*" in hosts
        self.hosts = frozenset(h.lower().strip("[]") for h in hosts)

    def host_allowed(self, host: str | None) -> bool:
        if self.any_host:
            return True
        if not host:
            return False
        name = urlsplit(f"//{host}").hostname or ""
        return name.lower().strip("[]") in self.hosts

    async def __call__(self, request: Request, call_next: Next) -> Response:
        if not self.host_allowed(request.headers.get("host")):
            return _refusal(400, "invalid_host", "the Host header names no host this API serves")
        if _route_path(request).startswith("/v1/") and request.method in UNSAFE_METHODS:
            origin = request.headers.get("origin")
            if origin is not None and not self.host_allowed(urlsplit(origin).netloc or "-"):
                return _refusal(
                    403, "cross_origin", f"requests from the web origin {origin!r} are refused"
                )
            refused = _content_type_refusal(request)
            if refused is not None:
                return refused
        return await call_next(request)


def _route_path(request: Request) -> str:
    """The path below the route prefix Serve mounted the app at."""
    path: str = request.scope["path"]
    root: str = request.scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _content_type_refusal(request: Request) -> Response | None:
    has_body = request.headers.get("content-length", "0") != "0" or (
        "transfer-encoding" in request.headers
    )
    given = request.headers.get("content-type")
    if given is None and not has_body:
        return None  # a command without a body (cancel, retry, pause)
    media_type = (given or "").split(";", 1)[0].strip().lower()
    if media_type == "application/json":
        return None
    shown = f"{given!r}" if given is not None else "none"
    return _refusal(
        415,
        "unsupported_media_type",
        f"request bodies must be application/json (Content-Type was {shown})",
    )


def _refusal(status: int, code: str, message: str) -> Response:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)
