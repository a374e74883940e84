"""Whether a claim's holder still runs, read for a run not in memory: its one task is read
by the primary key, not the run's every task (a run may hold a million fan-out items)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from wfray.adapters.memory.store import InMemoryRunStore
from wfray.adapters.sqlalchemy.store import SqlRunStore
from wfray.application.batch import Batch
from wfray.coordinator.claims import ClaimDesk
from wfray.coordinator.durable import DurableStore
from wfray.coordinator.settings import CoordinatorSettings
from wfray.coordinator.state import CoordinatorState
from wfray.domain.claims import Holder, StepLiveness
from wfray.domain.records import WHOLE_STEP, RunRecord, TaskRecord
from wfray.domain.status import RunStatus, TaskStatus
from wfray.testing.clock import FakeClock

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
ITEMS = 3_000


class CountingStore:
    """The store, with the rows each read call returned counted."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.rows: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        call = getattr(self._store, name)

        def counted(*args: Any) -> Any:
            found = call(*args)
            self.rows[name] += len(found) if isinstance(found, list) else 1
            return found

        return counted


def task(step: str, map_index: int, status: TaskStatus, **kw: Any) -> TaskRecord:
    return TaskRecord("r1", step, map_index, status, "cpu", NOW, **kw)


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    found: Any = (
        InMemoryRunStore()
        if request.param == "memory"
        else SqlRunStore(f"sqlite:///{tmp_path / 'wfray.db'}")
    )
    batch = Batch()
    batch.insert_run(RunRecord("r1", "flow", "1", RunStatus.RUNNING, "null", NOW))
    batch.insert_task(task("a", WHOLE_STEP, TaskStatus.COMPLETED))
    batch.insert_task(task("fan", WHOLE_STEP, TaskStatus.RUNNING, map_count=ITEMS))
    for index in range(ITEMS):
        status = TaskStatus.RUNNING if index == 7 else TaskStatus.COMPLETED
        batch.insert_task(task("fan", index, status))
    batch.insert_task(task("fan2", WHOLE_STEP, TaskStatus.QUEUED))
    found.commit(batch)
    yield found
    if request.param == "sqlite":
        found.close()


@pytest.mark.parametrize(
    ("step", "map_index", "expected"),
    [
        ("fan", 7, StepLiveness.RUNNING),
        ("fan", 8, StepLiveness.ENDED),
        ("fan", WHOLE_STEP, StepLiveness.RUNNING),
        ("fan2", WHOLE_STEP, StepLiveness.WAITING),  # a step name that extends another's
        ("a", WHOLE_STEP, StepLiveness.ENDED),
        ("fan", ITEMS, StepLiveness.ENDED),  # no such item: gone
        ("gone", WHOLE_STEP, StepLiveness.ENDED),
    ],
)
def test_the_holders_task_alone_is_read(
    store: Any, step: str, map_index: int, expected: StepLiveness
) -> None:
    counting = CountingStore(store)
    memory = CoordinatorState(CoordinatorSettings())  # the run is not in memory
    desk = ClaimDesk(memory, DurableStore(counting, 1.0), FakeClock(NOW))

    liveness = asyncio.run(desk.liveness(Holder("r1", step, map_index, 1)))

    assert liveness is expected
    assert sum(counting.rows.values()) <= 1, counting.rows
