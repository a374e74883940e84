"""A completed step's result and a finished run's, as the engine stores and passes them on:
JSON text when every part is in the database, a blob structure when a part is in the blob
store (a fan-out collects its items without reading them)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from dataclasses import dataclass

from wfray.domain.records import TaskRecord
from wfray.domain.run_state import RunState


def step_result(state: RunState, step: str) -> tuple[str | None, str | None]:
    """A completed step's result as (json, blob-structure): a fan-out collects its items."""
    task = state.task(step)
    if step in state.collected:  # a paged fan-out: its items are no longer in memory
        return state.collected[step]
    if task.map_count is None:
        if task.result_ref is not None:
            return None, json.dumps({"blob": task.result_ref})
        return task.result_json, None
    items = state.items(step)
    if all(item.result_ref is None for item in items):
        return "[" + ",".join(item.result_json or "null" for item in items) + "]", None
    parts = [_ref_of(item) for item in items]
    return None, json.dumps({"list": parts})


def _ref_of(task: TaskRecord) -> dict[str, str]:
    if task.result_ref is not None:
        return {"blob": task.result_ref}
    return {"json": task.result_json or "null"}


def run_result(state: RunState) -> tuple[str | None, str | None]:
    """The run's result: its single sink's result, or {sink: result} for several sinks."""
    sinks = state.schema.sinks()
    if len(sinks) == 1:
        return step_result(state, sinks[0])
    results = {name: step_result(state, name) for name in sinks}
    if all(ref is None for _, ref in results.values()):
        body = ",".join(
            f"{json.dumps(name)}:{text or 'null'}" for name, (text, _) in results.items()
        )
        return "{" + body + "}", None
    parts = {
        name: ({"json": text or "null"} if ref is None else json.loads(ref))
        for name, (text, ref) in results.items()
    }
    return None, json.dumps({"dict": parts})


COLLECTED = "collected"  # an argument spec key: a fan-out's results, read where used


def collection_ref(group: TaskRecord) -> tuple[None, str]:
    """A paged fan-out's result (`group`: its whole-step task) as a reference to its item
    results in the store, which the step that takes them reads a page at a time
    (`application/collected.py`), so the coordinator neither reads nor holds them. When the
    fan-out began tells it from another of the same run id (a run deleted, then reused)."""
    began = group.started_at.isoformat() if group.started_at is not None else None
    ref = {"run": group.run_id, "step": group.step, "count": group.map_count or 0, "began": began}
    return None, json.dumps({COLLECTED: ref})


@dataclass(frozen=True, slots=True)
class CollectFailed:
    """A paged fan-out whose results could not be collected: its step fails with this."""

    error_type: str
    message: str


# what collecting a paged fan-out gives: its result as `step_result` would, or the failure
Collected = tuple[str | None, str | None] | CollectFailed


class CollectionTooLarge(Exception):
    """Collecting went past its limit (`collect`); the caller names the step and the limit."""


def collect(
    results: Iterable[tuple[str | None, str | None]], any_blob: bool, limit: int | None = None
) -> tuple[str | None, str | None]:
    """A fan-out's item results, (json, blob ref) in map order, as `step_result` gives a
    fan-out's result; read once, written into one text (no list of N parts held) unless a
    part is in the blob store (`any_blob`: then the parts are references). Past `limit`
    characters it stops reading and raises CollectionTooLarge."""
    end = "]}" if any_blob else "]"
    room = None if limit is None else limit - len(end)  # what the items may take
    out = io.StringIO()
    out.write('{"list": [' if any_blob else "[")
    first = True
    for text, ref in results:
        if not first:
            out.write(", " if any_blob else ",")
        if any_blob:
            out.write(json.dumps({"blob": ref} if ref is not None else {"json": text or "null"}))
        else:
            out.write(text or "null")
        first = False
        if room is not None and out.tell() > room:  # stop reading: it cannot fit
            raise CollectionTooLarge(f"over {limit} characters")
    out.write(end)
    return (None, out.getvalue()) if any_blob else (out.getvalue(), None)
