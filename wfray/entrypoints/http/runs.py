"""The `/v1/runs` routes: submit (submit scope), read (read scope), cancel and retry (admin).

Reads are pages: runs by keyset, a run's tasks and attempts by key, log lines after a line
id; a followed log stream is bounded in time and in number per caller (streams.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask

from wfray.application.client_commands import Views
from wfray.application.messages import CommandResult, RunView
from wfray.client.client import Client
from wfray.config import Settings
from wfray.domain.errors import RunNotFoundError
from wfray.domain.status import RunStatus
from wfray.entrypoints.http.audit import http_origin
from wfray.entrypoints.http.auth import ANONYMOUS
from wfray.entrypoints.http.catalog import startable
from wfray.entrypoints.http.checks import as_utc, check_queue, declared_queues, validate_input
from wfray.entrypoints.http.models import (
    NAME,
    RUN_ID,
    CancelBody,
    CommandOut,
    LogLineOut,
    RunDetailOut,
    RunPage,
    SubmitAccepted,
    SubmitBody,
)
from wfray.entrypoints.http.paging import (
    cursor_or_422,
    decode_cursor,
    decode_detail_cursor,
    page_detail,
    page_runs,
)
from wfray.entrypoints.http.streams import Follow, StreamSlots, follow_logs
from wfray.sdk.definition import Workflow

RunId = Annotated[str, Path(pattern=RUN_ID, description="the run's id")]
PAGE_MAX = 1000  # runs, tasks, attempts or log lines in one answer
DETAIL_PAGE = 500  # tasks and attempts in a run's detail when the caller names no limit


def run_routes(
    router: APIRouter,
    settings: Settings,
    client: Client,
    needs: Any,
    flows: Mapping[str, Workflow],
) -> None:
    _submit_route(router, client, needs, flows, declared_queues(settings.queues))
    _read_routes(router, client, needs)
    _log_route(router, settings, client, needs, StreamSlots(settings.api_max_streams))
    _command_routes(router, client, needs)


def _submit_route(
    router: APIRouter,
    client: Client,
    needs: Any,
    flows: Mapping[str, Workflow],
    queues: frozenset[str],
) -> None:
    @router.post(
        "/runs",
        status_code=202,
        response_model=SubmitAccepted,
        tags=["runs"],
        dependencies=[needs("submit")],
    )
    def submit(
        request: Request,
        response: Response,
        body: SubmitBody,
        idempotency_key: Annotated[
            str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200)
        ] = None,
    ) -> SubmitAccepted:
        """Start a run of a workflow or a plain task. The same Idempotency-Key with the same
        request returns the run it started first; with another workflow or input, 409. A
        workflow with a uniqueness key answers with the run holding it, or 409 when its
        policy refuses another run (code `unique_run_exists`)."""
        check_queue(body.queue, queues)
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


def _read_routes(router: APIRouter, client: Client, needs: Any) -> None:
    @router.get("/runs", response_model=RunPage, tags=["runs"], dependencies=[needs("read")])
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
        position = cursor_or_422(cursor, decode_cursor)
        return page_runs(client, workflow, status, after, before, limit, position)

    @router.get(
        "/runs/{run_id}",
        response_model=RunDetailOut,
        tags=["runs"],
        dependencies=[needs("read")],
    )
    def get_run(
        run_id: RunId,
        limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = DETAIL_PAGE,
        cursor: Annotated[str | None, Query(max_length=1000)] = None,
    ) -> RunDetailOut:
        """A run with a page of its tasks (statuses, retries) and attempts (worker, node,
        error); `next_cursor` reads on."""
        return page_detail(client, run_id, limit, cursor_or_422(cursor, decode_detail_cursor))


def _log_route(
    router: APIRouter, settings: Settings, client: Client, needs: Any, slots: StreamSlots
) -> None:
    @router.get(
        "/runs/{run_id}/logs",
        response_model=list[LogLineOut],
        tags=["runs"],
        dependencies=[needs("read")],
    )
    def get_logs(
        request: Request,
        run_id: RunId,
        step: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
        after: Annotated[
            int | None, Query(ge=0, le=2**63 - 1, description="the lines after this line id")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = PAGE_MAX,
        follow: bool = False,
    ) -> Any:
        """A page of its log lines after line `after`; with `follow=true`, NDJSON lines
        streamed as they come until the run ends, the client leaves or the stream's time
        is up (then reconnect with `after` set to the last id received)."""
        run_view(client, run_id)
        if not follow:
            return [LogLineOut.of(line) for line in client.logs(run_id, step, after, limit)]
        caller = getattr(request.state, "caller", None)
        release = slots.take(caller.name if caller is not None else ANONYMOUS)
        spec = Follow(run_id, step, after, limit, settings.api_follow_max_s)
        stream = follow_logs(
            client, spec, lambda: run_view(client, run_id).status.finished, release
        )
        # The stream releases its slot when it ends; the background task when the
        # response ends without the stream having started.
        return StreamingResponse(
            stream, media_type="application/x-ndjson", background=BackgroundTask(release)
        )


def _command_routes(router: APIRouter, client: Client, needs: Any) -> None:
    @router.post(
        "/runs/{run_id}/cancel",
        response_model=CommandOut,
        tags=["runs"],
        dependencies=[needs("admin")],
    )
    def cancel(
        request: Request, run_id: RunId, body: Annotated[CancelBody | None, Body()] = None
    ) -> Any:
        """Cancel a run, then compensate what it completed unless `compensate` is false."""
        body = body or CancelBody()
        origin = http_origin(request)
        return command_response(client.cancel(run_id, body.reason, body.compensate, origin=origin))

    @router.post(
        "/runs/{run_id}/retry",
        response_model=CommandOut,
        tags=["runs"],
        dependencies=[needs("admin")],
    )
    def retry(request: Request, run_id: RunId) -> Any:
        """Resume a failed or cancelled run from the steps that did not complete."""
        (answer,) = client.resume([run_id], origin=http_origin(request))
        return command_response(answer)


def run_view(client: Client, run_id: str) -> RunView:
    views = client.call(Views([run_id]))
    if not views:
        raise RunNotFoundError(f"no run with id {run_id!r}")
    return views[0]


def command_response(result: CommandResult) -> JSONResponse:
    if result.status == "unknown":
        raise RunNotFoundError(result.message)
    body = CommandOut.of(result).model_dump()
    return JSONResponse(body, status_code=200 if result.applied else 409)
