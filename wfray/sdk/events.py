"""Internal events: a workflow declares the event names that start it.

Publishing starts every subscribed workflow once per event id: the run id derives from the
workflow, the event name and its id, so a republished (or retried) event is a no-op.

The payload is validated against each subscriber's input model where the models live, in
the publishing process (`validated_inputs`), and each subscriber's run stores its own
validated input. The coordinator starts nothing unless every subscriber with an input model
has one: a payload that fits one subscriber but not another starts no run at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from wfray.domain.errors import InputValidationError, UniqueKeyError
from wfray.sdk.definition import Workflow, encode_input


def validated_inputs(name: str, payload: Any, subscribers: Iterable[Workflow]) -> dict[str, str]:
    """Each subscriber's input from `payload`, validated against its input model and
    encoded as JSON; InputValidationError naming every subscriber that refuses it (and the
    fields) before anything is sent."""
    inputs: dict[str, str] = {}
    refusals: list[str] = []
    for flow in subscribers:
        if name not in flow.events:
            continue
        try:
            inputs[flow.name] = encode_input(flow, payload)
        except InputValidationError as exc:
            refusals.append(f"subscriber {flow.name!r}: {exc.message}")
    if refusals:
        raise InputValidationError(
            f"event {name!r}: payload refused, no run started: " + "; ".join(refusals)
        )
    return inputs


def unique_keys(name: str, inputs: Mapping[str, str], flows: Iterable[Workflow]) -> dict[str, str]:
    """Each subscriber's uniqueness key of its validated input (those that declare one);
    UniqueKeyError naming the event and the workflow before anything is sent."""
    keys: dict[str, str] = {}
    for flow in flows:
        if flow.unique is None or flow.name not in inputs:
            continue
        try:
            key = flow.unique_key(inputs[flow.name])
        except UniqueKeyError as exc:
            raise UniqueKeyError(f"event {name!r}: no run started: {exc.message}") from exc
        if key is not None:
            keys[flow.name] = key
    return keys
