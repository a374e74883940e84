"""Publishing an event: the coordinator starts every subscribed workflow once per event id.

The run id derives from the workflow, the event name and its id, so a republished (or
retried) event is a no-op. The payload arrives validated for each subscriber by the
publisher (`wfray.sdk.events`). Each run records the runtime env its workflow's
subscription names (`subscribe`), as a schedule's runs record the schedule's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from wfray.application.messages import SubmitRequest
from wfray.coordinator.durable import DurableStore
from wfray.coordinator.intake import Intake
from wfray.coordinator.loading import RunLoader
from wfray.domain.code_env import check_env_hash
from wfray.domain.errors import EventError, InputValidationError
from wfray.domain.ids import event_run_id
from wfray.domain.workflow import WorkflowSchema


async def subscribe(
    durable: DurableStore,
    loader: RunLoader,
    schemas: Sequence[WorkflowSchema],
    env_hash: str | None,
    now: datetime,
) -> None:
    """Record the env of the client that registered these workflows as the one the runs
    their events start run in (the latest registration with an env wins: a deploy). A
    client without one leaves what a deploy recorded: a publisher registers the
    subscribers it declares too."""
    subscribed = [(schema.name, event) for schema in schemas for event in schema.events]
    if env_hash is None or not subscribed:
        return
    if await loader.load_envs([check_env_hash(env_hash)]):
        raise InputValidationError(
            f"unknown runtime env {env_hash[:12]}: record it (RecordEnv) before registering"
        )
    await durable.call(durable.store.save_subscriptions, subscribed, env_hash, now)


async def publish(
    durable: DurableStore,
    intake: Intake,
    name: str,
    payload_json: str,
    event_id: str,
    source: str = "client",
    inputs: Mapping[str, str] | None = None,
    keys: Mapping[str, str] | None = None,
) -> list[str]:
    """Start the workflows subscribed to `name`; returns their run ids (new or existing).

    `inputs` holds the payload as validated for each subscriber (`validated_inputs`); a
    subscriber with an input model but no validated input refuses the whole event; `keys`
    the subscribers' uniqueness keys (`unique_keys`)."""
    if not name.strip() or not event_id.strip():
        raise EventError(f"an event needs a name and an id, got {name!r} and {event_id!r}")
    inputs = inputs or {}
    workflows = [s for s in await durable.call(durable.store.list_workflows) if name in s.events]
    unchecked = sorted({s.name for s in workflows if s.input_type and s.name not in inputs})
    if unchecked:
        raise InputValidationError(
            f"event {name!r}: no run started: the payload was not validated against the "
            f"input model of subscriber(s) {', '.join(map(repr, unchecked))}; publish from a "
            "process that declares them (import their module, e.g. with WFRAY_MODULES)"
        )
    envs = await durable.call(durable.store.subscription_envs, name)
    requests = [
        SubmitRequest(
            run_id=event_run_id(schema.name, name, event_id),
            env_hash=envs.get(schema.name),
            workflow=schema.name,
            version=schema.version,
            input_json=inputs.get(schema.name, payload_json),
            unique_key=(keys or {}).get(schema.name),
            trigger="event",
            trigger_id=f"{name}:{event_id}"
            if source == "client"
            else f"{name}:{event_id}@{source}",
        )
        for schema in workflows
    ]
    if not requests:
        return []
    results = await intake.submit(requests)
    failed = [r for r in results if r.error is not None]
    if failed:
        raise EventError(
            f"event {name!r} ({event_id}): {len(failed)} of {len(results)} runs not started: "
            + "; ".join(f"{r.run_id}: {r.error}" for r in failed[:3])
        )
    return [r.run_id for r in results]
