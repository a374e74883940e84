"""The `/v1/schedules` routes: cron schedules created, paused, resumed, triggered, deleted
and listed with their next fire times, through the same Client as the rest of the API."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field

from wfray.application.views import ScheduleInfo
from wfray.client.client import Client
from wfray.config import Settings
from wfray.domain.errors import ScheduleNotFoundError
from wfray.domain.records import as_row
from wfray.entrypoints.http.audit import http_origin
from wfray.entrypoints.http.catalog import startable
from wfray.entrypoints.http.checks import check_queue, declared_queues
from wfray.entrypoints.http.models import MAX_PRIORITY, NAME, Strict
from wfray.sdk.definition import Workflow

ScheduleName = Annotated[str, Path(pattern=NAME, description="the schedule's name")]


class ScheduleBody(Strict):
    """A schedule of a workflow: its cron, time zone, input and policies."""

    workflow: str = Field(pattern=NAME)
    cron: str = Field(min_length=1, max_length=200, description="5 fields, or 6 with seconds")
    tz: str = Field(default="UTC", min_length=1, max_length=64, description="IANA time zone")
    input: Any = Field(default=None, description="validated against the workflow's model")
    misfire: Literal["skip", "latest", "all_within"] = "skip"
    catchup_window_s: float | None = Field(default=None, gt=0, le=366 * 24 * 3600)
    grace_s: float = Field(default=10.0, ge=0, le=24 * 3600)
    overlap: Literal["skip", "allow", "buffer_one", "cancel_previous"] = "skip"
    queue: str = Field(default="default", pattern=NAME)
    priority: int = Field(default=0, ge=-MAX_PRIORITY, le=MAX_PRIORITY)
    paused: bool = False


class ScheduleOut(BaseModel):
    name: str
    workflow: str
    cron: str
    tz: str
    misfire: str
    overlap: str
    paused: bool
    last_fired: datetime
    last_run_id: str | None
    next_fire_times: list[datetime]
    last_error: str | None

    @classmethod
    def of(cls, info: ScheduleInfo) -> ScheduleOut:
        """The spec's fields and the info's of the same names (the input stays out)."""
        return cls.model_validate({**as_row(info.spec), **as_row(info)})


class TriggerAccepted(BaseModel):
    schedule: str
    run_id: str
    link: str


def schedule_routes(
    router: APIRouter,
    client: Client,
    settings: Settings,
    needs: Any,
    flows: Mapping[str, Workflow],
) -> None:
    """Listing needs the read scope; creating, pausing, resuming, triggering and deleting,
    admin. A schedule starts only what the API may start (catalog.py)."""
    queues = declared_queues(settings.queues)

    def one(name: str, count: int = 3) -> ScheduleOut:
        for info in client.list_schedules(count):
            if info.name == name:
                return ScheduleOut.of(info)
        raise ScheduleNotFoundError(f"no schedule named {name!r}")

    _listing_routes(router, client, needs)
    _definition_routes(router, client, needs, flows, queues, one)
    _control_routes(router, client, needs, one)


One = Callable[[str], ScheduleOut]  # a schedule as the API shows it, by name


def _listing_routes(router: APIRouter, client: Client, needs: Any) -> None:
    @router.get(
        "/schedules",
        response_model=list[ScheduleOut],
        tags=["schedules"],
        dependencies=[needs("read")],
    )
    def list_schedules(
        next: Annotated[int, Query(ge=0, le=50, description="next fire times to show")] = 3,
    ) -> list[ScheduleOut]:
        """Every schedule, with how far it fired and its next fire times."""
        return [ScheduleOut.of(info) for info in client.list_schedules(next)]


def _definition_routes(
    router: APIRouter,
    client: Client,
    needs: Any,
    flows: Mapping[str, Workflow],
    queues: frozenset[str],
    one: One,
) -> None:
    @router.put(
        "/schedules/{name}",
        response_model=ScheduleOut,
        tags=["schedules"],
        dependencies=[needs("admin")],
    )
    def put_schedule(request: Request, name: ScheduleName, body: ScheduleBody) -> ScheduleOut:
        """Create a schedule, or replace its definition (it keeps how far it fired)."""
        check_queue(body.queue, queues)
        flow = startable(flows, body.workflow)
        # the body's fields are wfray.schedule's options, but for these two names
        options = body.model_dump(exclude={"workflow", "catchup_window_s", "grace_s"})
        client.create_schedule(
            flow,
            name=name,
            catchup_window=body.catchup_window_s,
            grace=body.grace_s,
            origin=http_origin(request),
            **options,
        )
        return one(name)

    @router.delete(
        "/schedules/{name}", status_code=204, tags=["schedules"], dependencies=[needs("admin")]
    )
    def delete(request: Request, name: ScheduleName) -> Response:
        """Delete the schedule; the runs it started stay."""
        client.delete_schedule(name, origin=http_origin(request))
        return Response(status_code=204)


def _control_routes(router: APIRouter, client: Client, needs: Any, one: One) -> None:
    @router.post(
        "/schedules/{name}/pause",
        response_model=ScheduleOut,
        tags=["schedules"],
        dependencies=[needs("admin")],
    )
    def pause(request: Request, name: ScheduleName) -> ScheduleOut:
        """Fire nothing until resumed; ticks that fall meanwhile never fire."""
        client.pause_schedule(name, origin=http_origin(request))
        return one(name)

    @router.post(
        "/schedules/{name}/resume",
        response_model=ScheduleOut,
        tags=["schedules"],
        dependencies=[needs("admin")],
    )
    def resume(request: Request, name: ScheduleName) -> ScheduleOut:
        client.resume_schedule(name, origin=http_origin(request))
        return one(name)

    @router.post(
        "/schedules/{name}/trigger",
        status_code=202,
        response_model=TriggerAccepted,
        tags=["schedules"],
        dependencies=[needs("admin")],
    )
    def trigger(name: ScheduleName, request: Request, response: Response) -> TriggerAccepted:
        """Start a run of the schedule now, outside its cron."""
        handle = client.trigger_schedule(name, origin=http_origin(request))
        link = str(request.url_for("get_run", run_id=handle.run_id))
        response.headers["Location"] = link
        return TriggerAccepted(schedule=name, run_id=handle.run_id, link=link)
