"""What an HTTP exchange means for the step that made it: success, retry later (honouring
`Retry-After`), or fail for good; every URL in a message masked.

Pure functions, so a user's own steps can classify their calls the same way.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from wfray.domain.errors import NonRetryableError, RetryLater, StepError

# Used when a retryable answer carries no Retry-After: doubles per attempt up to the cap.
BACKOFF_INITIAL_S = 1.0
BACKOFF_MAX_S = 300.0
_MASK = "***"
_RETRYABLE_TRANSPORT_ERRORS = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    httpx.ProxyError,
)
_SECRET_QUERY_KEYS = frozenset(
    {"access_token", "api_key", "apikey", "key", "password", "secret", "token", "sig"}
)


def mask_url(url: str | httpx.URL) -> str:
    """The URL with its password and secret-looking query values replaced by ***."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return "<invalid URL>"
    if parsed.password:
        parsed = parsed.copy_with(username=parsed.username, password=_MASK)
    parts = urlsplit(str(parsed))
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if not any(key.lower() in _SECRET_QUERY_KEYS for key, _ in pairs):
        return str(parsed)
    masked = [(key, _MASK if key.lower() in _SECRET_QUERY_KEYS else value) for key, value in pairs]
    return urlunsplit(parts._replace(query=urlencode(masked, safe="*")))


def backoff_s(attempt: int) -> float:
    """The delay before retrying after failed attempt number `attempt` (1-based)."""
    return min(BACKOFF_MAX_S, BACKOFF_INITIAL_S * 2.0 ** max(0, attempt - 1))


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait according to a Retry-After header (delay-seconds or HTTP-date).

    Returns None when the header is absent or unreadable; a date in the past gives 0.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; obsolete forms may lack the zone
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def classify_response(
    method: str,
    url: str,
    status: int,
    retry_after: str | None,
    now: datetime,
    attempt: int = 1,
) -> StepError | None:
    """The error a response stands for, or None when it is a success (1xx-3xx).

    429 and 5xx give RetryLater after the Retry-After delay (or the default backoff for
    `attempt`); any other 4xx gives NonRetryableError. The URL in messages is masked.
    """
    if status < 400:
        return None
    where = f"{method.upper()} {mask_url(url)}"
    if status == 429 or status >= 500:
        delay = parse_retry_after(retry_after, now)
        source = "Retry-After" if delay is not None else "default backoff"
        if delay is None:
            delay = backoff_s(attempt)
        return RetryLater(
            f"{where} answered {status}; retrying in {delay:g} s ({source})", delay_s=delay
        )
    return NonRetryableError(f"{where} answered {status}: a client error that retrying cannot fix")


def transport_error(method: str, url: str, exc: Exception, attempt: int) -> StepError:
    """The error a request that got no answer stands for: RetryLater for timeouts and
    network failures, NonRetryableError for a request that cannot be sent."""
    where = f"{method} {mask_url(url)}"
    # httpx error messages may quote the URL: never let its credentials into the store
    detail = f"{type(exc).__name__}: {str(exc).replace(url, mask_url(url))}"
    if isinstance(exc, _RETRYABLE_TRANSPORT_ERRORS):
        delay = backoff_s(attempt)
        kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
        return RetryLater(
            f"{where} {kind} ({detail}); retrying in {delay:g} s",
            delay_s=delay,
        )
    return NonRetryableError(f"{where} cannot be sent ({detail})")
