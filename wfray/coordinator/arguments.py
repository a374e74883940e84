"""Builds an attempt's arguments from the run's input and its dependencies' results."""

from __future__ import annotations

import json
from typing import Any

from wfray.application.messages import ArgSpec
from wfray.domain.records import WHOLE_STEP, TaskRecord
from wfray.domain.results import step_result
from wfray.domain.run_state import RunState
from wfray.domain.workflow import CONTEXT, INPUT, INPUT_FIELD, StepSchema


def task_ref(task: TaskRecord) -> ArgSpec:
    if task.result_ref is not None:
        return {"blob": task.result_ref}
    return {"json": task.result_json or "null"}


class ArgumentBuilder:
    """Keeps each fanned-out list split once, not once per item."""

    def __init__(self) -> None:
        self._split: dict[tuple[str, str], list[str]] = {}

    def forget(self, run_id: str) -> None:
        for key in [k for k in self._split if k[0] == run_id]:
            del self._split[key]

    def build(self, state: RunState, step: StepSchema, task: TaskRecord) -> dict[str, ArgSpec]:
        args: dict[str, ArgSpec] = {}
        for param, source in step.bindings.items():
            if source == CONTEXT:
                continue
            if source == INPUT:
                args[param] = {"json": state.run.input_json}
            elif source.startswith(INPUT_FIELD):
                field = {"json": state.run.input_json}
                args[param] = {"field": field, "name": source[len(INPUT_FIELD) :]}
            elif source == step.map and task.map_index != WHOLE_STEP:
                args[param] = self._item(state, source, task.map_index)
            else:
                text, ref = step_result(state, source)
                args[param] = {"json": text} if ref is None else _loads(ref)
        return args

    def _item(self, state: RunState, source: str, index: int) -> ArgSpec:
        group = state.task(source)
        if group.map_count is not None:
            item = state.tasks.get((source, index))
            if item is not None or source not in state.collected:
                return task_ref(state.task(source, index))
            # a paged fan-out: its items left memory, the step reads its own from the store
            _, ref = state.collected[source]
            return {"item": _loads(ref or "null"), "index": index}
        if group.result_ref is not None:
            return {"item": {"blob": group.result_ref}, "index": index}
        return {"json": self._split_text(state, source, group.result_json)[index]}

    def _split_text(self, state: RunState, source: str, text: str | None) -> list[str]:
        key = (state.run.run_id, source)
        if key not in self._split:
            items = json.loads(text or "[]")
            self._split[key] = [json.dumps(item, separators=(",", ":")) for item in items]
        return self._split[key]


def _loads(text: str) -> Any:
    return json.loads(text)
