"""A client for the Ninox classic v1 REST API (httpx, synchronous: it runs inside workflow steps).

    config = NinoxConfig(api_key=..., team_id=..., database_id=...)   # public cloud default
    with NinoxClient(config) as ninox:
        delivered = ninox.list_records("Orders", filters={"Status": "delivered"})

The client never retries by itself: wfray's durable retry policies do. Errors are classified
so a step can hand them on with `as_step_error`:

    NinoxError
     +-- NinoxRetryableError     429, 5xx, timeouts, connection errors (`retry_after_s`)
     +-- NinoxPermanentError     other 4xx, or a response that is not what the API returns
          +-- NinoxBadRequestError     400
          +-- NinoxAuthError           401, 403
          +-- NinoxNotFoundError       404

Numbers with a fraction come back as `Decimal` (parsed from the JSON text, so 12.34 stays
12.34); whole numbers stay `int`. Decimals sent back are written as JSON numbers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from wfray.domain.errors import NonRetryableError, RetryLater, StepError

PUBLIC_CLOUD_URL = "https://api.ninox.com/v1"


def private_cloud_url(subdomain: str) -> str:
    """The API root of a Ninox private cloud, e.g. `acme` -> https://acme.ninoxdb.de/v1."""
    return f"https://{subdomain}.ninoxdb.de/v1"


def on_premise_url(host: str, scheme: str = "https") -> str:
    """The API root of an on-premise Ninox server at `host` (with an optional port)."""
    return f"{scheme}://{host}/v1"


@dataclass(frozen=True, slots=True)
class NinoxConfig:
    """Where and as whom to call Ninox.

    Attributes:
        api_key: the API key made in Ninox (sent as `Authorization: Bearer <key>`).
        team_id: the workspace (team) id.
        database_id: the database id.
        base_url: API root: `PUBLIC_CLOUD_URL`, `private_cloud_url(...)`, `on_premise_url(...)`
            or a local server's `base_url`.
        timeout_s: per request (connect, read, write and pool each).
    """

    api_key: str
    team_id: str
    database_id: str
    base_url: str = PUBLIC_CLOUD_URL
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        for name in ("api_key", "team_id", "database_id", "base_url"):
            if not getattr(self, name):
                raise ValueError(f"NinoxConfig.{name} must be a non-empty string")
        if self.timeout_s <= 0:
            raise ValueError(f"NinoxConfig.timeout_s must be positive, got {self.timeout_s}")


class NinoxError(Exception):
    """A Ninox API call failed."""

    def __init__(self, message: str, method: str, path: str, status: int | None = None) -> None:
        super().__init__(message)
        self.method = method
        self.path = path
        self.status = status


class NinoxRetryableError(NinoxError):
    """A transient failure (rate limit, server error, timeout, connection): try again later."""

    def __init__(
        self,
        message: str,
        method: str,
        path: str,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, method, path, status)
        self.retry_after_s = retry_after_s


class NinoxPermanentError(NinoxError):
    """A failure that retrying the same call cannot fix."""

    def __init__(self, message: str, method: str, path: str, status: int | None, body: str) -> None:
        super().__init__(message, method, path, status)
        self.body = body


class NinoxBadRequestError(NinoxPermanentError):
    """HTTP 400: the request does not fit the API or the database schema."""


class NinoxAuthError(NinoxPermanentError):
    """HTTP 401 or 403: the API key is wrong or may not do this."""


class NinoxNotFoundError(NinoxPermanentError):
    """HTTP 404: no such team, database, table, record or file."""


_PERMANENT_BY_STATUS: dict[int, type[NinoxPermanentError]] = {
    400: NinoxBadRequestError,
    401: NinoxAuthError,
    403: NinoxAuthError,
    404: NinoxNotFoundError,
}


