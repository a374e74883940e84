"""What a request is checked against before it reaches the coordinator (each refusal a
4xx naming the field), and how wfray's errors and HTTP refusals read as JSON."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from wfray.domain.errors import WfrayError
from wfray.domain.queueing import QueueConfig
from wfray.entrypoints.http.errors import http_status_of
from wfray.entrypoints.http.models import ErrorDetail, ErrorOut
from wfray.sdk.definition import Workflow

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
}


def wfray_error_response(request: Request, exc: Exception) -> JSONResponse:
    """A wfray error as JSON: its stable code, with the status of its class (errors.py)."""
    assert isinstance(exc, WfrayError)
    status = http_status_of(type(exc))
    headers = {}
    retry_after = getattr(exc, "retry_after_s", None)
    if status == 429 and retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    body = ErrorOut(error=ErrorDetail(code=exc.code, message=exc.message))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def http_error_response(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's refusals (401, 403, 404, 405, 413) in the same shape as wfray's."""
    assert isinstance(exc, StarletteHTTPException)
    code = HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    body = ErrorOut(error=ErrorDetail(code=code, message=str(exc.detail)))
    return JSONResponse(
        body.model_dump(), status_code=exc.status_code, headers=dict(exc.headers or {})
    )


def validation_error(exc: ValidationError, *prefix: str | int) -> RequestValidationError:
    """Pydantic's errors, located under `prefix` in the request, as FastAPI's 422."""
    return RequestValidationError(
        [
            {**err, "loc": (*prefix, *err["loc"])}
            for err in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
    )


def validate_input(flow: Workflow, value: Any) -> Any:
    """The run input checked against the workflow's model: a 422 names the field."""
    model = flow.input_model
    if model is None:
        return value
    try:
        return model.model_validate(value if value is not None else {})
    except ValidationError as exc:
        raise validation_error(exc, "body", "input") from None


def declared_queues(configs: Iterable[QueueConfig]) -> frozenset[str]:
    """The queues a caller may name: "default" and those of the settings (WFRAY_QUEUES)."""
    return frozenset({"default", *(q.name for q in configs)})


def check_queue(queue: str, declared: frozenset[str]) -> None:
    """A 422 unless `queue` is declared: an invented queue would escape the limits of the
    configured ones."""
    if queue not in declared:
        message = f"queue {queue!r} is not declared; declared queues: {', '.join(sorted(declared))}"
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("body", "queue"), "msg": message}]
        )


def as_utc(value: datetime | None, name: str) -> datetime | None:
    """Query times without a zone are UTC, as the store keeps them."""
    if value is None:
        return None
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("query", name), "msg": "out of range"}]
        ) from None
