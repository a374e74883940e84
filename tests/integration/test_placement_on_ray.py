"""Where the coordinator runs: pinned beside a SQLite store, only preferring the head with a
shared store (PostgreSQL), so that Ray can restart it on a live node when the head is gone."""

from __future__ import annotations

from pathlib import Path

import pytest
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from wfray.adapters.ray.actors import coordinator_placement, head_node_id
from wfray.config import load_settings

POSTGRES = "postgresql+psycopg://wfray@db.internal:5432/wfray"
GONE_NODE = "ab" * 28  # a node id no node has: the head after it died
TIMEOUT_S = 120.0


@pytest.fixture
def this_node(ray_session: None) -> str:
    return str(ray.get_runtime_context().get_node_id())


def test_a_sqlite_store_pins_the_coordinator_to_its_node(this_node: str, tmp_path: Path) -> None:
    settings = load_settings(env={}, data_dir=str(tmp_path))
    placement = coordinator_placement(settings, None)
    assert isinstance(placement, NodeAffinitySchedulingStrategy)
    assert (placement.node_id, placement.soft) == (this_node, False)


def test_a_shared_store_only_prefers_the_head(this_node: str, tmp_path: Path) -> None:
    settings = load_settings(env={"WFRAY_DATABASE_URL": POSTGRES}, data_dir=str(tmp_path))
    placement = coordinator_placement(settings, None)
    assert head_node_id() == this_node  # the test session's Ray is a head alone
    assert (placement.node_id, placement.soft) == (this_node, True)


@ray.remote(num_cpus=0)
class Probe:
    def node(self) -> str:
        return str(ray.get_runtime_context().get_node_id())


def test_with_its_preferred_node_gone_a_softly_placed_actor_runs_elsewhere(
    this_node: str, tmp_path: Path
) -> None:
    settings = load_settings(env={"WFRAY_DATABASE_URL": POSTGRES}, data_dir=str(tmp_path))
    probe = Probe.options(scheduling_strategy=coordinator_placement(settings, GONE_NODE)).remote()
    try:
        assert ray.get(probe.node.remote(), timeout=TIMEOUT_S) == this_node
    finally:
        ray.kill(probe)


def test_pinned_to_a_gone_node_an_actor_never_runs(this_node: str, tmp_path: Path) -> None:
    # why SQLite's pin must stay hard, and why a shared store is needed to survive the head
    settings = load_settings(env={}, data_dir=str(tmp_path))
    probe = Probe.options(scheduling_strategy=coordinator_placement(settings, GONE_NODE)).remote()
    try:
        with pytest.raises(ray.exceptions.ActorUnschedulableError, match="soft=False"):
            ray.get(probe.node.remote(), timeout=TIMEOUT_S)
    finally:
        ray.kill(probe)
