"""A step's code, found by its path (`module:qualname`) where the step runs or is read."""

from __future__ import annotations

import functools
import importlib
import typing
from collections.abc import Callable
from typing import Any

from wfray.domain.errors import StepImportError


@functools.cache
def load_function(path: str) -> Callable[..., Any]:
    module_name, _, qualname = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise StepImportError(
            f"cannot import step {path!r} on this worker ({exc}); ship the code to every node "
            "as an installed package or through Ray's runtime_env (working_dir / py_modules)"
        ) from exc
    if not callable(target):
        raise StepImportError(f"{path!r} is not callable")
    return typing.cast(Callable[..., Any], target)
