"""Fixtures of the data tests (tests/security/test_data_*.py): a wfray of their own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from wfray.adapters.blob import FsBlobStore
from wfray.adapters.memory.executor import InlineExecutor
from wfray.adapters.sqlalchemy.store import SqlRunStore
from wfray.bootstrap import SystemClock
from wfray.coordinator.coordinator import Coordinator
from wfray.sdk.definition import Workflow
from wfray.worker.step_runner import RunnerSettings


def start_wfray(data_dir: Path, **overrides: Any) -> Any:
    """wfray on the session's Ray instance, in a namespace of its own."""
    import wfray

    namespace = f"wfray-sec-{uuid.uuid4().hex[:8]}"
    settings = wfray.load_settings(data_dir=str(data_dir), namespace=namespace, **overrides)
    return wfray.connect(settings)


@asynccontextmanager
async def inline_wfray(
    store_url: str, blob_root: Path, schemas: list[Any]
) -> AsyncIterator[Coordinator]:
    """A real coordinator on a real SQL store; steps run in-process and every result
    larger than 16 bytes goes to the blob folder."""
    store = SqlRunStore(store_url)
    executor = InlineExecutor(
        blobs=FsBlobStore(str(blob_root)), settings=RunnerSettings(blob_threshold_bytes=16)
    )
    coordinator = Coordinator(store, {"cpu": executor, "io": executor}, SystemClock())
    await coordinator.start()
    try:
        await coordinator.register(schemas)
        yield coordinator
    finally:
        await coordinator.stop()
        store.close()


# -- two subscribers of one event, with different input models -------------------------------

ARRIVED = "sec.parcel.arrived"


class Parcel(BaseModel):
    parcel: str


class Weighed(BaseModel):
    parcel: str
    grams: int


on_arrived_note = Workflow("sec_on_arrived_note", input=Parcel, events=[ARRIVED])
on_arrived_weigh = Workflow("sec_on_arrived_weigh", input=Weighed, events=[ARRIVED])


@on_arrived_note.step
def note_parcel(input: Parcel) -> str:
    return f"noted {input.parcel}"


@on_arrived_weigh.step
def weigh_parcel(input: Weighed) -> int:
    return input.grams
