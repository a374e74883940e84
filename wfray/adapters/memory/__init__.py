"""In-memory adapters, one per port, for tests without Ray, a database or a folder.

Exported lazily: importing one of them (the executor, say) loads no other, so the blob
store's pyarrow stays out of a process that never stores a blob.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wfray.adapters.memory.blob import InMemoryBlobStore
    from wfray.adapters.memory.executor import InlineExecutor
    from wfray.adapters.memory.schedule_store import InMemoryScheduleStore
    from wfray.adapters.memory.services import InlineStepServices
    from wfray.adapters.memory.store import InMemoryRunStore

_WHERE = {
    "InMemoryBlobStore": "blob",
    "InlineExecutor": "executor",
    "InMemoryScheduleStore": "schedule_store",
    "InlineStepServices": "services",
    "InMemoryRunStore": "store",
}
__all__ = [
    "InMemoryBlobStore",
    "InMemoryRunStore",
    "InMemoryScheduleStore",
    "InlineExecutor",
    "InlineStepServices",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
