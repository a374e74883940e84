"""The engine: pure rules that move a run forward, one event at a time.

Each function takes the run's state and an event, updates the records in place and returns
what changed, so the caller can persist the changes before acting on them. No I/O, no clock:
time comes in as an argument.
"""

from __future__ import annotations

from datetime import datetime

from wfray.domain.policy import FailureInfo
from wfray.domain.records import WHOLE_STEP, TaskRecord
from wfray.domain.results import Collected, CollectFailed, run_result, step_result
from wfray.domain.run_state import Changes, RunState, attempts_running, set_run, set_task
from wfray.domain.status import RunStatus, TaskStatus
from wfray.domain.workflow import StepSchema

__all__ = ["Changes", "RunState", "attempts_running", "run_result", "step_result"]


def start_run(state: RunState, now: datetime) -> Changes:
    """Create a pending task per step; queue those without dependencies."""
    changes = Changes()
    run = state.run
    for step in state.schema.steps:
        task = TaskRecord(
            run_id=run.run_id,
            step=step.name,
            map_index=WHOLE_STEP,
            status=TaskStatus.PENDING,
            pool=step.pool,
            created_at=now,
            queue=run.queue,
            priority=run.priority,
            concurrency_key=run.concurrency_key,
        )
        state.tasks[task.key] = task
        changes.new_tasks.append(task)
    for step in state.schema.steps:
        if not step.after:
            _make_ready(state, step, now, changes, fresh=True)
    return changes


def mark_dispatched(state: RunState, task: TaskRecord, now: datetime) -> Changes:
    """A queued task was handed to an executor as a new attempt."""
    changes = Changes()
    set_task(task, TaskStatus.RUNNING, changes)
    task.attempts += 1
    task.started_at = task.started_at or now
    if state.run.status is RunStatus.QUEUED:
        set_run(state, RunStatus.RUNNING, changes)
        state.run.started_at = now
    return changes


def complete_task(
    state: RunState,
    task: TaskRecord,
    result_json: str | None,
    result_ref: str | None,
    result_items: int | None,
    now: datetime,
) -> Changes:
    """An attempt succeeded: record the result and release what waited on it."""
    changes = Changes()
    set_task(task, TaskStatus.COMPLETED, changes)  # first: a refused event changes nothing
    task.result_json, task.result_ref, task.result_items = result_json, result_ref, result_items
    task.finished_at = now
    task.error_type = task.error_message = None
    if task.map_index != WHOLE_STEP:  # counted even for a finished run: it may be resumed
        state.items_done[task.step] = state.items_done.get(task.step, 0) + 1
    if state.finished:
        return changes
    if task.map_index != WHOLE_STEP:
        group = state.task(task.step)
        if group.status is TaskStatus.RUNNING and state.items_done[task.step] == group.map_count:
            if task.step in state.paged:  # its results are in the store: collected first
                changes.collect.append(task.step)
                return changes
            _complete_group(state, group, now, changes)
    else:
        _release_downstream(state, task.step, now, changes)
    _finish_if_done(state, now, changes)
    return changes


def _complete_group(state: RunState, group: TaskRecord, now: datetime, changes: Changes) -> None:
    group.finished_at = now
    group.result_items = group.map_count
    set_task(group, TaskStatus.COMPLETED, changes)
    _release_downstream(state, group.step, now, changes)


def items_collected(state: RunState, step: str, result: Collected, now: datetime) -> Changes:
    """The results of a paged fan-out's items were read from the store (once, in map
    order): the fan-out completes and what waited on it is released; or they could not be
    collected, and the step fails (not retried: the same results would come back)."""
    changes = Changes()
    group = state.task(step)
    if isinstance(result, CollectFailed):
        if state.finished or group.status is not TaskStatus.RUNNING:
            return changes
        failure = FailureInfo(result.error_type, result.message, retryable=False)
        return fail_task(state, group, failure, now)
    state.collected[step] = result
    if state.finished or group.status is not TaskStatus.RUNNING:
        return changes
    if state.items_done.get(step, 0) != group.map_count:
        return changes  # an item was reopened meanwhile (a resumed run): not yet
    _complete_group(state, group, now, changes)
    _finish_if_done(state, now, changes)
    return changes


