"""The engine on random DAGs, driven by a simulated executor that finishes work in any order.

A random workflow mixes plain steps, steps returning lists, steps mapped over those lists
(or over other mapped steps) and steps collecting mapped steps (fan-in). The driver starts
ready tasks and finishes running ones in an order drawn by hypothesis, sometimes through a
retry first, and checks at every event what must always hold.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wfray.domain import engine
from wfray.domain.errors import InvalidTransitionError
from wfray.domain.policy import FailureInfo
from wfray.domain.records import WHOLE_STEP, RunRecord, TaskKey, TaskRecord
from wfray.domain.run_state import Changes, RunState
from wfray.domain.status import (
    RUN_TRANSITIONS,
    TASK_TRANSITIONS,
    RunStatus,
    TaskStatus,
    check_run_transition,
    check_task_transition,
)
from wfray.domain.workflow import StepSchema, WorkflowSchema

T0 = datetime(2025, 1, 1, tzinfo=UTC)
FN = "tests.fixtures.unit_flows:one"
BOOM = FailureInfo("builtins.RuntimeError", "boom")
WAITING = (TaskStatus.PENDING, TaskStatus.QUEUED, TaskStatus.RETRYING)


# -- random workflows and what they must produce -----------------------------------------------


@dataclass(frozen=True)
class Spec:
    after: dict[str, tuple[str, ...]]
    maps: dict[str, str]  # mapped step -> its source
    lengths: dict[str, int]  # list-returning step -> length of its list

    def schema(self) -> WorkflowSchema:
        return WorkflowSchema.build(
            "random",
            [
                StepSchema(name=name, fn=FN, after=deps, map=self.maps.get(name))
                for name, deps in self.after.items()
            ],
        )

    def count(self, step: str) -> int:
        """How many items a step returns (a list-returning or a mapped step)."""
        if step in self.maps:
            return self.count(self.maps[step])
        return self.lengths[step]

    def expected(self, step: str) -> Any:
        if step in self.maps:
            return [f"{step}[{i}]" for i in range(self.count(step))]
        if step in self.lengths:
            return [f"{step}.{j}" for j in range(self.lengths[step])]
        return step

    def task_keys(self) -> set[TaskKey]:
        keys = {(name, WHOLE_STEP) for name in self.after}
        for name in self.maps:
            keys |= {(name, i) for i in range(self.count(name))}
        return keys

    def run_result(self) -> Any:
        needed = {dep for deps in self.after.values() for dep in deps}
        sinks = [name for name in self.after if name not in needed]
        if len(sinks) == 1:
            return self.expected(sinks[0])
        return {name: self.expected(name) for name in sinks}


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    size = draw(st.integers(1, 7))
    names = [f"s{i}" for i in range(size)]
    after: dict[str, tuple[str, ...]] = {}
    maps: dict[str, str] = {}
    lengths: dict[str, int] = {}
    for i, name in enumerate(names):
        deps = draw(st.lists(st.sampled_from(names[:i]), unique=True, max_size=3)) if i else []
        listy = [dep for dep in deps if dep in lengths or dep in maps]
        fan_out, returns_list = draw(st.booleans()), draw(st.booleans())
        if listy and fan_out:
            maps[name] = draw(st.sampled_from(listy))
        elif returns_list:
            lengths[name] = draw(st.integers(0, 4))
        after[name] = tuple(deps)
    return Spec(after, maps, lengths)


def result_of(spec: Spec, task: TaskRecord) -> tuple[str, int | None]:
    """What the simulated step returns: (JSON text, items for a list)."""
    if task.map_index != WHOLE_STEP:
        return json.dumps(f"{task.step}[{task.map_index}]"), None
    value = spec.expected(task.step)
    return json.dumps(value), len(value) if isinstance(value, list) else None


# -- the simulated executor --------------------------------------------------------------------


def legal(old: Any, new: Any, table: dict[Any, frozenset[Any]]) -> bool:
    """One event may move a record through two transitions (an empty fan-out's group goes
    pending -> running -> completed), each of them allowed."""
    return new in table[old] or any(new in table[mid] for mid in table[old])


@dataclass
class Driver:
    spec: Spec
    rng: random.Random
    state: RunState = field(init=False)
    now: datetime = T0
    ready: list[TaskRecord] = field(default_factory=list)
    running: list[TaskRecord] = field(default_factory=list)
    retrying: list[TaskRecord] = field(default_factory=list)
    completions: Counter[TaskKey] = field(default_factory=Counter)
    retries: Counter[TaskKey] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        schema = self.spec.schema()
        run = RunRecord(
            run_id="run",
            workflow=schema.name,
            version=schema.version,
            status=RunStatus.QUEUED,
            input_json="null",
            created_at=T0,
        )
        self.state = RunState(run=run, schema=schema)

    def apply(self, event: Any, *args: Any) -> Changes:
        """Run one engine event, checking every status change it made against the tables."""
        self.now += timedelta(seconds=1)
        tasks_before = {key: task.status for key, task in self.state.tasks.items()}
        run_before = self.state.run.status
        changes: Changes = event(*args, self.now)
        first_expected: dict[TaskKey, TaskStatus] = {}
        for task, expected in changes.updated_tasks:
            first_expected.setdefault(task.key, expected)
        for key, task in self.state.tasks.items():
            old = tasks_before.get(key)
            if old is None:
                assert task in changes.new_tasks
                continue
            if task.status is not old:
                assert legal(old, task.status, TASK_TRANSITIONS), (key, old, task.status)
                # storage compare-and-sets against this: it must be the status it had
                assert first_expected[key] is old
        if self.state.run.status is not run_before:
            assert legal(run_before, self.state.run.status, RUN_TRANSITIONS)
            assert changes.run_changed is run_before
        self.ready.extend(changes.ready)
        return changes

    def start(self) -> None:
        self.apply(engine.start_run, self.state)

    def dispatch(self) -> None:
        task = self.ready.pop(self.rng.randrange(len(self.ready)))
        assert task.status is TaskStatus.QUEUED
        for dep in self.state.schema.step(task.step).after:
            assert self.state.task(dep).status is TaskStatus.COMPLETED, (task.key, dep)
            if dep in self.spec.maps:  # fan-in: the collected list, in item order
                text, ref = engine.step_result(self.state, dep)
                assert ref is None
                assert json.loads(text or "null") == self.spec.expected(dep)
        self.apply(engine.mark_dispatched, self.state, task)
        self.running.append(task)

    def finish(self, *, fail: bool = False) -> TaskRecord:
        task = self.running.pop(self.rng.randrange(len(self.running)))
        if fail:
            self.apply(engine.fail_task, self.state, task, BOOM)
        elif self.retries[task.key] < 2 and self.rng.random() < 0.2:
            self.retries[task.key] += 1
            self.apply(lambda now: engine.schedule_retry(task, BOOM, now + timedelta(seconds=5)))
            self.retrying.append(task)
        else:
            text, items = result_of(self.spec, task)
            self.apply(engine.complete_task, self.state, task, text, None, items)
            self.completions[task.key] += 1
        return task

    def requeue(self) -> None:
        task = self.retrying.pop(self.rng.randrange(len(self.retrying)))
        self.apply(engine.requeue, task)

    def step(self) -> None:
        """One event, chosen at random among those possible."""
        moves: list[Callable[[], object]] = []
        if self.ready:
            moves.append(self.dispatch)
        if self.running:
            moves.append(self.finish)
        if self.retrying:
            moves.append(self.requeue)
        self.rng.choice(moves)()

    @property
    def busy(self) -> bool:
        return bool(self.ready or self.running or self.retrying)


# -- properties --------------------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(specs(), st.randoms(use_true_random=False))
def test_a_successful_run_completes_every_task_exactly_once(spec: Spec, rng: random.Random):
    driver = Driver(spec, rng)
    driver.start()
    while driver.busy:
        assert not driver.state.finished
        driver.step()

    state = driver.state
    assert state.run.status is RunStatus.COMPLETED
    assert set(state.tasks) == spec.task_keys()
    assert all(task.status is TaskStatus.COMPLETED for task in state.tasks.values())
    # map groups complete when their items do, not through an attempt of their own
    attempted = {key for key in spec.task_keys() if key[0] not in spec.maps or key[1] != WHOLE_STEP}
    assert driver.completions == dict.fromkeys(attempted, 1)
    for key in attempted:
        assert state.tasks[key].attempts == 1 + driver.retries[key]
    for name in spec.after:
        text, ref = engine.step_result(state, name)
        assert ref is None
        assert json.loads(text or "null") == spec.expected(name)
    assert state.run.result_ref is None
    assert json.loads(state.run.result_json or "null") == spec.run_result()
    assert state.run.started_at is not None
    assert state.run.finished_at == driver.now


@settings(max_examples=80, deadline=None)
@given(specs(), st.randoms(use_true_random=False), st.integers(0, 30))
def test_a_failure_fails_the_run_and_cancels_what_waits(spec: Spec, rng: random.Random, at: int):
    driver = Driver(spec, rng)
    driver.start()
    events = 0
    # step at random; fail the first attempt to end after `at` events (or the last one)
    while not (driver.running and (events >= at or not (driver.ready or driver.retrying))):
        driver.step()
        events += 1
    before = {key: task.status for key, task in driver.state.tasks.items()}
    failed = driver.finish(fail=True)

    state = driver.state
    assert failed.status is TaskStatus.FAILED
    assert (failed.error_type, failed.error_message) == ("builtins.RuntimeError", "boom")
    assert state.run.status is RunStatus.FAILED
    assert state.run.error == f"step {failed.step!r} failed: builtins.RuntimeError: boom"
    for key, old in before.items():
        now = state.tasks[key].status
        if old in WAITING:
            assert now is TaskStatus.CANCELLED, key
        elif key != failed.key and key != (failed.step, WHOLE_STEP):
            assert now is old, key  # running attempts run on; finished tasks stay finished
    if failed.map_index != WHOLE_STEP:
        group = state.task(failed.step)
        assert group.status is TaskStatus.FAILED
        assert group.error_message == f"item {failed.map_index} failed: boom"

    # attempts still running when the run failed end without moving the run again
    while driver.running:
        changes = driver.apply(
            engine.complete_task, state, driver.running.pop(), json.dumps("late"), None, None
        )
        assert changes.ready == [] and changes.new_tasks == []
        assert changes.run_changed is None
    assert state.run.status is RunStatus.FAILED
    assert not any(task.status in WAITING for task in state.tasks.values())


# -- fan-in order and fan-out edge cases -------------------------------------------------------


def fan_spec(count: int) -> Spec:
    return Spec(
        after={"split": (), "each": ("split",), "collect": ("each",)},
        maps={"each": "split"},
        lengths={"split": count},
    )


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 12), st.randoms(use_true_random=False))
def test_fan_in_keeps_item_order_whatever_the_completion_order(count: int, rng: random.Random):
    driver = Driver(fan_spec(count), rng)
    driver.start()
    driver.dispatch()
    driver.finish()
    while driver.state.task("split").status is not TaskStatus.COMPLETED:
        driver.step()
    items = driver.state.items("each")
    rng.shuffle(items)
    for item in items:
        driver.apply(engine.mark_dispatched, driver.state, item)
    for item in items:
        assert driver.state.task("collect").status is TaskStatus.PENDING
        driver.apply(
            engine.complete_task, driver.state, item, json.dumps(item.map_index), None, None
        )
    text, ref = engine.step_result(driver.state, "each")
    assert (json.loads(text or "null"), ref) == (list(range(count)), None)
    assert driver.state.task("collect").status is TaskStatus.QUEUED


def test_an_empty_fan_out_completes_at_once_and_releases_what_follows() -> None:
    driver = Driver(fan_spec(0), random.Random(0))
    driver.start()
    driver.dispatch()
    text, items = result_of(driver.spec, driver.running[0])
    changes = driver.apply(
        engine.complete_task, driver.state, driver.running.pop(), text, None, items
    )
    assert driver.state.task("each").status is TaskStatus.COMPLETED
    assert engine.step_result(driver.state, "each") == ("[]", None)
    assert [t.key for t in changes.ready] == [("collect", WHOLE_STEP)]


def test_mapping_over_a_result_that_is_not_a_list_fails_the_run() -> None:
    driver = Driver(fan_spec(2), random.Random(0))
    driver.start()
    driver.dispatch()
    driver.apply(engine.complete_task, driver.state, driver.running.pop(), '{"a": 1}', None, None)
    each = driver.state.task("each")
    assert each.status is TaskStatus.FAILED
    assert each.error_type == "wfray.MapSourceNotAList"
    assert driver.state.run.status is RunStatus.FAILED
    assert (
        driver.state.run.error
        == "step 'each' maps over 'split', whose result is a JSON object, not a list"
    )
    assert driver.state.task("collect").status is TaskStatus.CANCELLED


def test_blob_results_are_collected_as_references_in_item_order() -> None:
    driver = Driver(fan_spec(3), random.Random(0))
    driver.start()
    driver.dispatch()
    driver.finish()
    while driver.state.task("split").status is not TaskStatus.COMPLETED:
        driver.step()
    for item in reversed(driver.state.items("each")):
        driver.apply(engine.mark_dispatched, driver.state, item)
        ref = f"blob://{item.map_index}" if item.map_index == 1 else None
        text = None if ref else json.dumps(item.map_index)
        driver.apply(engine.complete_task, driver.state, item, text, ref, None)
    text, ref = engine.step_result(driver.state, "each")
    assert text is None
    assert json.loads(ref or "null") == {
        "list": [{"json": "0"}, {"blob": "blob://1"}, {"json": "2"}]
    }


def test_several_sinks_make_a_result_object() -> None:
    spec = Spec(after={"a": (), "b": ("a",), "c": ("a",)}, maps={}, lengths={"a": 2})
    driver = Driver(spec, random.Random(3))
    driver.start()
    while driver.busy:
        driver.step()
    assert json.loads(driver.state.run.result_json or "null") == {"b": "b", "c": "c"}


# -- the transition tables ---------------------------------------------------------------------


def test_every_task_transition_outside_the_table_is_refused() -> None:
    for current in TaskStatus:
        for new in TaskStatus:
            if new in TASK_TRANSITIONS[current]:
                check_task_transition(current, new)
            else:
                with pytest.raises(InvalidTransitionError, match=f"'{current}' to '{new}'"):
                    check_task_transition(current, new)


def test_every_run_transition_outside_the_table_is_refused() -> None:
    assert set(RUN_TRANSITIONS) == set(RunStatus)
    for current in RunStatus:
        for new in RunStatus:
            if new in RUN_TRANSITIONS[current]:
                check_run_transition(current, new)
            else:
                with pytest.raises(InvalidTransitionError, match=f"'{current}' to '{new}'"):
                    check_run_transition(current, new)


def test_finished_statuses_lead_nowhere_but_compensation_or_a_resume() -> None:
    assert set(TASK_TRANSITIONS) == set(TaskStatus)
    assert TASK_TRANSITIONS[TaskStatus.SKIPPED] == frozenset()
    assert TASK_TRANSITIONS[TaskStatus.COMPLETED] == {TaskStatus.COMPENSATING}
    assert RUN_TRANSITIONS[RunStatus.COMPLETED] == frozenset()
    assert all(status.finished for status in (RunStatus.FAILED, RunStatus.CANCELLED))
    assert not TaskStatus.RETRYING.finished


def started(count: int = 2) -> tuple[Driver, TaskRecord]:
    driver = Driver(fan_spec(count), random.Random(0))
    driver.start()
    driver.dispatch()
    return driver, driver.running[0]


def test_completing_a_task_twice_is_refused_and_keeps_the_first_result() -> None:
    driver, task = started()
    engine.complete_task(driver.state, task, '["a","b"]', None, 2, T0)
    with pytest.raises(InvalidTransitionError, match="'completed' to 'completed'"):
        engine.complete_task(driver.state, task, '"other"', None, None, T0 + timedelta(1))
    assert (task.result_json, task.result_items, task.finished_at) == ('["a","b"]', 2, T0)


def test_failing_a_completed_task_is_refused_and_keeps_it_clean() -> None:
    driver, task = started()
    engine.complete_task(driver.state, task, '["a","b"]', None, 2, T0)
    with pytest.raises(InvalidTransitionError, match="'completed' to 'failed'"):
        engine.fail_task(driver.state, task, BOOM, T0 + timedelta(1))
    assert (task.error_type, task.error_message, task.finished_at) == (None, None, T0)
    assert driver.state.run.status is RunStatus.RUNNING


def test_retrying_or_requeueing_from_the_wrong_status_is_refused() -> None:
    driver, task = started()
    with pytest.raises(InvalidTransitionError, match="'running' to 'queued'"):
        engine.requeue(task, T0)
    assert task.queued_at == driver.state.task("split").queued_at
    engine.complete_task(driver.state, task, '["a","b"]', None, 2, T0)
    with pytest.raises(InvalidTransitionError, match="'completed' to 'retrying'"):
        engine.schedule_retry(task, BOOM, T0)
    assert (task.ready_at, task.error_type) == (None, None)
    with pytest.raises(InvalidTransitionError, match="'completed' to 'running'"):
        engine.mark_dispatched(driver.state, task, T0)
    assert task.attempts == 1


def test_a_retry_goes_running_retrying_queued_running() -> None:
    driver, task = started()
    engine.schedule_retry(task, BOOM, T0 + timedelta(seconds=9))
    assert (task.status, task.ready_at, task.error_type) == (
        TaskStatus.RETRYING,
        T0 + timedelta(seconds=9),
        "builtins.RuntimeError",
    )
    changes = engine.requeue(task, T0 + timedelta(seconds=9))
    assert changes.ready == [task] and task.ready_at is None
    engine.mark_dispatched(driver.state, task, T0 + timedelta(seconds=9))
    assert (task.status, task.attempts) == (TaskStatus.RUNNING, 2)
    engine.complete_task(driver.state, task, '["a"]', None, 1, T0 + timedelta(seconds=10))
    assert (task.error_type, task.error_message) == (None, None)


def test_a_fan_in_over_many_steps_looks_at_each_parent_a_bounded_number_of_times() -> None:
    """A sink after N independent steps: each completion must not re-check every parent
    (that made a 1,000-step DAG cost 2.5x per step what a 100-step one did)."""
    width = 2000
    middle = [StepSchema(name=f"m{i}", fn="x:y", after=("root",)) for i in range(width)]
    steps = [
        StepSchema(name="root", fn="x:y"),
        *middle,
        StepSchema(name="sink", fn="x:y", after=tuple(s.name for s in middle)),
    ]
    schema = WorkflowSchema.build("wide", steps)
    run = RunRecord(
        run_id="run",
        workflow=schema.name,
        version=schema.version,
        status=RunStatus.QUEUED,
        input_json="null",
        created_at=T0,
    )
    state = RunState(run=run, schema=schema)
    looked_up: Counter[str] = Counter()
    lookup = RunState.task

    def counting(self: RunState, step: str, map_index: int = WHOLE_STEP) -> TaskRecord:
        looked_up[step] += 1
        return lookup(self, step, map_index)

    engine.start_run(state, T0)
    for task in [state.task("root"), *(state.task(s.name) for s in middle)]:
        engine.mark_dispatched(state, task, T0)
        RunState.task = counting  # type: ignore[method-assign]
        try:
            engine.complete_task(state, task, "1", None, None, T0)
        finally:
            RunState.task = lookup  # type: ignore[method-assign]
    assert state.task("sink").status is TaskStatus.QUEUED
    # each parent is looked at a few times in all (its own completion, the cursor passing
    # it), not once per sibling's completion (that would be about width / 2 on average)
    assert max(looked_up[s.name] for s in middle) <= 4, looked_up.most_common(3)
