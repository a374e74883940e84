"""What the coordinator holds in memory: a cache of the store's active part, and the
bookkeeping that goes with it. Each fact lives here once (an attempt and the executor it
runs on change together), and the coordinator's desks read and change it through this
object, never through the coordinator.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from wfray.application.batch import Batch
from wfray.application.metrics import Metrics
from wfray.coordinator.arguments import ArgumentBuilder
from wfray.coordinator.settings import CoordinatorSettings
from wfray.coordinator.shared_tasks import ShortSteps
from wfray.coordinator.timers import TimerKind, TimerQueue
from wfray.domain import engine, saga
from wfray.domain.queueing import QueueManager
from wfray.domain.records import WHOLE_STEP, AttemptKey, AttemptRecord, RunRecord, TaskRecord
from wfray.domain.results import Collected
from wfray.domain.run_state import Changes, RunState
from wfray.domain.status import TaskStatus
from wfray.domain.workflow import WorkflowSchema


@dataclass(frozen=True, slots=True)
class EndedAttempt:
    """An attempt that ended, as the metrics count it."""

    run_id: str
    workflow: str
    step: str
    kind: str
    status: str
    duration_s: float | None


class CoordinatorState:
    def __init__(self, settings: CoordinatorSettings) -> None:
        self.settings = settings
        self.schemas: dict[tuple[str, str], WorkflowSchema] = {}
        # runtime environments by hash, as Ray is given them (JSON; "" if nothing to
        # build): loaded with the runs that use them, so a dispatch reads no store
        self.envs: dict[str, str] = {}
        self.short_steps = ShortSteps(settings.short_step_s)  # learnt from attempts' durations
        self.runs: dict[str, RunState] = {}
        self.attempts: dict[AttemptKey, AttemptRecord] = {}
        self.running_on: Counter[str] = Counter()  # attempts running, by executor
        self.queues = self._new_queues()
        self.args = ArgumentBuilder()
        self.timers = TimerQueue()
        self.retouch: set[str] = set()  # runs to look at in the next turn (after recovery)
        self.seq = 0  # of the last task queued: the order within a priority
        self.queued_count = 0  # queued tasks, in memory or paged out in the store
        # what this turn ended, counted once its rows commit (a run set aside is applied
        # again next turn: counted then, not twice)
        self.finished: list[RunRecord] = []  # runs
        self.ended_attempts: list[EndedAttempt] = []
        self.retries: list[tuple[str, str, str]] = []  # (run_id, workflow, step) scheduled
        self.fanning: set[str] = set()  # runs with paged fan-outs whose items are not all created
        self.to_collect: list[tuple[str, str]] = []  # paged fan-outs done, read after the commit
        self.collected: list[tuple[str, str, Collected]] = []  # and read
        self.undoing: set[str] = set()  # runs undoing paged fan-outs: pages to read (saga.py)

    def unload(self, run_ids: set[str]) -> None:
        """Let go of these runs as memory holds them (after a refused commit they ran ahead
        of the store): their tasks, queue slots, attempts, timers and counts, so that they
        can be loaded again as the store holds them; every other run stays as it is."""
        for run_id in run_ids:
            state = self.runs.get(run_id)
            if state is None:
                continue
            for task in state.tasks.values():
                if task.status is TaskStatus.QUEUED:
                    self.queued_count -= 1
            for key in self.attempts_of(run_id):
                holder = state.tasks.get((key[1], key[2]))
                if holder is not None:  # its attempt took a slot, as an outcome frees it
                    self.queues.finished(holder)
                self.attempt_ended(key)
            self.evict(run_id)
        self.queues.drop(run_ids)
        self.timers.drop(run_ids)
        self.fanning -= run_ids
        self.undoing -= run_ids
        self.to_collect = [entry for entry in self.to_collect if entry[0] not in run_ids]
        self.collected = [entry for entry in self.collected if entry[0] not in run_ids]

    def count_committed(self, metrics: Metrics, aside: set[str]) -> None:
        """Count what the turn ended, less what was set aside (applied again, and counted,
        in a later turn)."""
        finished, self.finished = self.finished, []
        ended, self.ended_attempts = self.ended_attempts, []
        retries, self.retries = self.retries, []
        for run in finished:
            if run.run_id not in aside:
                metrics.run_finished(run.workflow, run.status.value)
        for a in ended:
            if a.run_id not in aside:
                metrics.attempt_finished(a.workflow, a.step, a.kind, a.status, a.duration_s)
        for run_id, workflow, step in retries:
            if run_id not in aside:
                metrics.retry_scheduled(workflow, step)

    # -- runs ------------------------------------------------------------------------------

    def adopt(
        self,
        run: RunRecord,
        tasks: Iterable[TaskRecord],
        schema: WorkflowSchema,
        counts: Mapping[tuple[str, str], tuple[int, int]] | None = None,
    ) -> RunState:
        """Hold a run loaded from the store; `counts` (RunLedger.live_tasks) tell, per
        fan-out, how many items are stored and how many completed."""
        state = RunState(
            run=run,
            schema=schema,
            tasks={t.key: t for t in tasks},
            window=self.settings.memory_cap,
        )
        for task in list(state.tasks.values()):
            if task.map_index != WHOLE_STEP or task.map_count is None or counts is None:
                continue
            stored, completed = counts.get((run.run_id, task.step), (0, 0))
            if stored < task.map_count or state.pages(task.step, task.map_count):
                state.paged.add(task.step)
                state.items_done[task.step] = completed
                if stored < task.map_count:
                    state.next_item[task.step] = stored
        if state.next_item:
            self.fanning.add(run.run_id)
        saga.undo_paged(state)  # a compensating run's fan-outs page their items in again
        if state.undo_from:
            self.undoing.add(run.run_id)
        self.runs[run.run_id] = state
        return state

    def evict(self, run_id: str) -> None:
        self.runs.pop(run_id, None)
        self.args.forget(run_id)

    def status_of(self, run_id: str) -> str:
        state = self.runs.get(run_id)
        return "unknown" if state is None else state.run.status.value

    def live(self, state: RunState) -> bool:
        """Does the run need memory: something of it runs, waits for a timer or is held in
        a queue, or has pages of a fan-out to undo?"""
        if state.undo_from:
            return True
        for task in state.tasks.values():
            if task.status in (TaskStatus.RUNNING, TaskStatus.RETRYING, TaskStatus.COMPENSATING):
                return True
            if task.status is TaskStatus.QUEUED and self.queues.holds(
                (task.run_id, task.step, task.map_index)
            ):
                return True
        return False

    def record(self, state: RunState, changes: Changes, batch: Batch) -> None:
        """Put an engine decision into the batch and queue what became ready."""
        for task in changes.ready:
            self.enqueue(task)
        for task in changes.new_tasks:
            batch.insert_task(task)
        for task, expected in changes.updated_tasks:
            batch.update_task(task, expected)
            if expected is TaskStatus.QUEUED and task.status is TaskStatus.CANCELLED:
                self.queued_count -= 1  # held or not, it left the backlog
            if (
                task.map_index != WHOLE_STEP
                and task.status in (TaskStatus.COMPLETED, TaskStatus.COMPENSATED)
                and task.step in state.paged
            ):
                state.tasks.pop(task.key, None)  # counted in items_done; the batch writes it
        if changes.collect:
            self.to_collect.extend((state.run.run_id, step) for step in changes.collect)
        if state.next_item:
            self.fanning.add(state.run.run_id)
        if state.undo_from:
            self.undoing.add(state.run.run_id)
        if changes.run_changed is not None:
            batch.update_run(state.run, changes.run_changed)
            if state.run.status.finished:
                self.finished.append(state.run)

    def enqueue(self, task: TaskRecord) -> None:
        self.seq += 1
        task.seq = self.seq
        self.queued_count += 1
        self.queues.push(task)

    def task_of(self, key: AttemptKey) -> TaskRecord | None:
        run_id, step, map_index, _ = key
        state = self.runs.get(run_id)
        return state.tasks.get((step, map_index)) if state else None

    # -- attempts --------------------------------------------------------------------------

    def attempt_started(self, key: AttemptKey, attempt: AttemptRecord) -> None:
        self.attempts[key] = attempt
        self.running_on[attempt.executor] += 1

    def attempt_ended(self, key: AttemptKey) -> AttemptRecord | None:
        """The attempt's outcome is being applied; None if it was applied already."""
        attempt = self.attempts.pop(key, None)
        if attempt is not None:
            self.running_on[attempt.executor] -= 1
        return attempt

    def attempts_of(self, run_id: str) -> list[AttemptKey]:
        return [key for key in self.attempts if key[0] == run_id]

    def _new_queues(self) -> QueueManager:
        s = self.settings
        return QueueManager(list(s.queues), s.pool_windows, s.memory_cap)

    # -- timers ----------------------------------------------------------------------------

    def fire_timers(
        self, batch: Batch, now: datetime, touched: set[str], expire: Callable[[str], None]
    ) -> None:
        """Due retries go back to their queue, a due compensation's run is touched (the saga
        phase sends it), a passed deadline is handed to `expire`."""
        for timer in self.timers.due(now):
            if timer.kind is TimerKind.DEADLINE:
                expire(timer.run_id)
                continue
            state = self.runs.get(timer.run_id)
            task = state.tasks.get((timer.step, timer.map_index)) if state else None
            if state is None or task is None:
                continue
            if task.status is TaskStatus.COMPENSATING:
                touched.add(timer.run_id)
            elif task.status is TaskStatus.RETRYING:
                touched.add(timer.run_id)
                self.record(state, engine.requeue(task, now), batch)