class NinoxRecord(BaseModel):
    """One record as the API returns it; `fields` is keyed by field name, empty ones absent."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    id: int
    sequence: int = 0
    created_at: datetime | None = Field(default=None, alias="createdAt")
    created_by: str | None = Field(default=None, alias="createdBy")
    modified_at: datetime | None = Field(default=None, alias="modifiedAt")
    modified_by: str | None = Field(default=None, alias="modifiedBy")
    fields: dict[str, Any] = Field(default_factory=dict)

    @field_validator("created_at", "modified_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        # Ninox writes UTC without a zone suffix.
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


class NinoxFile(BaseModel):
    """A file attached to a record."""

    model_config = ConfigDict(frozen=True, extra="allow")

    name: str


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), None if unusable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"cannot send {type(value).__name__} to Ninox: {value!r}")


class NinoxClient:
    """Calls one Ninox database. Not thread-safe across threads' own use of `close`."""

    def __init__(self, config: NinoxConfig, transport: httpx.BaseTransport | None = None) -> None:
        self.config = config
        self._db_path = f"/teams/{quote(config.team_id, safe='')}/databases/" + quote(
            config.database_id, safe=""
        )
        self._http = httpx.Client(
            base_url=config.base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {config.api_key}", "Accept": "application/json"},
            timeout=config.timeout_s,
            transport=transport,
        )

    def __enter__(self) -> NinoxClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- records --------------------------------------------------------------------------

    def list_records(
        self,
        table: str,
        filters: Mapping[str, Any] | None = None,
        per_page: int = 250,
        max_pages: int = 10_000,
    ) -> list[NinoxRecord]:
        """Every record of `table` matching the equality `filters` (field name or id -> value).

        Pages from 0 until a page is empty or short, or brings only ids already seen (a
        server that ignores `page`); records are deduplicated by id, first copy kept.
        """
        if per_page < 1:
            raise ValueError(f"per_page must be at least 1, got {per_page}")
        params: dict[str, Any] = {"perPage": per_page}
        if filters:
            params["filters"] = json.dumps({"fields": dict(filters)}, default=_json_default)
        seen: dict[int, NinoxRecord] = {}
        for page in range(max_pages):
            path = self._table_path(table) + "/records"
            batch = _records("GET", path, self._get(path, {**params, "page": page}))
            fresh = [r for r in batch if r.id not in seen]
            for record in fresh:
                seen[record.id] = record
            if len(batch) < per_page or not fresh:
                break
        return list(seen.values())

    def find_by_key(self, table: str, field: str, value: Any) -> list[NinoxRecord]:
        """Records whose `field` equals `value`: check an idempotency key before a create."""
        return self.list_records(table, filters={field: value})

    def get_record(self, table: str, record_id: int) -> NinoxRecord:
        path = self._record_path(table, record_id)
        return _single("GET", path, _records("GET", path, self._get(path)))

    def upsert_records(self, table: str, records: Sequence[Mapping[str, Any]]) -> list[NinoxRecord]:
        """POST records: `{"fields": {...}}` creates, `{"id": n, "fields": {...}}` updates."""
        payload = [dict(r) for r in records]
        path = self._table_path(table) + "/records"
        return _records("POST", path, self._send("POST", path, payload))

    def create_record(self, table: str, fields: Mapping[str, Any]) -> NinoxRecord:
        """Create one record. Not idempotent: check `find_by_key` first, never retry blindly."""
        created = self.upsert_records(table, [{"fields": dict(fields)}])
        return _single("POST", self._table_path(table) + "/records", created)

    def update_record(self, table: str, record_id: int, fields: Mapping[str, Any]) -> NinoxRecord:
        """Set the given fields of one record (None clears a field); others stay as they are."""
        updated = self.upsert_records(table, [{"id": record_id, "fields": dict(fields)}])
        return _single("POST", self._table_path(table) + "/records", updated)

    def delete_record(self, table: str, record_id: int) -> None:
        self._send("DELETE", self._record_path(table, record_id))

    # --- files ----------------------------------------------------------------------------

    def upload_file(
        self,
        table: str,
        record_id: int,
        filename: str,
        content: bytes,
        field_name: str | None = None,
        content_type: str = "application/octet-stream",
    ) -> None:
        """Attach a file to a record; `field_name` puts it into that file/image field."""
        data = {"fieldName": field_name} if field_name else None
        files = {"file": (filename, content, content_type)}
        path = self._record_path(table, record_id) + "/files"
        self._request("POST", path, data=data, files=files)

    def list_files(self, table: str, record_id: int) -> list[NinoxFile]:
        path = self._record_path(table, record_id) + "/files"
        body = self._get(path)
        try:
            return [NinoxFile.model_validate(item) for item in body]
        except (TypeError, ValidationError) as exc:
            raise _unexpected("GET", path, body, "a JSON array of files") from exc

    def download_file(self, table: str, record_id: int, filename: str) -> bytes:
        path = self._record_path(table, record_id) + "/files/" + quote(filename, safe="")
        return self._request("GET", path).content

    # --- transport ------------------------------------------------------------------------

    def _table_path(self, table: str) -> str:
        return f"{self._db_path}/tables/{quote(table, safe='')}"

    def _record_path(self, table: str, record_id: int) -> str:
        return f"{self._table_path(table)}/records/{int(record_id)}"

    def _get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return self._json("GET", path, self._request("GET", path, params=params))

    def _send(self, method: str, path: str, payload: Any = None) -> Any:
        content = None if payload is None else json.dumps(payload, default=_json_default)
        headers = {"Content-Type": "application/json"} if content is not None else None
        response = self._request(method, path, content=content, headers=headers)
        return self._json(method, path, response) if response.content else None

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        where = f"{method} {path}"
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            message = f"Ninox {where} timed out after {self.config.timeout_s} s: {exc!r}"
            raise NinoxRetryableError(message, method, path) from exc
        except httpx.TransportError as exc:
            message = f"Ninox {where} could not reach {self.config.base_url}: {exc!r}"
            raise NinoxRetryableError(message, method, path) from exc
        status = response.status_code
        if status < 400:
            return response
        body = response.text[:2000]
        message = f"Ninox {where} answered HTTP {status}: {body}"
        if status in (408, 429) or status >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise NinoxRetryableError(message, method, path, status, retry_after)
        raise _PERMANENT_BY_STATUS.get(status, NinoxPermanentError)(
            message, method, path, status, body
        )

    def _json(self, method: str, path: str, response: httpx.Response) -> Any:
        try:
            return json.loads(response.content, parse_float=Decimal)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise _unexpected(method, path, response.text[:2000], "JSON") from exc


