"""The short paths of an unloaded run on a real Ray instance: `client.execute` (submit and
wait in one call) and outcomes that cpu workers report to the coordinator themselves."""

from __future__ import annotations

import time
from typing import Any

import pytest
import ray

from tests.fixtures import flows
from wfray.adapters.ray.host import executor_name
from wfray.domain.errors import RunFailedError
from wfray.domain.status import AttemptStatus


def test_execute_returns_the_typed_result(client: Any) -> None:
    assert client.execute(flows.numbers, {"count": 4}, timeout=60) == 0 + 1 + 4 + 9
    assert client.execute(flows.chain, timeout=60) == 5


def test_execute_raises_for_a_failed_run_naming_it(client: Any) -> None:
    with pytest.raises(RunFailedError, match="failed") as caught:
        client.execute(flows.unserialisable, timeout=60)
    assert caught.value.run_id in str(caught.value)


def test_a_directly_reported_outcome_is_recorded_once_and_its_copy_acknowledged(
    client: Any,
) -> None:
    """The run finishes from the worker's own report; the executor's copy, delivered with
    a later drain, changes nothing and leaves the outbox once acknowledged."""
    handle = client.submit(flows.chain)
    assert handle.result(timeout=60) == 5
    attempts = handle.detail().attempts
    assert sorted((a.step, a.attempt, a.status) for a in attempts) == [
        (f"c{i}", 1, AttemptStatus.SUCCEEDED) for i in range(1, 6)
    ]
    assert all(a.node_id and a.pid for a in attempts)
    executor = ray.get_actor(executor_name("cpu"), namespace=client.settings.namespace)
    deadline = time.monotonic() + 15  # a drain period or two
    while True:
        stats = ray.get(executor.stats.remote(), timeout=10)
        if stats["unacked"] == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert (stats["running"], stats["unacked"]) == (0, 0)
