"""Shared tasks (coordinator/shared_tasks.py): which attempts may share a task (those of
steps seen to be short, without a timeout or heartbeat, dispatched while the backlog is
deep), and how they are split into shared tasks so that every CPU still has work."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fixtures import unit_flows
from tests.unit.test_coordinator_inline import coordinator, run
from wfray.adapters.memory.executor import InlineExecutor
from wfray.application.messages import Dispatch, SubmitRequest
from wfray.config import load_settings
from wfray.coordinator.dispatcher import LIGHT_LOAD
from wfray.coordinator.shared_tasks import (
    ATTEMPTS_PER_SHARED_TASK,
    SHORT_STEP_S,
    ShortSteps,
    into_shared_tasks,
)
from wfray.domain.errors import DefinitionError
from wfray.sdk.definition import Workflow


def test_a_step_never_seen_to_finish_is_not_short() -> None:
    assert not ShortSteps().is_short("wf", "step")


def test_a_step_is_short_while_its_running_mean_stays_under_the_bound() -> None:
    steps = ShortSteps()
    for _ in range(5):
        steps.finished("wf", "quick", 0.001)
    assert steps.is_short("wf", "quick")
    assert not steps.is_short("wf", "other")
    assert not steps.is_short("other", "quick")
    steps.finished("wf", "quick", 2.0)  # one slow attempt is enough to stop sharing
    assert not steps.is_short("wf", "quick")
    for _ in range(40):
        steps.finished("wf", "quick", 0.001)
    assert steps.is_short("wf", "quick")


def test_a_step_seen_slow_is_not_short() -> None:
    steps = ShortSteps()
    steps.finished("wf", "slow", SHORT_STEP_S * 2)
    assert not steps.is_short("wf", "slow")


def test_a_deep_batch_on_a_small_cluster_is_shared_out_eight_to_a_task() -> None:
    groups = into_shared_tasks(list(range(40)), cpus=2)
    assert [len(g) for g in groups] == [8] * 5
    assert [i for g in groups for i in g] == list(range(40))


def test_one_attempt_per_task_when_so_configured() -> None:
    assert into_shared_tasks([1, 2, 3], cpus=1, most=1) == [[1], [2], [3]]


def test_a_batch_on_a_big_cluster_stays_one_attempt_per_task() -> None:
    assert into_shared_tasks(list(range(40)), cpus=64) == [[i] for i in range(40)]
    assert into_shared_tasks([1, 2, 3], cpus=2) == [[1], [2], [3]]
    assert into_shared_tasks([], cpus=2) == []


@given(st.integers(min_value=0, max_value=500), st.integers(min_value=1, max_value=128))
def test_sharing_out_keeps_every_attempt_once_in_order_and_every_cpu_busy(
    n: int, cpus: int
) -> None:
    groups = into_shared_tasks(list(range(n)), cpus)
    assert [i for g in groups for i in g] == list(range(n))
    assert all(1 <= len(g) <= ATTEMPTS_PER_SHARED_TASK for g in groups)
    assert len(groups) >= min(n, 2 * cpus)


class RecordingExecutor(InlineExecutor):
    def __init__(self) -> None:
        super().__init__()
        self.dispatched: list[Dispatch] = []

    async def dispatch(self, dispatches: list[Dispatch], epoch: int = 0) -> None:
        self.dispatched.extend(dispatches)
        await super().dispatch(dispatches, epoch)


def _requests(flow: Workflow, prefix: str, count: int) -> list[SubmitRequest]:
    return [SubmitRequest(f"{prefix}-{i}", flow.name, "", json.dumps(None)) for i in range(count)]


def _burst(flow: Workflow, **settings: bool) -> tuple[list[Dispatch], list[Dispatch]]:
    """Dispatches of three runs one at a time (the step is learnt), then of 40 at once.

    "Short" is a mean under 5 s here, not the default 10 ms: on a busy machine a no-op step
    can take longer than 10 ms, and what is under test is the sharing rule, not the clock.
    """

    async def scenario() -> tuple[list[Dispatch], list[Dispatch]]:
        executor = RecordingExecutor()
        pools = {"cpu": executor, "io": executor}
        async with coordinator(executors=pools, short_step_s=5.0, **settings) as c:
            for i in range(3):
                await c.submit(_requests(flow, f"learn{i}", 1))
                await c.wait([f"learn{i}-0"], 60)
            learnt = list(executor.dispatched)
            executor.dispatched.clear()
            await c.submit(_requests(flow, "burst", 40))
            await c.wait([f"burst-{i}" for i in range(40)], 60)
        return learnt, executor.dispatched

    return run(scenario)


def test_a_short_step_shares_tasks_only_past_light_load() -> None:
    learnt, burst = _burst(unit_flows.single)
    assert not any(d.shareable for d in learnt)  # unknown at first, and light load
    assert len(burst) == 40
    assert not any(d.shareable for d in burst[:LIGHT_LOAD])
    assert all(d.shareable for d in burst[LIGHT_LOAD:])
    assert not any(d.shareable and d.report_directly for d in burst)


def test_a_step_with_a_timeout_never_shares_a_task() -> None:
    _, burst = _burst(unit_flows.punctual)
    assert len(burst) == 40
    assert not any(d.shareable for d in burst)


def test_sharing_can_be_turned_off() -> None:
    _, burst = _burst(unit_flows.single, share_short_steps=False)
    assert len(burst) == 40
    assert not any(d.shareable for d in burst)


def test_attempts_per_task_comes_from_the_environment_and_must_be_positive() -> None:
    env = {"WFRAY_CPU_ATTEMPTS_PER_TASK": "1"}
    assert load_settings(env, data_dir="/tmp/x").cpu_attempts_per_task == 1
    assert load_settings({}, data_dir="/tmp/x").cpu_attempts_per_task == ATTEMPTS_PER_SHARED_TASK
    with pytest.raises(DefinitionError, match=r"CPU_ATTEMPTS_PER_TASK must be at least 1.*got 0"):
        load_settings({"WFRAY_CPU_ATTEMPTS_PER_TASK": "0"}, data_dir="/tmp/x")
