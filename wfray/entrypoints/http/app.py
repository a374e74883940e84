"""The HTTP API: a FastAPI app over the Python Client, versioned under `/v1`.

    POST /v1/runs                      submit a run (Idempotency-Key header) -> 202   submit
    GET  /v1/runs                      runs, newest first, filtered, keyset-paged       read
    GET  /v1/runs/{id}                 a run with a page of its tasks and attempts      read
    GET  /v1/runs/{id}/logs            log lines after a line id (?follow=true: NDJSON)  read
    POST /v1/runs/{id}/cancel          cancel it (and compensate unless told not to)    admin
    POST /v1/runs/{id}/retry           resume a failed or cancelled run                 admin
    POST /v1/events                    publish an event                                 submit
    GET  /v1/workflows, /v1/queues     workflows with their DAG; queues and limits      read
    /v1/schedules...                   list (read); create, pause, trigger... (admin)
    GET  /v1/audit                     operator actions and token use, newest first     admin
    POST /v1/upgrade                   `wfray upgrade` to the wfray the API runs        admin
    GET  /healthz                      up or down (the reasons for a read token)
    GET  /metrics, /docs, /openapi.json   read, unless WFRAY_API_METRICS_PUBLIC

Scopes and the browser guards are in auth.py; the runs routes in runs.py, their pages in
paging.py. Endpoints are sync functions on purpose: the Client blocks on Ray, and FastAPI
runs sync endpoints in its thread pool, so a slow coordinator call never stalls the loop.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from wfray.adapters.ray.client import RayClient
from wfray.application.client_commands import ListRuns, Stats, Workflows
from wfray.client.client import Client
from wfray.config import Settings
from wfray.domain.errors import WfrayError
from wfray.domain.reads import RunFilter
from wfray.entrypoints.http.audit import TokenUse, audit_routes
from wfray.entrypoints.http.auth import (
    BrowserGuard,
    TokenBook,
    allowed_hosts,
    caller_of,
    needs_factory,
)
from wfray.entrypoints.http.catalog import api_workflows
from wfray.entrypoints.http.checks import http_error_response, wfray_error_response
from wfray.entrypoints.http.metrics import CONTENT_TYPE, ApiMetrics
from wfray.entrypoints.http.models import (
    ErrorOut,
    EventAccepted,
    EventBody,
    HealthOut,
    QueuesOut,
    WorkflowOut,
)
from wfray.entrypoints.http.runs import run_routes
from wfray.entrypoints.http.schedules import schedule_routes
from wfray.entrypoints.http.upgrade import upgrade_routes
from wfray.sdk.definition import Workflow

HEALTH_TIMEOUT_S = 3.0
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (400, 401, 403, 404, 409, 413, 415, 429, 503, 504)
}


def create_app(settings: Settings, client: Client | None = None) -> FastAPI:
    """The API for `settings`, talking to the coordinator through `client`.

    Imports `settings.modules` first, so that their workflows can be submitted by name.
    """
    client = client or RayClient(settings)
    flows = api_workflows(settings)  # the user's workflows; built-ins only if listed
    token_use = TokenUse(client, settings.api_audit_flush_s)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            token_use.close()  # the last interval's counts are recorded too

    app = FastAPI(
        lifespan=lifespan,
        title="wfray",
        summary="Durable workflows and task queues on Ray",
        version="1",
        # Served below, behind the read scope unless WFRAY_API_METRICS_PUBLIC.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        # The limit is enforced on Content-Length before a byte of the body is read, and on
        # the bytes received for chunked bodies.
        max_body_size=settings.api_max_body_bytes,
    )
    book = TokenBook(settings)
    needs = needs_factory(book, token_use.note)
    metrics = ApiMetrics(client.stats)
    app.middleware("http")(metrics.middleware)
    # Added last, so it runs first: a refused Host or body never reaches a route.
    app.middleware("http")(BrowserGuard(allowed_hosts(settings)))
    app.add_exception_handler(WfrayError, wfray_error_response)
    app.add_exception_handler(StarletteHTTPException, http_error_response)
    app.include_router(v1_router(settings, client, flows, needs))
    operations_routes(app, settings, client, book, metrics, needs)
    return app


# -- /v1 -----------------------------------------------------------------------------------------


def v1_router(
    settings: Settings, client: Client, flows: dict[str, Workflow], needs: Any
) -> APIRouter:
    # The prefix on the router itself, so that each route's template (a metrics label) is
    # its full path.
    router = APIRouter(prefix="/v1", responses=ERRORS)
    run_routes(router, settings, client, needs, flows)
    _catalog_routes(router, settings, client, flows, needs)
    schedule_routes(router, client, settings, needs, flows)
    audit_routes(router, client, needs)
    upgrade_routes(router, settings, needs)
    return router


def _catalog_routes(
    router: APIRouter,
    settings: Settings,
    client: Client,
    flows: dict[str, Workflow],
    needs: Any,
) -> None:
    @router.post(
        "/events",
        status_code=202,
        response_model=EventAccepted,
        tags=["events"],
        dependencies=[needs("submit")],
    )
    def publish(body: EventBody) -> EventAccepted:
        """Start every workflow subscribed to the event, once per event id."""
        event_id = body.id or uuid.uuid4().hex
        run_ids = client.publish(body.name, body.payload, id=event_id, source="http")
        return EventAccepted(name=body.name, id=event_id, runs=run_ids)

    @router.get(
        "/workflows",
        response_model=list[WorkflowOut],
        tags=["workflows"],
        dependencies=[needs("read")],
    )
    def list_workflows() -> list[WorkflowOut]:
        """Known workflows with their DAG; those whose module is loaded here are submittable."""
        stored = client.call(Workflows())
        return WorkflowOut.listing(flows.values(), stored)

    @router.get("/queues", response_model=QueuesOut, tags=["queues"], dependencies=[needs("read")])
    def list_queues() -> QueuesOut:
        """Queues with their depth, running count and limits."""
        return QueuesOut.of(settings.queues, settings.max_backlog, client.stats())


# -- operations ----------------------------------------------------------------------------------


def operations_routes(
    app: FastAPI,
    settings: Settings,
    client: Client,
    book: TokenBook,
    metrics: ApiMetrics,
    needs: Any,
) -> None:
    """/healthz for anyone; /metrics, /openapi.json and /docs with the read scope, unless
    the operator made them public (WFRAY_API_METRICS_PUBLIC)."""
    guarded = [] if settings.api_metrics_public else [needs("read")]

    @app.get("/healthz", response_model=HealthOut, tags=["operations"], responses=ERRORS)
    def healthz(request: Request) -> JSONResponse:
        """200 when the coordinator and the store answer, 503 otherwise; the reasons only
        to a caller whose token may read (they name hosts, users and namespaces)."""
        health = check_health(client)
        code = 200 if health.status == "ok" else 503
        caller = caller_of(request, book)
        if caller is None or "read" not in caller.scopes:
            health = HealthOut(status=health.status)
        return JSONResponse(health.model_dump(exclude_none=True), status_code=code)

    @app.get(
        "/metrics",
        response_class=Response,
        tags=["operations"],
        dependencies=guarded,
        responses=ERRORS,
    )
    def prometheus() -> Response:
        """The coordinator's queues and runs, and this API's requests, as Prometheus text."""
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/openapi.json", include_in_schema=False, dependencies=guarded)
    def openapi(request: Request) -> JSONResponse:
        schema = dict(app.openapi())
        root = request.scope.get("root_path", "").rstrip("/")
        if root:
            schema["servers"] = [{"url": root}]
        return JSONResponse(schema)

    @app.get("/docs", include_in_schema=False, dependencies=guarded)
    def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(openapi_url=f"{root}/openapi.json", title="wfray - docs")


def check_health(client: Client) -> HealthOut:
    try:
        stats = client.call(Stats(), timeout_s=HEALTH_TIMEOUT_S)
    except Exception as exc:  # whatever the reason, health reports it rather than raising
        reason = f"unreachable: {type(exc).__name__}: {exc}"
        return HealthOut(status="unavailable", coordinator=reason, store="unknown")
    try:
        client.call(ListRuns(RunFilter(limit=1)), timeout_s=HEALTH_TIMEOUT_S)
    except Exception as exc:
        reason = f"unreachable: {type(exc).__name__}: {exc}"
        return HealthOut(status="unavailable", coordinator="ok", store=reason)
    detail = stats.get("health")
    detail = detail if isinstance(detail, dict) else None
    return HealthOut(status="ok", coordinator="ok", store="ok", coordinator_health=detail)
