"""The coordinator asks the autoscaler for what its backlog needs, and releases it after.

The request is read back from the cluster itself: `request_resources` stores it in the GCS
(the key the autoscaler's monitor reads, with Ray 2.60's default autoscaler v1), where
`ray status` would show it on a cluster with an autoscaler running.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.conftest import start_wfray
from tests.fixtures import cluster_flows

SCARCE = {"CPU": 1.0, "scarce_disk": 1.0}


@pytest.fixture
def scaling_client(ray_session: None, tmp_path: Path) -> Iterator[Any]:
    client = start_wfray(tmp_path, autoscale_max_cpu_bundles=3, autoscale_interval_s=0.2)
    yield client
    client.shutdown()


def requested() -> list[dict[str, float]]:
    from ray._private.ray_constants import AUTOSCALER_RESOURCE_REQUEST_CHANNEL
    from ray.experimental.internal_kv import _internal_kv_get

    raw = _internal_kv_get(AUTOSCALER_RESOURCE_REQUEST_CHANNEL)
    bundles: list[dict[str, float]] = json.loads(raw) if raw else []
    return bundles


def eventually(check: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: the cluster holds the request {requested()}")
        time.sleep(0.1)


def test_the_request_grows_with_the_backlog_up_to_the_cap_and_is_released_when_it_drains(
    scaling_client: Any,
) -> None:
    runs = scaling_client.submit_many(cluster_flows.scarce, [None] * 2)
    eventually(lambda: requested() == [SCARCE] * 2, "two waiting steps ask for two bundles")

    runs += scaling_client.submit_many(cluster_flows.scarce, [None] * 5)
    eventually(lambda: requested() == [SCARCE] * 3, "seven waiting steps, capped at three")

    for run in runs:  # no node will ever come: drain the backlog by cancelling it
        scaling_client.cancel(run.run_id, reason="test over")
    views = scaling_client.wait([r.run_id for r in runs], timeout=60)
    assert {v.status.value for v in views} == {"cancelled"}
    eventually(lambda: requested() == [], "a drained backlog releases the request")