def create_items(state: RunState, step: str, limit: int, now: datetime) -> Changes:
    """Create (queued) up to `limit` more items of a paged fan-out, in index order."""
    changes = Changes()
    start = state.next_item.get(step)
    group = state.task(step)
    if start is None or state.finished or group.status is not TaskStatus.RUNNING:
        return changes
    count = group.map_count or 0
    end = min(count, start + max(0, limit))
    for index in range(start, end):
        item = new_item(group, index, now)
        state.tasks[item.key] = item
        changes.new_tasks.append(item)
        changes.ready.append(item)
    if end >= count:
        del state.next_item[step]
    else:
        state.next_item[step] = end
    return changes


def new_item(group: TaskRecord, index: int, now: datetime) -> TaskRecord:
    """Item `index` of a fan-out, queued."""
    return TaskRecord(
        run_id=group.run_id,
        step=group.step,
        map_index=index,
        status=TaskStatus.QUEUED,
        pool=group.pool,
        created_at=now,
        queue=group.queue,
        priority=group.priority,
        concurrency_key=group.concurrency_key,
        queued_at=now,
    )


def fail_task(state: RunState, task: TaskRecord, failure: FailureInfo, now: datetime) -> Changes:
    """An attempt failed and the policy gave up: the task and its run fail."""
    changes = Changes()
    set_task(task, TaskStatus.FAILED, changes)
    task.finished_at = now
    task.error_type, task.error_message = failure.error_type, failure.message
    if task.map_index != WHOLE_STEP:
        group = state.task(task.step)
        if group.status is TaskStatus.RUNNING:
            group.finished_at = now
            group.error_type = failure.error_type
            group.error_message = f"item {task.map_index} failed: {failure.message}"
            set_task(group, TaskStatus.FAILED, changes)
    if not state.finished:
        state.run.error = f"step {task.step!r} failed: {failure.error_type}: {failure.message}"
        _fail_run(state, now, changes)
    return changes


def schedule_retry(task: TaskRecord, failure: FailureInfo, retry_at: datetime) -> Changes:
    """An attempt failed and will be retried at `retry_at`."""
    changes = Changes()
    set_task(task, TaskStatus.RETRYING, changes)
    task.error_type, task.error_message = failure.error_type, failure.message
    task.ready_at = retry_at
    return changes


def requeue(task: TaskRecord, now: datetime) -> Changes:
    """A retry timer fired."""
    changes = Changes()
    set_task(task, TaskStatus.QUEUED, changes)
    task.ready_at = None
    task.queued_at = now
    changes.ready.append(task)
    return changes


def _fail_run(state: RunState, now: datetime, changes: Changes) -> None:
    _cancel_waiting(state, now, changes)
    state.run.finished_at = now
    set_run(state, RunStatus.FAILED, changes)


def _cancel_waiting(state: RunState, now: datetime, changes: Changes) -> None:
    for task in state.tasks.values():
        if task.status in (TaskStatus.PENDING, TaskStatus.QUEUED, TaskStatus.RETRYING):
            task.finished_at = now
            set_task(task, TaskStatus.CANCELLED, changes)


def cancel_run(state: RunState, reason: str, now: datetime) -> Changes:
    """Cancel a run that has not finished: what waits is cancelled at once; what runs is
    cancelled by its executor and recorded when its attempt ends (see `cancel_task`)."""
    return _stop_run(state, RunStatus.CANCELLED, reason, now)


def expire_run(state: RunState, now: datetime) -> Changes:
    """The run's deadline passed: it fails, the same way a cancelled run stops."""
    deadline = state.run.deadline_at
    when = f" at {deadline:%Y-%m-%d %H:%M:%S} UTC" if deadline else ""
    return _stop_run(state, RunStatus.FAILED, f"deadline exceeded{when}", now)


def _stop_run(state: RunState, status: RunStatus, reason: str, now: datetime) -> Changes:
    changes = Changes()
    if state.finished:
        return changes
    _cancel_waiting(state, now, changes)
    for task in state.tasks.values():
        if task.status is TaskStatus.RUNNING and task.map_count is not None:
            task.finished_at = now  # a fan-out's group row: its items are handled one by one
            set_task(task, TaskStatus.CANCELLED, changes)
    state.run.error = reason
    state.run.finished_at = now
    set_run(state, status, changes)
    return changes


RESUMABLE = frozenset({RunStatus.FAILED, RunStatus.CANCELLED})


