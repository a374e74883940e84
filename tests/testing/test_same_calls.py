"""The local wfray answers to the real client's calls under the same names and parameters, so
a test written against it reads like the code it tests (and cannot drift from it)."""

from __future__ import annotations

import inspect
from typing import Any

from wfray.testing import LocalRunHandle, LocalWfray

# The real client's calls that make no sense without Ray: its line to the coordinator actor.
RAY_ONLY = {"call", "handle"}


def public_calls(cls: type) -> dict[str, Any]:
    return {
        name: member
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_") and (callable(member) or isinstance(member, property))
    }


def parameters(function: Any) -> list[tuple[str, Any, Any]]:
    signature = inspect.signature(function)
    return [(p.name, p.kind, p.default) for p in signature.parameters.values()]


def test_every_call_of_the_real_client_is_here_with_the_same_parameters() -> None:
    from wfray.client.client import Client

    local = public_calls(LocalWfray)
    for name, real in public_calls(Client).items():
        if name in RAY_ONLY or isinstance(real, property):
            continue
        assert name in local, f"LocalWfray lacks the client's {name}()"
        assert parameters(local[name]) == parameters(real), f"{name}() takes other parameters"


def test_a_local_run_handle_has_the_calls_of_a_run_handle() -> None:
    from wfray.client.handle import RunHandle

    local = public_calls(LocalRunHandle)
    for name, real in public_calls(RunHandle).items():
        assert name in local, f"LocalRunHandle lacks {name}()"
        assert parameters(local[name]) == parameters(real), f"{name}() takes other parameters"
