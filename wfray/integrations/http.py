"""The built-in `http_request` task: one HTTP call, its response stored as the result.

    client.submit("http_request", {"url": "https://api.example/orders", "method": "GET"})

429 and 5xx answers, timeouts and connection errors ask to be retried later (honouring
`Retry-After`); any other 4xx fails for good. The classification is a pair of pure functions,
`classify_response` and `parse_retry_after` (http_outcome.py), so a user's own steps can reuse it.

Every request passes the SSRF guard (http_guard.py): internal addresses are refused unless
the operator allows them on the workers, redirects are checked hop by hop, the connection is
pinned to the checked address, proxy variables are ignored, and the operator's time and body
limits are ceilings that a caller may lower, never raise.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import BaseModel

from wfray.domain.errors import DestinationRefusedError, NonRetryableError
from wfray.integrations.http_guard import GuardedTransport, HttpGuard, HttpLimits
from wfray.integrations.http_outcome import (
    BACKOFF_INITIAL_S,
    BACKOFF_MAX_S,
    backoff_s,
    classify_response,
    mask_url,
    parse_retry_after,
    transport_error,
)
from wfray.sdk.context import StepContext
from wfray.sdk.secrets import SecretRef, reveal
from wfray.sdk.tasks import task

__all__ = [
    "BACKOFF_INITIAL_S",
    "BACKOFF_MAX_S",
    "METHODS",
    "HttpResponse",
    "backoff_s",
    "classify_response",
    "http_request",
    "mask_url",
    "parse_retry_after",
    "send_request",
]

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class HttpResponse(BaseModel):
    """The stored result of an HTTP request.

    Attributes:
        status: the HTTP status code.
        url: the final URL (after redirects), credentials masked.
        headers: response headers, names lower-cased, repeated headers joined by ", ".
        body: the body as text, at most `max_body_bytes` of it.
        truncated: True when the body was longer than `max_body_bytes` and was cut.
        elapsed_ms: time from sending the request to reading the (possibly cut) body.
    """

    status: int
    url: str
    headers: dict[str, str]
    body: str
    truncated: bool
    elapsed_ms: float


def _read_body(response: httpx.Response, limit: int) -> tuple[str, bool]:
    chunks: list[bytes] = []
    size = 0
    truncated = False
    for chunk in response.iter_bytes():
        if size + len(chunk) > limit:
            chunks.append(chunk[: limit - size])
            truncated = True
            break
        chunks.append(chunk)
        size += len(chunk)
    encoding = response.charset_encoding or "utf-8"
    try:
        return b"".join(chunks).decode(encoding, errors="replace"), truncated
    except LookupError:  # a charset Python does not know
        return b"".join(chunks).decode("utf-8", errors="replace"), truncated


def _headers(response: httpx.Response) -> dict[str, str]:
    merged: dict[str, str] = {}
    for name, value in response.headers.multi_items():
        key = name.lower()
        merged[key] = f"{merged[key]}, {value}" if key in merged else value
    return merged


@task(pool="io")
def http_request(
    url: str,
    method: str = "GET",
    headers: dict[str, str | SecretRef] | None = None,
    params: dict[str, str] | None = None,
    json_body: Any = None,
    text_body: str | None = None,
    timeout_s: float | None = None,
    follow_redirects: bool = True,
    max_body_bytes: int | None = None,
    idempotency_header: str | None = None,
    ctx: StepContext | None = None,
) -> HttpResponse:
    """Send one HTTP request and return its response.

    Args:
        url: absolute http(s) URL; internal addresses are refused unless the operator allows
            them (WFRAY_HTTP_ALLOW_HOSTS, WFRAY_HTTP_ALLOW_NETWORKS on the workers).
        method: GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS.
        headers: request headers; a value may be a secret by name, `{"secret": "API_KEY"}`,
            resolved on the worker (never stored with the run).
        params: query parameters, added to those already in the URL.
        json_body: a JSON body (sent with Content-Type application/json).
        text_body: a text body (UTF-8); at most one of json_body and text_body.
        timeout_s: the longest the whole request may take, redirects and body included; at
            most the operator's WFRAY_HTTP_TIMEOUT_S (the default).
        follow_redirects: follow 3xx answers (at most WFRAY_HTTP_MAX_REDIRECTS of them).
        max_body_bytes: keep at most this much of the response body; at most the operator's
            WFRAY_HTTP_MAX_BODY_BYTES (the default).
        idempotency_header: when set, the run's stable idempotency key is sent in this
            header (for example "Idempotency-Key"), so the server can drop a retried call.
    """
    return send_request(
        HttpGuard(HttpLimits.from_env()),
        url,
        method,
        headers,
        params,
        json_body,
        text_body,
        timeout_s,
        follow_redirects,
        max_body_bytes,
        idempotency_header,
        ctx,
    )


def send_request(
    guard: HttpGuard,
    url: str,
    method: str = "GET",
    headers: Mapping[str, str | SecretRef] | None = None,
    params: dict[str, str] | None = None,
    json_body: Any = None,
    text_body: str | None = None,
    timeout_s: float | None = None,
    follow_redirects: bool = True,
    max_body_bytes: int | None = None,
    idempotency_header: str | None = None,
    ctx: StepContext | None = None,
) -> HttpResponse:
    """http_request with the guard given: its limits and its resolver (tests inject one)."""
    verb = _checked_verb(method, json_body, text_body, timeout_s, max_body_bytes)
    timeout, body_limit = _ceilings(guard.limits, timeout_s, max_body_bytes)
    attempt = ctx.attempt if ctx is not None else 1
    request_headers, secret_headers = _request_headers(headers, idempotency_header, ctx)
    started = time.perf_counter()
    transport = GuardedTransport(guard, time.monotonic() + timeout)
    try:
        target = _target(url, params)
        # trust_env=False: proxy variables would send the request to a proxy that resolves
        # the name itself, past the guard's check and pin
        with httpx.Client(transport=transport, timeout=timeout, trust_env=False) as client:
            request = client.build_request(
                verb,
                target,
                headers=request_headers,
                json=json_body,
                content=None if text_body is None else text_body.encode(),
            )
            redirects = guard.limits.max_redirects
            response = _follow(
                client, request, follow_redirects, redirects, verb, url, secret_headers
            )
            try:
                body, truncated = _read_body(response, body_limit)
            finally:
                response.close()
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise transport_error(verb, url, exc, attempt) from exc
    except DestinationRefusedError as exc:
        raise DestinationRefusedError(f"{verb} {mask_url(url)}: {exc}") from exc
    elapsed_ms = (time.perf_counter() - started) * 1000.0
    return _answer(verb, url, response, body, truncated, elapsed_ms, attempt, ctx)


def _answer(
    verb: str,
    url: str,
    response: httpx.Response,
    body: str,
    truncated: bool,
    elapsed_ms: float,
    attempt: int,
    ctx: StepContext | None,
) -> HttpResponse:
    """The response as the task returns it, or the error its status means (logged either way)."""
    error = classify_response(
        verb, url, response.status_code, response.headers.get("retry-after"), _now(), attempt
    )
    if ctx is not None:
        ctx.logger.info("%s %s -> %d", verb, mask_url(url), response.status_code)
    if error is not None:
        raise error
    return HttpResponse(
        status=response.status_code,
        url=mask_url(response.url),
        headers=_headers(response),
        body=body,
        truncated=truncated,
        elapsed_ms=round(elapsed_ms, 3),
    )


def _target(url: str, params: dict[str, str] | None) -> httpx.URL:
    """`url` with `params` merged into its query (httpx.InvalidURL if it is no URL)."""
    target = httpx.URL(url)
    return target.copy_merge_params(params) if params else target


def _checked_verb(
    method: str,
    json_body: Any,
    text_body: str | None,
    timeout_s: float | None,
    max_body_bytes: int | None,
) -> str:
    """The upper-case method, once the caller's arguments are checked (NonRetryableError)."""
    verb = method.upper()
    if verb not in METHODS:
        raise NonRetryableError(
            f"method must be one of {', '.join(sorted(METHODS))}, got {method!r}"
        )
    if json_body is not None and text_body is not None:
        raise NonRetryableError("give json_body or text_body, not both")
    if (timeout_s is not None and timeout_s <= 0) or (
        max_body_bytes is not None and max_body_bytes < 0
    ):
        raise NonRetryableError(
            f"timeout_s must be positive and max_body_bytes not negative, "
            f"got {timeout_s} and {max_body_bytes}"
        )
    return verb


