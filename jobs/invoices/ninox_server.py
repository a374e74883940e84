"""A local server faithful to the Ninox classic v1 REST API, for the demo and the tests.

    with running_server(state=seed.build_state(7), api_key="k") as server:
        httpx.get(f"{server.base_url}/teams", headers={"Authorization": "Bearer k"})

Routes under `/v1` follow `shared/ninox.md` section 3; errors answer `{"message": ...}` with
401 (wrong key), 404 (unknown id) or 400 (bad body or parameter). Fault injection happens
in a middleware before any `/v1` handler; the admin routes under `/_admin` (same bearer key,
no faults) let a test or the demo in another process set the fault plan.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from email import policy
from email.parser import BytesParser
from typing import Annotated, Any

import httpx
import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from jobs.invoices.ninox_faults import FaultPlan, FaultRule
from jobs.invoices.ninox_schema import BadRequestError, NinoxStoreError
from jobs.invoices.ninox_store import ListQuery, NinoxState

API_PREFIX = "/v1"
ADMIN_PREFIX = "/_admin"
_TABLE = "/teams/{team}/databases/{db}/tables/{table}"
_RECORD = _TABLE + "/records/{record_id}"


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status, headers=headers)


def _bearer_guard(api_key: str) -> Callable[[Request], None]:
    def require_key(request: Request) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip(), api_key):
            raise _Unauthorized()

    return require_key


class _Unauthorized(Exception):
    pass


def _parse_filters(raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BadRequestError(f"filters must be JSON like {{'fields': {{...}}}}: {exc}") from exc
    if not isinstance(parsed, dict) or not isinstance(parsed.get("fields", {}), dict):
        raise BadRequestError(f"filters must be an object {{'fields': {{name: value}}}}, got {raw}")
    fields: dict[str, Any] = parsed.get("fields", {})
    return fields


def _multipart(request_content_type: str, body: bytes) -> dict[str, tuple[str | None, str, bytes]]:
    """Form parts by name: (filename, content type, bytes).

    The stdlib e-mail parser reads multipart/form-data, so no python-multipart is needed.
    """
    if not request_content_type.lower().startswith("multipart/form-data"):
        raise BadRequestError(f"file upload needs multipart/form-data, got {request_content_type}")
    head = f"Content-Type: {request_content_type}\r\n\r\n".encode("latin-1")
    message = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    parts: dict[str, tuple[str | None, str, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            parts[name] = (part.get_filename(), part.get_content_type(), payload)
    return parts


def _records_router(state: NinoxState) -> APIRouter:
    router = APIRouter()

    @router.get(_TABLE + "/records")
    def list_records(
        team: str,
        db: str,
        table: str,
        page: Annotated[int, Query(ge=0)] = 0,
        per_page: Annotated[int, Query(alias="perPage", ge=1, le=10_000)] = 100,
        filters: str | None = None,
        order: str | None = None,
        desc: bool = False,
        new: bool = False,
        updated: bool = False,
        since_id: Annotated[int | None, Query(alias="sinceId")] = None,
        since_sq: Annotated[int | None, Query(alias="sinceSq")] = None,
    ) -> list[dict[str, Any]]:
        if order is not None and (new or updated):
            raise BadRequestError("order cannot be combined with new or updated")
        query = ListQuery(
            page, per_page, _parse_filters(filters), order, desc, new, updated, since_id, since_sq
        )
        return state.list_records(team, db, table, query)

    @router.get(_RECORD)
    def get_record(team: str, db: str, table: str, record_id: int) -> dict[str, Any]:
        return state.get_record(team, db, table, record_id)

    @router.post(_TABLE + "/records", response_model=None)
    async def upsert(team: str, db: str, table: str, request: Request) -> Any:
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BadRequestError(
                f"body must be JSON (a record or an array of records): {exc}"
            ) from exc
        if isinstance(body, list):
            return state.upsert(team, db, table, body)
        return state.upsert(team, db, table, [body])[0]

    @router.delete(_RECORD)
    def delete_record(team: str, db: str, table: str, record_id: int) -> Response:
        state.delete_record(team, db, table, record_id)
        return Response(status_code=200)

    return router


def _files_router(state: NinoxState) -> APIRouter:
    router = APIRouter()

    @router.get(_RECORD + "/files")
    def list_files(team: str, db: str, table: str, record_id: int) -> list[dict[str, Any]]:
        return state.list_files((team, db, table, record_id))

    @router.post(_RECORD + "/files")
    async def upload_file(
        team: str, db: str, table: str, record_id: int, request: Request
    ) -> dict[str, Any]:
        parts = _multipart(request.headers.get("content-type", ""), await request.body())
        if "file" not in parts or not parts["file"][0]:
            raise BadRequestError("multipart body needs a part 'file' with a filename")
        filename, content_type, content = parts["file"]
        field = parts["fieldName"][2].decode() if "fieldName" in parts else None
        ref = (team, db, table, record_id)
        return state.add_file(ref, filename or "", content, content_type, field)

    @router.get(_RECORD + "/files/{name}")
    def download_file(team: str, db: str, table: str, record_id: int, name: str) -> Response:
        stored = state.get_file((team, db, table, record_id), name)
        return Response(stored.content, media_type=stored.content_type)

    @router.delete(_RECORD + "/files/{name}")
    def delete_file(team: str, db: str, table: str, record_id: int, name: str) -> Response:
        state.delete_file((team, db, table, record_id), name)
        return Response(status_code=200)

    return router


def _schema_router(state: NinoxState) -> APIRouter:
    router = APIRouter()
    router.add_api_route("/teams", state.teams, methods=["GET"])
    router.add_api_route("/teams/{team_id}", state.team, methods=["GET"])
    router.add_api_route("/teams/{team_id}/databases", state.databases, methods=["GET"])
    base = "/teams/{team_id}/databases/{database_id}"
    router.add_api_route(base, state.database, methods=["GET"])
    router.add_api_route(base + "/tables", state.tables, methods=["GET"])
    router.add_api_route(base + "/tables/{table}", state.table, methods=["GET"])

    @router.api_route(base + "/query", methods=["GET", "POST"])
    @router.post(base + "/exec")
    def script(team_id: str, database_id: str) -> None:
        state.database(team_id, database_id)  # 404 first, like any other route
        raise BadRequestError("Ninox script queries are not emulated by the local server")

    return router


def _admin_router(state: NinoxState) -> APIRouter:
    router = APIRouter()

    @router.get("/faults")
    def faults() -> dict[str, Any]:
        injected = [asdict(fault) for fault in state.faults.injected]
        return {"rules": state.faults.describe(), "injected": injected}

    @router.post("/faults")
    def add_fault(rule: FaultRule) -> dict[str, Any]:
        state.faults.add(rule)
        return {"rules": state.faults.describe()}

    @router.put("/faults")
    def replace_faults(plan: FaultPlan) -> dict[str, Any]:
        state.faults.apply(plan)
        return {"rules": state.faults.describe()}

    @router.delete("/faults")
    def clear_faults() -> dict[str, Any]:
        state.faults.clear()
        return {"rules": []}

    return router


def create_app(state: NinoxState, api_key: str) -> FastAPI:
    """The local Ninox server as a FastAPI app over `state`, accepting one bearer `api_key`."""
    if not api_key:
        raise ValueError("api_key must be a non-empty string")
    guard = Depends(_bearer_guard(api_key))
    app = FastAPI(title="Local Ninox (classic v1 API)", openapi_url=None, docs_url=None)
    app.include_router(_schema_router(state), prefix=API_PREFIX, dependencies=[guard])
    app.include_router(_records_router(state), prefix=API_PREFIX, dependencies=[guard])
    app.include_router(_files_router(state), prefix=API_PREFIX, dependencies=[guard])
    app.include_router(_admin_router(state), prefix=ADMIN_PREFIX, dependencies=[guard])

    @app.get(ADMIN_PREFIX + "/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.exception_handler(NinoxStoreError)
    async def store_error(_: Request, exc: NinoxStoreError) -> JSONResponse:
        return _error(exc.status, str(exc))

    @app.exception_handler(_Unauthorized)
    async def unauthorized(_: Request, __: _Unauthorized) -> JSONResponse:
        message = "missing or wrong API key: expected 'Authorization: Bearer <key>'"
        return _error(401, message, {"WWW-Authenticate": "Bearer"})

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        return _error(400, f"invalid request: {problems}")

    @app.middleware("http")
    async def inject_faults(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if not request.url.path.startswith(API_PREFIX + "/"):
            return await call_next(request)
        action = state.faults.decide(request.method, request.url.path)
        if action is None:
            return await call_next(request)
        if action.latency_s:
            await asyncio.sleep(action.latency_s)
        if action.status is None:
            return await call_next(request)
        headers = {"Retry-After": action.retry_after} if action.retry_after else None
        return _error(action.status, f"injected fault: HTTP {action.status}", headers)

    return app


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """A running local Ninox server.

    Attributes:
        base_url: the API root to give a Ninox client, ending in `/v1`.
        admin_url: the admin root (`/_admin`), for fault plans from another process.
        api_key: the bearer key the server accepts.
        state: the live state, for fault rules and inspection.
    """

    base_url: str
    admin_url: str
    api_key: str
    state: NinoxState


@contextmanager
def running_server(
    state: NinoxState | None = None, api_key: str | None = None, startup_timeout_s: float = 10.0
) -> Iterator[ServerInfo]:
    """Serve `state` with uvicorn on 127.0.0.1 (a free port) in a background thread."""
    state = state if state is not None else NinoxState()
    api_key = api_key or secrets.token_hex(16)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(state, api_key),
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"ninox-{port}", daemon=True
    )
    thread.start()
    root = f"http://127.0.0.1:{port}"
    info = ServerInfo(root + API_PREFIX, root + ADMIN_PREFIX, api_key, state)
    try:
        _wait_until_up(info.admin_url + "/health", thread, startup_timeout_s)
        yield info
    finally:
        server.should_exit = True
        thread.join(timeout=startup_timeout_s)
        sock.close()


def _wait_until_up(url: str, thread: threading.Thread, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=1.0) as probe:
        while time.monotonic() < deadline:
            if not thread.is_alive():
                raise RuntimeError(f"the local Ninox server thread died before answering at {url}")
            try:
                if probe.get(url).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.02)
    raise TimeoutError(f"the local Ninox server did not answer at {url} within {timeout_s} s")


def push_fault_plan(admin_url: str, api_key: str, plan: FaultPlan, timeout_s: float = 5.0) -> None:
    """Replace the fault plan of a server running in another process."""
    response = httpx.put(
        admin_url + "/faults",
        json=plan.model_dump(),
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=timeout_s,
    )
    response.raise_for_status()