def _records(method: str, path: str, body: Any) -> list[NinoxRecord]:
    items = body if isinstance(body, list) else [body]
    try:
        return [NinoxRecord.model_validate(item) for item in items]
    except ValidationError as exc:
        raise _unexpected(method, path, body, f"records ({exc.error_count()} problems)") from exc


def _single(method: str, path: str, records: list[NinoxRecord]) -> NinoxRecord:
    if len(records) != 1:
        raise _unexpected(method, path, records, "exactly one record")
    return records[0]


def _unexpected(method: str, path: str, body: Any, expected: str) -> NinoxPermanentError:
    text = str(body)[:500]
    message = f"Ninox {method} {path} returned something other than {expected}: {text}"
    return NinoxPermanentError(message, method, path, None, text)


def as_step_error(exc: NinoxError) -> StepError:
    """The wfray error a step raises for a Ninox failure, so retry policies treat it right.

    Retryable with a Retry-After -> `RetryLater(delay)` (the server's delay wins over the
    backoff); retryable without one -> a plain `StepError` (the policy's backoff applies);
    permanent -> `NonRetryableError`. Raise it `from exc` to keep the cause.
    """
    message = str(exc)
    if isinstance(exc, NinoxRetryableError):
        if exc.retry_after_s is not None:
            return RetryLater(message, delay_s=exc.retry_after_s)
        return StepError(message)
    return NonRetryableError(message)