def _ceilings(
    limits: HttpLimits, timeout_s: float | None, max_body_bytes: int | None
) -> tuple[float, int]:
    """The timeout and body limit of one request: the caller's, capped by the operator's."""
    # the operator's limits are ceilings: a caller may only ask for less
    timeout = limits.timeout_s if timeout_s is None else min(timeout_s, limits.timeout_s)
    body_limit = (
        limits.max_body_bytes
        if max_body_bytes is None
        else min(max_body_bytes, limits.max_body_bytes)
    )
    return timeout, body_limit


def _request_headers(
    headers: Mapping[str, str | SecretRef] | None,
    idempotency_header: str | None,
    ctx: StepContext | None,
) -> tuple[dict[str, str], set[str]]:
    """The headers to send, secrets revealed, and the names of those that held a secret."""
    request_headers = {name: reveal(value) for name, value in (headers or {}).items()}
    # a secret goes to the origin it was meant for only, never to a redirect's other site
    secret_headers = {n for n, v in (headers or {}).items() if isinstance(v, SecretRef)}
    if idempotency_header and ctx is not None:
        request_headers[idempotency_header] = ctx.idempotency_key
    return request_headers, secret_headers


def _follow(
    client: httpx.Client,
    request: httpx.Request,
    follow: bool,
    max_redirects: int,
    verb: str,
    url: str,
    secret_headers: set[str],
) -> httpx.Response:
    """Send, and follow redirects here rather than in httpx: each hop goes through the
    guarded transport, a redirect's own body is never read, and headers that carry secrets
    are dropped once a redirect leaves the first request's origin (httpx drops only
    Authorization)."""
    origin = _origin(request.url)
    redirects = 0
    while True:
        try:
            response = client.send(request, stream=True)
        except DestinationRefusedError as exc:
            if redirects == 0:
                raise
            raise DestinationRefusedError(f"redirected to {mask_url(request.url)}: {exc}") from exc
        if not follow or response.next_request is None:
            return response
        response.close()
        if redirects == max_redirects:
            raise NonRetryableError(
                f"{verb} {mask_url(url)} redirected more than {max_redirects} times "
                "(WFRAY_HTTP_MAX_REDIRECTS)"
            )
        redirects += 1
        request = response.next_request
        if _origin(request.url) != origin:
            for name in secret_headers:
                request.headers.pop(name, None)


def _now() -> datetime:
    # The task is the outermost loop here: Retry-After dates are relative to the wall clock.
    return datetime.now(UTC)


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port
