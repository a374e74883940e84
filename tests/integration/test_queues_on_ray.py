"""Queue limits seen in the attempts' own timestamps: rate limit, per-key limit, backlog."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest

import wfray
from tests.fixtures import flows
from tests.integration.conftest import start_wfray

RATE = 5.0
QUEUES = [
    {"name": "limited", "rate_per_s": RATE, "burst": 1},
    {"name": "per-customer", "per_key_limit": 1},
    {"name": "narrow", "concurrency": 1},
]


@pytest.fixture(scope="module")
def queued(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    wf = start_wfray(tmp_path_factory.mktemp("queues"), queues=QUEUES, max_backlog=30)
    yield wf
    wf.shutdown()


def started_times(client: Any, run_ids: list[str]) -> list[float]:
    """When the coordinator let each run's attempt go (what a rate limit governs); the step's
    own start adds a worker's latency, which varies on a loaded machine (a cold first
    worker once put two starts 0.142 s apart under a 0.2 s rate)."""
    times = []
    for run_id in run_ids:
        (attempt,) = client.detail(run_id).attempts
        times.append(attempt.queued_at.timestamp())
    return sorted(times)


def test_rate_limit_spaces_the_starts(queued: Any) -> None:
    runs = queued.submit_many(flows.stamp, [{"label": str(i)} for i in range(10)], queue="limited")
    queued.wait([r.run_id for r in runs], timeout=60)
    starts = started_times(queued, [r.run_id for r in runs])
    first = starts[0]
    for k, start in enumerate(starts):
        # k starts after the first need k - burst + 1 tokens at RATE per second
        assert start - first >= k / RATE - 0.05, (k, start - first)
    assert starts[-1] - first >= 9 / RATE - 0.05


def test_per_key_limit_never_overlaps_attempts_of_one_key(queued: Any) -> None:
    keys = ["cust-a", "cust-b"] * 4
    runs = queued.submit_many(
        flows.hold, [{"seconds": 0.3}] * len(keys), queue="per-customer", concurrency_keys=keys
    )
    queued.wait([r.run_id for r in runs], timeout=60)
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for run, key in zip(runs, keys, strict=True):
        start, end = run.result(timeout=10)
        spans[key].append((start, end))
    for key, intervals in spans.items():
        intervals.sort()
        for (_, end), (next_start, _) in itertools.pairwise(intervals):
            assert next_start >= end, f"two attempts of {key} overlapped"
    # different keys did run side by side
    a, b = spans["cust-a"], spans["cust-b"]
    assert any(sa < eb and sb < ea for sa, ea in a for sb, eb in b)


def test_backlog_past_the_limit_is_refused_with_retry_later(queued: Any) -> None:
    with pytest.raises(wfray.BacklogFullError, match="retry later") as refused:
        queued.submit_many(flows.hold, [{"seconds": 0.1}] * 60, queue="narrow")
    accepted = refused.value.accepted  # type: ignore[attr-defined]
    assert 0 < len(accepted) <= 31
    assert refused.value.retry_after_s > 0
    queued.wait([r.run_id for r in accepted], timeout=120)
