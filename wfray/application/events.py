"""Internal events: a workflow declares the event names that start it.

Publishing starts every subscribed workflow once per event id: the run id derives from the
workflow, the event name and its id, so a republished (or retried) event is a no-op.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wfray.application.messages import SubmitRequest
from wfray.application.runtime import event_run_id
from wfray.domain.errors import WfrayError

if TYPE_CHECKING:
    from wfray.application.coordinator import Coordinator


class EventError(WfrayError):
    """The event cannot be published."""

    code = "bad_event"
    http_status = 400


async def publish(
    c: Coordinator, name: str, payload_json: str, event_id: str, source: str = "client"
) -> list[str]:
    """Start the workflows subscribed to `name`; returns their run ids (new or existing)."""
    if not name.strip() or not event_id.strip():
        raise EventError(f"an event needs a name and an id, got {name!r} and {event_id!r}")
    workflows = await c.durably(c.store.list_workflows)
    requests = [
        SubmitRequest(
            run_id=event_run_id(schema.name, name, event_id),
            workflow=schema.name,
            version=schema.version,
            input_json=payload_json,
            trigger="event",
            trigger_id=f"{name}:{event_id}"
            if source == "client"
            else f"{name}:{event_id}@{source}",
        )
        for schema in workflows
        if name in schema.events
    ]
    if not requests:
        return []
    results = await c.submit(requests)
    failed = [r for r in results if r.error is not None]
    if failed:
        raise EventError(
            f"event {name!r} ({event_id}): {len(failed)} of {len(results)} runs not started: "
            + "; ".join(f"{r.run_id}: {r.error}" for r in failed[:3])
        )
    return [r.run_id for r in results]
