"""Declaring cron schedules in code, next to the workflow they start.

    invoices = wfray.Workflow("invoices", input=InvoiceRun)
    wfray.schedule(invoices, name="daily-invoices", cron="30 2 * * *", tz="Europe/Berlin",
                   input={"dry_run": False}, misfire="latest", overlap="skip")

`Client.register(invoices)` stores the workflow and upserts its declared schedules.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from wfray.domain.errors import DefinitionError, WfrayError
from wfray.domain.schedule import ScheduleSpec
from wfray.sdk.definition import WorkflowRef, encode_input, resolve_workflow

Schedule = ScheduleSpec  # the public name

# workflow name -> schedule name -> spec, filled at import time of the user's modules
_declared: dict[str, dict[str, ScheduleSpec]] = {}


def schedule(
    workflow: WorkflowRef,
    *,
    name: str,
    cron: str,
    tz: str = "UTC",
    input: Any = None,
    misfire: str = "skip",
    catchup_window: float | timedelta | None = None,
    grace: float | timedelta = 10.0,
    overlap: str = "skip",
    queue: str = "default",
    priority: int = 0,
    paused: bool = False,
) -> ScheduleSpec:
    """Declare a cron schedule of `workflow`; `Client.register` stores it.

    Args:
        workflow: a Workflow, a @wfray.task function, or a declared workflow's name.
        name: unique among all schedules.
        cron: 5 fields (minute hour day month weekday), or 6 with seconds last.
        tz: the IANA time zone the cron is read in; DST is handled (see domain/schedule.py).
        input: the run input, validated against the workflow's input model now.
        misfire: ticks missed while wfray was down: "skip", "latest" (the newest once), or
            "all_within" (every one within `catchup_window`).
        catchup_window: seconds (or a timedelta) of catch-up for "all_within".
        grace: a tick this late is still on time and fires under every misfire policy.
        overlap: a tick while the previous run is active: "skip", "allow", "buffer_one",
            or "cancel_previous".
        queue, priority: where the runs are queued.
        paused: declare it paused.

    Raises:
        DefinitionError: naming the schedule and the field that is wrong.
    """
    spec = build_spec(
        workflow,
        name=name,
        cron=cron,
        tz=tz,
        input=input,
        misfire=misfire,
        catchup_window=catchup_window,
        grace=grace,
        overlap=overlap,
        queue=queue,
        priority=priority,
        paused=paused,
    )
    for flow_name, specs in _declared.items():
        if name in specs and flow_name != spec.workflow:
            raise DefinitionError(
                f"schedule {name!r} is already declared for workflow {flow_name!r}; "
                "schedule names must be unique"
            )
    _declared.setdefault(spec.workflow, {})[name] = spec
    return spec


def build_spec(
    workflow: WorkflowRef, *, name: str, input: Any = None, **options: Any
) -> ScheduleSpec:
    """A validated ScheduleSpec (not declared anywhere), as `schedule` takes its arguments."""
    flow = resolve_workflow(workflow)
    try:
        input_json = encode_input(flow, input)
        unique_key = flow.unique_key(input_json)
    except WfrayError as exc:
        raise DefinitionError(f"schedule {name!r}, field 'input': {exc.message}") from exc
    for option in ("catchup_window", "grace"):
        value = options.pop(option, None)
        if isinstance(value, timedelta):
            value = value.total_seconds()
        if value is not None:
            options[f"{option}_s"] = value
    return ScheduleSpec(
        name=name, workflow=flow.name, input_json=input_json, unique_key=unique_key, **options
    )


def declared(workflow: str) -> list[ScheduleSpec]:
    """The schedules declared in code for a workflow, by name."""
    specs = _declared.get(workflow, {})
    return [specs[name] for name in sorted(specs)]


def forget(workflow: str) -> None:
    """Drop a workflow's declared schedules (for tests that declare throwaway ones)."""
    _declared.pop(workflow, None)
