"""wfray: durable workflows and task queues on Ray.

    import wfray

    flow = wfray.Workflow("orders")

    @flow.step(pool="io")
    def fetch() -> list[int]: ...

    client = wfray.connect()            # starts or finds the coordinator on this Ray cluster
    print(client.submit(flow).result(timeout=60))

Ray is imported only when a client is needed, so declaring workflows stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wfray.config import Settings, load_settings
from wfray.domain.errors import (
    BacklogFullError,
    ClaimNotHeldError,
    CycleError,
    DefinitionError,
    InputValidationError,
    InvalidClaimError,
    NonRetryableError,
    RetryLater,
    RunFailedError,
    RunNotFoundError,
    StoreUnavailableError,
    UniqueKeyError,
    UniqueRunError,
    UnknownWorkflowError,
    WaitTimeoutError,
    WfrayError,
)
from wfray.domain.policy import RetryPolicy
from wfray.domain.queueing import QueueConfig
from wfray.domain.status import RunStatus, TaskStatus
from wfray.domain.uniqueness import UniquePolicy
from wfray.domain.versions import WFRAY_VERSION
from wfray.sdk.context import StepContext
from wfray.sdk.definition import Workflow
from wfray.sdk.schedules import Schedule, schedule
from wfray.sdk.tasks import task

if TYPE_CHECKING:
    from wfray.adapters.ray.connect import connect
    from wfray.client.client import Client
    from wfray.client.handle import RunHandle

__all__ = [
    "BacklogFullError",
    "ClaimNotHeldError",
    "Client",
    "CycleError",
    "DefinitionError",
    "InputValidationError",
    "InvalidClaimError",
    "NonRetryableError",
    "QueueConfig",
    "RetryLater",
    "RetryPolicy",
    "RunFailedError",
    "RunHandle",
    "RunNotFoundError",
    "RunStatus",
    "Schedule",
    "Settings",
    "StepContext",
    "StoreUnavailableError",
    "TaskStatus",
    "UniqueKeyError",
    "UniquePolicy",
    "UniqueRunError",
    "UnknownWorkflowError",
    "WaitTimeoutError",
    "WfrayError",
    "Workflow",
    "connect",
    "load_settings",
    "schedule",
    "task",
]

__version__ = WFRAY_VERSION

# imported when first asked for: they pull in Ray (connect) or pyarrow (the handle)
_LAZY = {
    "Client": "wfray.client.client",
    "RunHandle": "wfray.client.handle",
    "connect": "wfray.adapters.ray.connect",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'wfray' has no attribute {name!r}")
