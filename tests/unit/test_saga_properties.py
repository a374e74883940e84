"""The compensation plan on random DAGs: whatever completed and can be undone is undone,
never before everything downstream of it was, and independent branches do not wait on
each other."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from wfray.domain import engine, saga
from wfray.domain.policy import FailureInfo
from wfray.domain.records import WHOLE_STEP, RunRecord
from wfray.domain.run_state import RunState
from wfray.domain.status import RunStatus, TaskStatus
from wfray.domain.workflow import StepSchema, WorkflowSchema

T0 = datetime(2026, 1, 1, tzinfo=UTC)
FN = "tests.fixtures.unit_flows:one"
UNDO = "tests.fixtures.unit_flows:undo_s3"


@st.composite
def dags(draw: st.DrawFn) -> tuple[WorkflowSchema, int]:
    size = draw(st.integers(min_value=2, max_value=9))
    steps = []
    for i in range(size):
        parents = (
            draw(st.sets(st.integers(min_value=0, max_value=i - 1), max_size=3)) if i else set()
        )
        undoable = draw(st.booleans())
        steps.append(
            StepSchema(
                name=f"s{i}",
                fn=FN,
                after=tuple(f"s{p}" for p in sorted(parents)),
                compensation=UNDO if undoable else None,
            )
        )
    return WorkflowSchema.build("random-saga", steps), draw(st.integers(0, 2**32 - 1))


def drive_forward_until_failure(state: RunState, rng: random.Random) -> None:
    """Complete ready tasks in random order; the last one to be dispatched fails for good."""
    engine.start_run(state, T0)
    while not state.finished:
        queued = [t for t in state.tasks.values() if t.status is TaskStatus.QUEUED]
        task = rng.choice(queued)
        engine.mark_dispatched(state, task, T0)
        remaining = [t for t in state.tasks.values() if t.status is TaskStatus.PENDING]
        if not remaining or rng.random() < 0.3:
            engine.fail_task(state, task, FailureInfo("builtins.RuntimeError", "boom"), T0)
        else:
            engine.complete_task(state, task, '"ok"', None, None, T0)


@settings(max_examples=150, deadline=None)
@given(dags())
def test_compensation_runs_in_reverse_dependency_order_and_undoes_everything(
    case: tuple[WorkflowSchema, int],
) -> None:
    schema, seed = case
    rng = random.Random(seed)
    run = RunRecord("r", schema.name, schema.version, RunStatus.QUEUED, "null", T0)
    state = RunState(run=run, schema=schema)
    drive_forward_until_failure(state, rng)
    assert state.run.status is RunStatus.FAILED
    completed = {t.step for t in state.tasks.values() if t.status is TaskStatus.COMPLETED}
    to_undo = {s for s in completed if schema.step(s).compensation is not None}

    begun = saga.begin(state, T0)
    if not to_undo:
        assert begun is None
        return
    assert state.run.status is RunStatus.COMPENSATING
    below = saga.descendants(schema)
    leaves = {s for s in to_undo if not (below[s] & to_undo)}
    assert {t.step for t in saga.ready(state, below)} == leaves  # independent ones at once
    order: list[str] = []
    in_flight: list[str] = []
    while True:
        for task in saga.ready(state, below):
            # everything downstream that must be undone already is
            assert all(d in order for d in below[task.step] if d in to_undo), task.step
            saga.start(task, T0)
            in_flight.append(task.step)
        if not in_flight:
            break
        step = in_flight.pop(rng.randrange(len(in_flight)))  # finish in any order
        saga.succeeded(state.task(step, WHOLE_STEP), T0)
        order.append(step)
    assert saga.finish(state, below, T0) is not None
    assert state.run.status is RunStatus.COMPENSATED
    assert sorted(order) == sorted(to_undo)
    for step in to_undo:
        assert state.task(step).status is TaskStatus.COMPENSATED
