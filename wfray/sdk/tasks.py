"""Plain tasks: one function, declared with `@wfray.task`, is a one-step workflow."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any, TypedDict, Unpack, overload

from pydantic import BaseModel, create_model

from wfray.domain.policy import RetryPolicy
from wfray.domain.workflow import CONTEXT
from wfray.sdk.definition import F, Workflow


class TaskOptions(TypedDict, total=False):
    """The keyword options of `task` (documented there), for type checkers."""

    name: str | None
    pool: str
    retry: RetryPolicy | None
    timeout_s: float | None
    input: type[BaseModel] | None


@overload
def task(fn: F, /) -> F: ...


@overload
def task(fn: None = None, /, **options: Unpack[TaskOptions]) -> Callable[[F], F]: ...


def task(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    pool: str = "cpu",
    retry: RetryPolicy | None = None,
    timeout_s: float | None = None,
    input: type[BaseModel] | None = None,
) -> Any:
    """Declare a plain task: a one-step workflow named after the function."""

    def decorate(func: F) -> F:
        flow = Workflow(name or func.__name__, input=input or signature_model(func))
        flow.step(
            name=func.__name__,
            pool=pool,
            retry=retry,
            timeout_s=timeout_s,
            input_fields=True,
        )(func)
        func.__wfray_workflow__ = flow  # type: ignore[attr-defined]
        return func

    return decorate(fn) if fn is not None else decorate


def signature_model(fn: Callable[..., Any]) -> type[BaseModel]:
    """A pydantic model of a function's parameters (ctx aside), to validate task inputs."""
    hints = typing.get_type_hints(fn, include_extras=True)  # keep Annotated constraints
    fields: dict[str, Any] = {}
    for param in inspect.signature(fn).parameters.values():
        if param.name == CONTEXT or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = hints.get(param.name, Any)
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (annotation, default)
    model: type[BaseModel] = create_model(f"{fn.__name__}_input", **fields)
    return model
