"""Backlog-driven scaling: the bundles requested from the autoscaler, per pool, capped."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from wfray.coordinator.scaling import attempt_shape, count_backlog, demand
from wfray.domain.records import RunRecord, TaskRecord
from wfray.domain.run_state import RunState
from wfray.domain.status import RunStatus, TaskStatus
from wfray.domain.workflow import StepSchema, WorkflowSchema

T0 = datetime(2025, 1, 1, tzinfo=UTC)
CPU = (("CPU", 1.0),)
IO = (("io", 1.0),)
CAPS = {"cpu": 8, "io": 8}


def test_the_shape_of_one_attempt_follows_its_pool_and_step_options() -> None:
    assert attempt_shape("cpu", None, {}) == CPU
    assert attempt_shape("cpu", 2, {"big_mem": 1}) == (("CPU", 2.0), ("big_mem", 1.0))
    assert attempt_shape("cpu", 0, {}) == ()  # holds nothing: no node needed for it
    assert attempt_shape("io", None, {}) == IO
    assert attempt_shape("gpu", None, {"GPU": 1}) == (("GPU", 1.0),)


def test_one_bundle_per_queued_or_running_attempt_up_to_the_cap() -> None:
    assert demand({("cpu", CPU): 3, ("io", IO): 2}, CAPS) == [{"CPU": 1.0}] * 3 + [{"io": 1.0}] * 2
    assert (
        demand({("cpu", CPU): 500, ("io", IO): 9}, CAPS) == [{"CPU": 1.0}] * 8 + [{"io": 1.0}] * 8
    )


def test_a_cap_of_zero_or_a_pool_without_cap_requests_nothing() -> None:
    assert demand({("cpu", CPU): 5, ("io", IO): 5}, {"cpu": 0, "io": 2}) == [{"io": 1.0}] * 2
    assert demand({("gpu", (("GPU", 1.0),)): 5}, CAPS) == []


def test_a_drained_backlog_releases_the_request() -> None:
    assert demand({}, CAPS) == []
    assert demand({("cpu", CPU): 0}, CAPS) == []


def test_the_cap_keeps_the_most_common_shapes_of_a_pool_and_the_answer_is_stable() -> None:
    big = (("CPU", 4.0),)
    backlog = {("cpu", big): 2, ("cpu", CPU): 10}
    assert demand(backlog, {"cpu": 11}) == [{"CPU": 1.0}] * 10 + [{"CPU": 4.0}]
    # the same backlog in another order gives the same request: no needless re-requests
    assert demand(dict(reversed(backlog.items())), {"cpu": 11}) == demand(backlog, {"cpu": 11})


def _state(run_id: str, statuses: list[tuple[str, TaskStatus]]) -> RunState:
    schema = WorkflowSchema.build(
        "mixed",
        [
            StepSchema(name="fetch", fn="m:fetch", pool="io"),
            StepSchema(name="crunch", fn="m:crunch", pool="cpu", num_cpus=2),
            StepSchema(name="free", fn="m:free", pool="cpu", num_cpus=0),
        ],
    )
    run = RunRecord(
        run_id=run_id,
        workflow="mixed",
        version=schema.version,
        status=RunStatus.RUNNING,
        input_json="null",
        created_at=T0,
    )
    pools = {s.name: s.pool for s in schema.steps}
    tasks = {
        (step, index): TaskRecord(
            run_id=run_id,
            step=step,
            map_index=index,
            status=status,
            pool=pools[step],
            created_at=T0,
        )
        for index, (step, status) in enumerate(statuses)
    }
    return RunState(run=run, schema=schema, tasks=tasks)


def test_the_backlog_counts_queued_running_and_compensating_tasks_by_pool_and_shape() -> None:
    runs = [
        _state(
            "r1",
            [
                ("fetch", TaskStatus.QUEUED),
                ("fetch", TaskStatus.RUNNING),
                ("fetch", TaskStatus.COMPLETED),
                ("crunch", TaskStatus.PENDING),
                ("crunch", TaskStatus.RETRYING),
            ],
        ),
        _state(
            "r2",
            [
                ("crunch", TaskStatus.RUNNING),
                ("crunch", TaskStatus.COMPENSATING),
                ("free", TaskStatus.QUEUED),
            ],
        ),
    ]
    backlog = count_backlog(runs)
    assert backlog == Counter({("io", IO): 2, ("cpu", (("CPU", 2.0),)): 2, ("cpu", ()): 1})
    # steps that hold no resources ask for no node
    assert demand(backlog, CAPS) == [{"CPU": 2.0}] * 2 + [{"io": 1.0}] * 2


def test_the_backlog_counts_the_items_a_paged_fan_out_has_yet_to_create() -> None:
    state = _state("r1", [("crunch", TaskStatus.RUNNING), ("crunch", TaskStatus.QUEUED)])
    group = TaskRecord("r1", "crunch", -1, TaskStatus.RUNNING, "cpu", T0, map_count=100)
    state.tasks[group.key] = group
    state.next_item["crunch"] = 2  # items 0 and 1 exist (above), 98 are still to come
    assert count_backlog([state]) == Counter({("cpu", (("CPU", 2.0),)): 2 + 98})
    group.status = TaskStatus.CANCELLED  # a stopped fan-out asks for nothing more
    assert count_backlog([state]) == Counter({("cpu", (("CPU", 2.0),)): 2})


def test_io_slots_are_asked_for_no_more_than_one_per_io_executor() -> None:
    from wfray.adapters.ray.autoscale import max_bundles
    from wfray.config import load_settings

    def caps(**values: int) -> dict[str, int]:
        return max_bundles(load_settings({}, data_dir="/tmp/x", **values))

    assert caps(autoscale_max_io_bundles=50) == {"cpu": 0, "io": 1}
    assert caps(autoscale_max_io_bundles=50, io_executors=4)["io"] == 4
    assert caps(autoscale_max_io_bundles=2, io_executors=4)["io"] == 2
    assert caps(io_executors=4)["io"] == 0  # off unless asked for
