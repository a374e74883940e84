"""The HTTP API: a FastAPI app over the Python Client, versioned under `/v1`.

    POST /v1/runs                      submit a run (Idempotency-Key header) -> 202
    GET  /v1/runs                      runs, newest first, filtered, cursor-paginated
    GET  /v1/runs/{id}                 a run with its tasks and attempts
    GET  /v1/runs/{id}/logs            its log lines (?step=, ?follow=true streams NDJSON)
    POST /v1/runs/{id}/cancel          cancel it (and compensate unless told not to)
    POST /v1/runs/{id}/retry           resume a failed or cancelled run
    POST /v1/events                    publish an event
    GET  /v1/workflows                 workflows with their DAG schema
    GET  /v1/queues                    queues with depth, running count and limits
    GET  /healthz, /metrics, /docs     health, Prometheus text, OpenAPI

Endpoints are sync functions on purpose: the Client blocks on Ray, and FastAPI runs sync
endpoints in its thread pool, so a slow coordinator call never stalls the event loop.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from wfray.adapters.ray.client import Client
from wfray.application.definition import Workflow
from wfray.application.messages import CommandResult, RunView
from wfray.config import Settings
from wfray.domain.errors import BacklogFullError, RunNotFoundError, WfrayError
from wfray.domain.status import RunStatus
from wfray.domain.workflow import WorkflowSchema
from wfray.entrypoints.http.catalog import api_workflows, startable
from wfray.entrypoints.http.metrics import CONTENT_TYPE, ApiMetrics
from wfray.entrypoints.http.models import (
    NAME,
    RUN_ID,
    CancelBody,
    CommandOut,
    CursorError,
    ErrorDetail,
    ErrorOut,
    EventAccepted,
    EventBody,
    HealthOut,
    LogLineOut,
    QueuesOut,
    RunDetailOut,
    RunOut,
    RunPage,
    SubmitAccepted,
    SubmitBody,
    WorkflowOut,
    decode_cursor,
    encode_cursor,
)
from wfray.entrypoints.http.schedules import schedule_routes

HEALTH_TIMEOUT_S = 3.0


def create_app(settings: Settings, client: Client | None = None) -> FastAPI:
    """The API for `settings`, talking to the coordinator through `client`.

    Imports `settings.modules` first, so that their workflows can be submitted by name.
    """
    client = client or Client(settings)
    flows = api_workflows(settings)  # the user's workflows; built-ins only if listed
    app = FastAPI(
        title="wfray",
        summary="Durable workflows and task queues on Ray",
        version="1",
        docs_url="/docs",
        # The limit is enforced on Content-Length before a byte of the body is read, and on
        # the bytes received for chunked bodies.
        max_body_size=settings.api_max_body_bytes,
    )
    metrics = ApiMetrics(client.stats)
    app.middleware("http")(metrics.middleware)
    app.add_exception_handler(WfrayError, wfray_error_response)
    app.include_router(
        v1_router(settings, client, flows),
        dependencies=[Depends(bearer_guard(settings.api_token))],
    )

    @app.get("/healthz", response_model=HealthOut, tags=["operations"])
    def healthz() -> JSONResponse:
        """200 when the coordinator and the store answer, 503 with the reason otherwise."""
        health = check_health(client)
        code = 200 if health.status == "ok" else 503
        return JSONResponse(health.model_dump(), status_code=code)

    @app.get("/metrics", response_class=Response, tags=["operations"])
    def prometheus() -> Response:
        """The coordinator's queues and runs, and this API's requests, as Prometheus text."""
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    return app


# -- /v1 -----------------------------------------------------------------------------------------

RunId = Annotated[str, Path(pattern=RUN_ID, description="the run's id")]
FOLLOW_POLL_S = 0.5
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (403, 404, 409, 429, 503, 504)
}


def v1_router(settings: Settings, client: Client, flows: dict[str, Workflow]) -> APIRouter:
    # The prefix on the router itself, so that each route's template (a metrics label) is
    # its full path.
    router = APIRouter(prefix="/v1", responses=ERRORS)
    _run_routes(router, client, flows)
    _catalog_routes(router, settings, client, flows)
    schedule_routes(router, client, flows)
    return router


def _run_routes(router: APIRouter, client: Client, flows: dict[str, Workflow]) -> None:

    @router.post("/runs", status_code=202, response_model=SubmitAccepted, tags=["runs"])
    def submit(
        request: Request,
        response: Response,
        body: SubmitBody,
        idempotency_key: Annotated[
            str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200)
        ] = None,
    ) -> SubmitAccepted:
        """Start a run of a workflow or a plain task; the same Idempotency-Key returns the
        run it started first."""
        flow = startable(flows, body.workflow)
        (handle,) = client.submit_many(
            flow,
            [validate_input(flow, body.input)],
            idempotency_keys=[idempotency_key],
            priority=body.priority,
            queue=body.queue,
            concurrency_keys=[body.concurrency_key],
            deadline_s=body.deadline_s,
            trigger="http",
        )
        link = str(request.url_for("get_run", run_id=handle.run_id))
        response.headers["Location"] = link
        return SubmitAccepted(run_id=handle.run_id, workflow=flow.name, link=link)

    @router.get("/runs", response_model=RunPage, tags=["runs"])
    def list_runs(
        workflow: Annotated[str | None, Query(pattern=NAME)] = None,
        status: RunStatus | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: Annotated[str | None, Query(max_length=1000)] = None,
    ) -> RunPage:
        """Runs, newest first (created_at, then run id, descending), one page at a time."""
        after = as_utc(created_after, "created_after")
        before = as_utc(created_before, "created_before")
        position = None
        if cursor is not None:
            try:
                position = decode_cursor(cursor)
            except CursorError as exc:
                raise RequestValidationError(
                    [{"type": "value_error", "loc": ("query", "cursor"), "msg": str(exc)}]
                ) from None
        return page_runs(client, workflow, status, after, before, limit, position)

    @router.get("/runs/{run_id}", response_model=RunDetailOut, tags=["runs"])
    def get_run(run_id: RunId) -> RunDetailOut:
        """A run with its tasks (statuses, retries) and every attempt (worker, node, error)."""
        return RunDetailOut.of(client.detail(run_id))

    @router.get("/runs/{run_id}/logs", response_model=list[LogLineOut], tags=["runs"])
    def get_logs(
        run_id: RunId,
        step: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
        follow: bool = False,
    ) -> Any:
        """Its log lines; with `follow=true`, NDJSON lines streamed as they come, until the
        run ends or the client leaves."""
        run_view(client, run_id)
        if follow:
            stream = follow_logs(client, run_id, step)
            return StreamingResponse(stream, media_type="application/x-ndjson")
        return [LogLineOut.of(line) for line in client.logs(run_id, step)]

    @router.post("/runs/{run_id}/cancel", response_model=CommandOut, tags=["runs"])
    def cancel(run_id: RunId, body: Annotated[CancelBody | None, Body()] = None) -> Any:
        """Cancel a run, then compensate what it completed unless `compensate` is false."""
        body = body or CancelBody()
        return command_response(client.cancel(run_id, body.reason, body.compensate))

    @router.post("/runs/{run_id}/retry", response_model=CommandOut, tags=["runs"])
    def retry(run_id: RunId) -> Any:
        """Resume a failed or cancelled run from the steps that did not complete."""
        (answer,) = client.resume([run_id])
        return command_response(answer)


def _catalog_routes(
    router: APIRouter, settings: Settings, client: Client, flows: dict[str, Workflow]
) -> None:
    @router.post("/events", status_code=202, response_model=EventAccepted, tags=["events"])
    def publish(body: EventBody) -> EventAccepted:
        """Start every workflow subscribed to the event, once per event id."""
        event_id = body.id or uuid.uuid4().hex
        run_ids = client.publish(body.name, body.payload, id=event_id, source="http")
        return EventAccepted(name=body.name, id=event_id, runs=run_ids)

    @router.get("/workflows", response_model=list[WorkflowOut], tags=["workflows"])
    def list_workflows() -> list[WorkflowOut]:
        """Known workflows with their DAG; those whose module is loaded here are submittable."""
        stored: list[WorkflowSchema] = client.call("query", "workflows")
        return WorkflowOut.listing(flows.values(), stored)

    @router.get("/queues", response_model=QueuesOut, tags=["queues"])
    def list_queues() -> QueuesOut:
        """Queues with their depth, running count and limits."""
        return QueuesOut.of(settings.queues, settings.max_backlog, client.stats())


def run_view(client: Client, run_id: str) -> RunView:
    views: list[RunView] = client.call("views", [run_id])
    if not views:
        raise RunNotFoundError(f"no run with id {run_id!r}")
    return views[0]


async def follow_logs(client: Client, run_id: str, step: str | None) -> AsyncIterator[bytes]:
    sent = 0
    while True:
        # The status is read before the lines, so the last read has every line of a run
        # that had finished.
        finished = (await run_in_threadpool(run_view, client, run_id)).status.finished
        lines = await run_in_threadpool(client.logs, run_id, step)
        for line in lines[sent:]:
            yield LogLineOut.of(line).model_dump_json().encode() + b"\n"
        sent = max(sent, len(lines))
        if finished:
            return
        await asyncio.sleep(FOLLOW_POLL_S)


def command_response(result: CommandResult) -> JSONResponse:
    if result.status == "unknown":
        raise RunNotFoundError(result.message)
    body = CommandOut.of(result).model_dump()
    return JSONResponse(body, status_code=200 if result.applied else 409)


def page_runs(
    client: Client,
    workflow: str | None,
    status: RunStatus | None,
    after: datetime | None,
    before: datetime | None,
    limit: int,
    position: tuple[datetime, str] | None,
) -> RunPage:
    """One page after `position` in the order (created_at desc, run_id desc).

    The store filters by creation time only, so the page starts at the cursor's time and
    skips the runs of that same instant that came before; it asks for more while such runs
    crowd the page out.
    """
    if position is not None:
        edge = position[0] + timedelta(microseconds=1)
        before = edge if before is None else min(before, edge)
    wanted = limit + 1
    while True:
        found = client.list_runs(workflow, status, wanted, after, before)
        kept = [r for r in found if position is None or (r.created_at, r.run_id) < position]
        if len(kept) > limit or len(found) < wanted:
            break
        wanted *= 2
    page = kept[:limit]
    more = len(kept) > limit
    return RunPage(
        runs=[RunOut.of(r) for r in page], next_cursor=encode_cursor(page[-1]) if more else None
    )


# -- security ------------------------------------------------------------------------------------


BEARER = HTTPBearer(auto_error=False, description="the token of WFRAY_API_TOKEN")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]


def bearer_guard(token: str | None) -> Any:
    """A dependency that requires `Authorization: Bearer <token>` when a token is set."""
    expected = (token or "").encode()

    def no_token() -> None:
        return None

    def require_token(
        credentials: Credentials,
    ) -> None:
        given = credentials.credentials.encode() if credentials is not None else b""
        # Constant time, so the comparison does not leak how much of a guess was right.
        if credentials is None or not hmac.compare_digest(given, expected):
            raise HTTPException(
                status_code=401,
                detail="a valid bearer token is required: Authorization: Bearer <token>",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return require_token if token else no_token


# -- errors --------------------------------------------------------------------------------------


def wfray_error_response(request: Request, exc: Exception) -> JSONResponse:
    """A wfray error as JSON, with the HTTP status its class declares."""
    assert isinstance(exc, WfrayError)
    headers = {}
    if isinstance(exc, BacklogFullError):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    body = ErrorOut(error=ErrorDetail(code=exc.code, message=exc.message))
    return JSONResponse(body.model_dump(), status_code=exc.http_status, headers=headers)


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


# -- health and workflows ------------------------------------------------------------------------


def check_health(client: Client) -> HealthOut:
    try:
        client.call("stats", timeout_s=HEALTH_TIMEOUT_S)
    except Exception as exc:  # whatever the reason, health reports it rather than raising
        reason = f"unreachable: {type(exc).__name__}: {exc}"
        return HealthOut(status="unavailable", coordinator=reason, store="unknown")
    try:
        client.call("query", "list_runs", None, None, 1, timeout_s=HEALTH_TIMEOUT_S)
    except Exception as exc:
        reason = f"unreachable: {type(exc).__name__}: {exc}"
        return HealthOut(status="unavailable", coordinator="ok", store=reason)
    return HealthOut(status="ok", coordinator="ok", store="ok")
