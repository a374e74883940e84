"""A run as the client sees it: its handle, and how its outcome becomes a value or an error."""

from __future__ import annotations

import functools
import json
import typing
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from pydantic import TypeAdapter

from wfray.adapters.blob import blob_store
from wfray.application.arg_text import arg_text
from wfray.application.client_commands import Command, R, Views
from wfray.application.messages import CommandResult, RunView
from wfray.application.views import RunDetail
from wfray.domain.errors import RunFailedError, WaitTimeoutError, WfrayError
from wfray.domain.records import LogRecord
from wfray.domain.status import RunStatus
from wfray.sdk.definition import Workflow
from wfray.sdk.step_code import load_function


class RunCalls(Protocol):
    """What a run's handle asks of the client that made it (wfray.Client is one)."""

    def call(self, command: Command[R]) -> R: ...

    def wait(self, run_ids: Iterable[str], timeout: float = ...) -> list[RunView]: ...

    def decode(self, view: RunView, flow: Workflow | None) -> Any: ...

    def detail(self, run_id: str) -> RunDetail: ...

    def cancel(self, run_id: str, reason: str = ...) -> CommandResult: ...

    def resume(self, run_ids: Sequence[str]) -> list[CommandResult]: ...

    def logs(self, run_id: str, step: str | None = ...) -> list[LogRecord]: ...


class RunHandle:
    """One run: its status, its result, its history."""

    def __init__(self, client: RunCalls, run_id: str, flow: Workflow | None) -> None:
        self.client = client
        self.run_id = run_id
        self.flow = flow

    def __repr__(self) -> str:
        return f"RunHandle({self.run_id!r})"

    def status(self) -> RunStatus:
        views = self.client.call(Views([self.run_id]))
        if not views:
            raise WfrayError(f"no run with id {self.run_id!r}")
        return views[0].status

    def result(self, timeout: float = 60.0) -> Any:
        """The run's result, waiting up to `timeout` seconds for it.

        Raises RunFailedError if the run failed, WaitTimeoutError if it is still running.
        """
        views = self.client.wait([self.run_id], timeout)
        if not views:
            raise WfrayError(f"no run with id {self.run_id!r}")
        return self.client.decode(settled(views[0], timeout), self.flow)

    def detail(self) -> RunDetail:
        return self.client.detail(self.run_id)

    def cancel(self, reason: str = "") -> CommandResult:
        return self.client.cancel(self.run_id, reason)

    def resume(self) -> CommandResult:
        (answer,) = self.client.resume([self.run_id])
        return answer

    def logs(self, step: str | None = None) -> list[LogRecord]:
        return self.client.logs(self.run_id, step)


def settled(view: RunView, timeout: float) -> RunView:
    """The view of a run that completed; an error for one that did not (yet)."""
    if not view.status.finished:
        raise WaitTimeoutError(f"run {view.run_id} is still {view.status.value} after {timeout}s")
    if view.status is not RunStatus.COMPLETED:
        raise RunFailedError(
            f"run {view.run_id} {view.status.value}: {view.error}",
            run_id=view.run_id,
            status=view.status.value,
        )
    return view


def decode_result(view: RunView, flow: Workflow | None, blob_root: str | None) -> Any:
    """A run's result as the type its final step declares (JSON values if it has several)."""
    if view.result_json is not None:
        text = view.result_json
    elif view.result_ref is not None:
        text = arg_text(json.loads(view.result_ref), blob_store(blob_root))
    else:
        return None
    return result_adapter(flow).validate_json(text)


def result_adapter(flow: Workflow | None) -> TypeAdapter[Any]:
    """How a run's result is decoded: by the return type of its one final step (a list of
    them when that step is mapped: the run's result is its items' results)."""
    if flow is None:
        return _adapter_for(None, False)
    sinks = flow.schema.sinks()
    if len(sinks) != 1:
        return _adapter_for(None, False)
    final = flow.schema.step(sinks[0])
    return _adapter_for(final.fn, final.map is not None)


@functools.lru_cache(maxsize=256)
def _adapter_for(fn_path: str | None, mapped: bool) -> TypeAdapter[Any]:
    # building a TypeAdapter costs more than a whole coordinator call: once per step
    if fn_path is None:
        return TypeAdapter(Any)
    try:
        hint = typing.get_type_hints(load_function(fn_path)).get("return", Any)
    except Exception:
        hint = Any
    return TypeAdapter(list[hint] if mapped else hint)  # type: ignore[valid-type]