def resume_run(state: RunState, now: datetime) -> Changes:
    """Resume a failed or cancelled run from the steps that did not complete.

    Completed steps keep their results and are not run again; reopened steps keep their
    attempt count (new attempts continue the numbering) and get a fresh retry budget.
    """
    changes = Changes()
    for task in state.tasks.values():
        if task.status not in (TaskStatus.FAILED, TaskStatus.CANCELLED):
            continue
        task.failures = task.lost = 0
        task.error_type = task.error_message = None
        task.finished_at = task.ready_at = None
        if task.map_index != WHOLE_STEP:
            task.queued_at = now
            set_task(task, TaskStatus.QUEUED, changes)
            changes.ready.append(task)
        elif task.map_count is not None:
            set_task(task, TaskStatus.RUNNING, changes)  # a fan-out: its items reopen
        else:
            set_task(task, TaskStatus.PENDING, changes)
    state.run.error = None
    state.run.finished_at = None
    set_run(state, RunStatus.RUNNING, changes)
    for name in state.paged:
        group = state.task(name)
        if group.status is TaskStatus.RUNNING and state.items_done.get(name) == group.map_count:
            changes.collect.append(name)
    for step in state.schema.steps:
        task = state.task(step.name)
        ready = all(state.task(p).status is TaskStatus.COMPLETED for p in step.after)
        if task.status is TaskStatus.PENDING and ready:
            _make_ready(state, step, now, changes, fresh=False)
    _finish_if_done(state, now, changes)
    return changes


def cancel_task(task: TaskRecord, message: str, now: datetime) -> Changes:
    """A running attempt was stopped because its run was cancelled."""
    changes = Changes()
    set_task(task, TaskStatus.CANCELLED, changes)
    task.finished_at = now
    task.error_type, task.error_message = "wfray.Cancelled", message
    return changes


def _release_downstream(state: RunState, step: str, now: datetime, changes: Changes) -> None:
    for child_name in state.children[step]:
        child = state.schema.step(child_name)
        if state.task(child_name).status is not TaskStatus.PENDING:
            continue
        if _parents_completed(state, child):
            _make_ready(state, child, now, changes, fresh=False)
            if state.finished:
                return


def _parents_completed(state: RunState, step: StepSchema) -> bool:
    parents = step.after
    done = state.parents_done.get(step.name, 0)
    while done < len(parents) and state.task(parents[done]).status is TaskStatus.COMPLETED:
        done += 1
    state.parents_done[step.name] = done
    return done == len(parents)


def _make_ready(
    state: RunState, step: StepSchema, now: datetime, changes: Changes, *, fresh: bool
) -> None:
    task = state.task(step.name)
    if step.map is None:
        task.queued_at = now
        if fresh:
            task.status = TaskStatus.QUEUED  # a new row: inserted with its final status
        else:
            set_task(task, TaskStatus.QUEUED, changes)
        changes.ready.append(task)
        return
    source = state.task(step.map)
    count = source.result_items
    if count is None:
        task.finished_at = now
        task.error_type = "wfray.MapSourceNotAList"
        task.error_message = (
            f"step {step.name!r} maps over {step.map!r}, whose result is "
            f"{_kind_of(source)}, not a list"
        )
        set_task(task, TaskStatus.FAILED, changes)
        state.run.error = task.error_message
        _fail_run(state, now, changes)
        return
    task.map_count = count
    task.started_at = now
    set_task(task, TaskStatus.RUNNING, changes)
    if state.pages(step.name, count):
        state.paged.add(step.name)
        state.next_item[step.name] = 0  # created a slice at a time: create_items
        return
    for index in range(count):
        item = new_item(task, index, now)
        state.tasks[item.key] = item
        changes.new_tasks.append(item)
        changes.ready.append(item)
    if count == 0:
        task.result_items = 0
        task.finished_at = now
        set_task(task, TaskStatus.COMPLETED, changes)
        _release_downstream(state, step.name, now, changes)


_KINDS = {"{": "a JSON object", '"': "a JSON string", "t": "a boolean", "f": "a boolean"}


def _kind_of(task: TaskRecord) -> str:
    """What a result that is not a list is, for the error (its JSON tells)."""
    if task.result_json is None:
        return "a result in the blob store" if task.result_ref is not None else "null"
    first = task.result_json.lstrip()[:1]
    return "null" if first == "n" else _KINDS.get(first, "a number")


def _finish_if_done(state: RunState, now: datetime, changes: Changes) -> None:
    if state.finished:
        return
    if all(task.status is TaskStatus.COMPLETED for task in state.tasks.values()):
        state.run.finished_at = now
        state.run.result_json, state.run.result_ref = run_result(state)
        set_run(state, RunStatus.COMPLETED, changes)
