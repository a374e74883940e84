"""An unreachable database: connect fails within a bounded time, clearly, without secrets."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import ray

import wfray
from wfray.adapters.ray.client import RayClient
from wfray.adapters.ray.host import COORDINATOR_NAME, executor_name
from wfray.domain.errors import WfrayError

PASSWORD = "s3cret-Pa55word"
# nothing listens on port 1; connecting is refused at once
URL = f"postgresql+psycopg://wfray:{PASSWORD}@127.0.0.1:1/wfray"
MASKED = "postgresql+psycopg://wfray:***@127.0.0.1:1/wfray"
BOUND_S = 60.0


def wfray_actors(namespace: str) -> list[str]:
    alive = []
    for name in (COORDINATOR_NAME, executor_name("cpu"), executor_name("io")):
        try:
            ray.get_actor(name, namespace=namespace)
        except ValueError:
            continue
        alive.append(name)
    return alive


def test_connect_to_an_unreachable_database_fails_clearly_and_leaves_nothing(
    ray_session: None, tmp_path: Path
) -> None:
    namespace = f"wfray-badstore-{uuid.uuid4().hex[:8]}"
    settings = wfray.load_settings(data_dir=str(tmp_path), namespace=namespace, database_url=URL)
    started = time.monotonic()
    try:
        with pytest.raises(WfrayError) as failure:
            wfray.connect(settings)
        elapsed = time.monotonic() - started
        message = str(failure.value)
        print(f"connect failed after {elapsed:.1f}s: {message[-600:]}")
        assert elapsed < BOUND_S, elapsed
        assert MASKED in message, message
        assert PASSWORD not in message, message
        assert "unavailable" in message, message
        # the executors are only started once the store is reachable
        assert executor_name("cpu") not in wfray_actors(namespace)
    finally:
        RayClient(settings).shutdown()
    assert wfray_actors(namespace) == []
    # a second shutdown finds nothing to stop and does not fail
    RayClient(settings).shutdown()
