"""A local wfray per test, on a fake clock that starts at a known time."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from tests.testing import flows
from wfray.testing import FakeClock, LocalWfray, local_wfray

START = datetime(2030, 1, 7, 0, 30, tzinfo=UTC)  # a Monday, half past midnight


@pytest.fixture(autouse=True)
def _fresh_effects() -> Iterator[None]:
    flows.EFFECTS.clear()
    yield
    for gate in flows.GATES.values():
        gate.set()  # a step a failed test left waiting ends now
    flows.GATES.clear()


@pytest.fixture
def wf() -> Iterator[LocalWfray]:
    with local_wfray(FakeClock(START)) as local:
        yield local
