"""The read side of InMemoryRunStore: copies of what is stored, in the SQL stores' order."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from datetime import datetime

from wfray.adapters.memory.store_base import InMemoryStoreBase
from wfray.application.messages import RunView, view_of
from wfray.application.quarantine import APPLYING, PENDING, QuarantinedOutcome
from wfray.application.views import StoreFacts
from wfray.domain.claims import ClaimRecord
from wfray.domain.reads import LogQuery, RunFilter
from wfray.domain.records import AttemptRecord, LogRecord, QueuedTask, RunRecord, TaskRecord
from wfray.domain.results import collect
from wfray.domain.status import ACTIVE_RUNS, AttemptStatus, RunStatus, TaskStatus
from wfray.domain.uniqueness import holds_before
from wfray.domain.workflow import WorkflowSchema

# a wide fan-out's items that stay in the store when its run is loaded (paged in if undone)
AT_REST = frozenset({TaskStatus.COMPLETED, TaskStatus.COMPENSATED})


class InMemoryRunReader(InMemoryStoreBase):
    """Reads under the lock; writes nothing."""

    def get_workflow(self, name: str, version: str | None = None) -> WorkflowSchema | None:
        with self._lock:
            if version is not None:
                return self._workflows.get((name, version))
            for key in reversed(self._workflow_order):
                if key[0] == name:
                    return self._workflows[key]
            return None

    def get_runtime_envs(self, env_hashes: Sequence[str]) -> dict[str, str]:
        with self._lock:
            return {h: self._envs[h] for h in env_hashes if h in self._envs}

    def list_workflows(self) -> list[WorkflowSchema]:
        with self._lock:
            latest: dict[str, WorkflowSchema] = {}
            for key in self._workflow_order:
                latest[key[0]] = self._workflows[key]
            return [latest[name] for name in sorted(latest)]

    def find_runs(self, run_ids: Sequence[str]) -> dict[str, RunRecord]:
        with self._lock:
            return {rid: copy.copy(self._runs[rid]) for rid in run_ids if rid in self._runs}

    def find_views(self, run_ids: Sequence[str]) -> dict[str, RunView]:
        with self._lock:
            return {rid: view_of(self._runs[rid]) for rid in run_ids if rid in self._runs}

    def find_idempotency_keys(self, keys: Sequence[str]) -> dict[str, str]:
        with self._lock:
            return {key: self._keys[key] for key in keys if key in self._keys}

    def find_unique_runs(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], RunRecord]:
        wanted = set(keys)
        with self._lock:
            found: dict[tuple[str, str], RunRecord] = {}
            for run in self._runs.values():
                ref = (run.workflow, run.unique_key or "")
                if run.unique_key is None or ref not in wanted:
                    continue
                held = found.get(ref)
                if held is None or holds_before(run, held):
                    found[ref] = run
            return {ref: copy.copy(found[ref]) for ref in keys if ref in found}

    def list_runs(self, wanted: RunFilter) -> list[RunRecord]:
        with self._lock:
            runs = [copy.copy(run) for run in self._runs.values() if wanted.matches(run)]
        runs.sort(key=lambda r: (r.created_at, r.run_id), reverse=True)
        return runs[: wanted.limit]

    def run_ids_starting(self, prefix: str, limit: int) -> list[str]:
        with self._lock:
            found = sorted(rid for rid in self._runs if rid.startswith(prefix))
        return found[:limit]

    def child_runs(
        self, parent_run_ids: Sequence[str], limit: int | None = None
    ) -> list[RunRecord]:
        wanted = set(parent_run_ids)
        with self._lock:
            found = [r for r in self._runs.values() if r.parent_run_id in wanted]
        found.sort(key=lambda r: (r.created_at, r.run_id))
        return [copy.copy(r) for r in found[:limit]]

    def get_tasks(self, run_ids: Sequence[str]) -> list[TaskRecord]:
        wanted = set(run_ids)
        with self._lock:
            tasks = [copy.copy(t) for t in self._tasks.values() if t.run_id in wanted]
        tasks.sort(key=lambda t: (t.run_id, t.created_at, t.step, t.map_index))
        return tasks

    def get_attempts(self, run_id: str) -> list[AttemptRecord]:
        with self._lock:
            found = [copy.copy(a) for a in self._attempts.values() if a.run_id == run_id]
        found.sort(key=lambda a: (a.queued_at, a.step, a.map_index, a.attempt))
        return found

    def page_tasks(
        self, run_id: str, after: tuple[str, int] | None, limit: int
    ) -> list[TaskRecord]:
        with self._lock:
            found = [
                copy.copy(t)
                for t in self._tasks.values()
                if t.run_id == run_id and (after is None or (t.step, t.map_index) > after)
            ]
        found.sort(key=lambda t: (t.step, t.map_index))
        return found[:limit]

    def page_attempts(
        self, run_id: str, after: tuple[str, int, int] | None, limit: int
    ) -> list[AttemptRecord]:
        with self._lock:
            found = [
                copy.copy(a)
                for a in self._attempts.values()
                if a.run_id == run_id
                and (after is None or (a.step, a.map_index, a.attempt) > after)
            ]
        found.sort(key=lambda a: (a.step, a.map_index, a.attempt))
        return found[:limit]

    def count_history(self, run_id: str) -> tuple[int, int]:
        with self._lock:
            tasks = sum(1 for t in self._tasks.values() if t.run_id == run_id)
            attempts = sum(1 for a in self._attempts.values() if a.run_id == run_id)
        return tasks, attempts

    def get_logs(self, wanted: LogQuery) -> list[LogRecord]:
        with self._lock:
            found = [copy.copy(line) for line in self._logs if wanted.matches(line)]
        return found if wanted.limit is None else found[: wanted.limit]

    def live_tasks(
        self, run_ids: Sequence[str], window: int
    ) -> tuple[list[TaskRecord], dict[tuple[str, str], tuple[int, int]]]:
        wanted = set(run_ids)
        counts: dict[tuple[str, str], tuple[int, int]] = {}
        with self._lock:
            mine = [t for t in self._tasks.values() if t.run_id in wanted]
            wide = {
                (t.run_id, t.step)
                for t in mine
                if t.map_index < 0 and t.map_count is not None and t.map_count > window
            }
            kept = []
            for task in mine:
                done = task.status is TaskStatus.COMPLETED
                if task.map_index >= 0:
                    stored, completed = counts.get((task.run_id, task.step), (0, 0))
                    counts[(task.run_id, task.step)] = (stored + 1, completed + done)
                    if task.status in AT_REST and (task.run_id, task.step) in wide:
                        continue
                kept.append(copy.copy(task))
        kept.sort(key=lambda t: (t.run_id, t.created_at, t.step, t.map_index))
        return kept, counts

    def item_results(
        self, run_id: str, step: str, start: int, limit: int
    ) -> list[tuple[int, str | None, str | None]]:
        page = []
        with self._lock:
            for index in range(max(0, start), max(0, start) + max(0, limit)):
                task = self._tasks.get((run_id, step, index))
                if task is not None and task.status is TaskStatus.COMPLETED:
                    page.append((index, task.result_json, task.result_ref))
        return page

    def completed_items(self, run_id: str, step: str, start: int, limit: int) -> list[TaskRecord]:
        with self._lock:
            found = sorted(
                (
                    t
                    for t in self._tasks.values()
                    if t.run_id == run_id
                    and t.step == step
                    and t.map_index >= max(0, start)
                    and t.status is TaskStatus.COMPLETED
                ),
                key=lambda t: t.map_index,
            )
            return [copy.copy(t) for t in found[: max(0, limit)]]

    def collect_items(
        self, run_id: str, step: str, limit: int | None = None
    ) -> tuple[str | None, str | None]:
        with self._lock:
            items = sorted(
                (t.map_index, t.result_json, t.result_ref)
                for t in self._tasks.values()
                if t.run_id == run_id and t.step == step and t.map_index >= 0
            )
        blob = any(ref is not None for _, _, ref in items)
        return collect(((text, ref) for _, text, ref in items), blob, limit)

    def load_active(
        self, with_tasks: bool = True
    ) -> tuple[list[RunRecord], list[TaskRecord], list[AttemptRecord]]:
        with self._lock:
            runs = [copy.copy(r) for r in self._runs.values() if r.status in ACTIVE_RUNS]
            ids = {r.run_id for r in runs} if with_tasks else set()
            tasks = [copy.copy(t) for t in self._tasks.values() if t.run_id in ids]
            attempts = [
                copy.copy(a) for a in self._attempts.values() if a.status == AttemptStatus.RUNNING
            ]
        return runs, tasks, attempts

    def running_attempts(self, run_ids: Sequence[str]) -> list[AttemptRecord]:
        wanted = set(run_ids)
        with self._lock:
            return [
                copy.copy(a)
                for a in self._attempts.values()
                if a.run_id in wanted and a.status == AttemptStatus.RUNNING
            ]

    def page_queued(
        self, queue: str, after: tuple[int, int] | None, limit: int
    ) -> list[QueuedTask]:
        with self._lock:
            queued = [
                QueuedTask(t.run_id, t.step, t.map_index, t.priority, t.seq)
                for t in self._tasks.values()
                if t.status == TaskStatus.QUEUED and t.queue == queue
            ]
        queued.sort(key=lambda t: (-t.priority, t.seq))
        if after is not None:
            priority, seq = after
            queued = [t for t in queued if (-t.priority, t.seq) > (-priority, seq)]
        return queued[:limit]

    def pending_deadlines(self) -> list[tuple[str, datetime]]:
        with self._lock:
            return [
                (run.run_id, run.deadline_at)
                for run in self._runs.values()
                if run.deadline_at is not None and not run.status.finished
            ]

    def count_queued(self) -> int:
        with self._lock:
            return sum(1 for t in self._tasks.values() if t.status == TaskStatus.QUEUED)

    def queued_queues(self) -> list[str]:
        with self._lock:
            return sorted({t.queue for t in self._tasks.values() if t.status == TaskStatus.QUEUED})

    def counters(self, prefix: str) -> dict[str, int]:
        with self._lock:
            return {k: v for k, v in self._counters.items() if k.startswith(prefix)}

    def store_facts(self) -> StoreFacts:
        with self._lock:
            queued = [r.created_at for r in self._runs.values() if r.status == RunStatus.QUEUED]
        return StoreFacts(min(queued, default=None), None)  # memory has no size on disk

    def max_task_seq(self) -> int:
        with self._lock:
            return max((t.seq for t in self._tasks.values()), default=0)

    def get_claim(self, key: str) -> ClaimRecord | None:
        with self._lock:
            return self._claims.get(key)  # frozen: a copy would be the same

    def claims_of(self, run_ids: Sequence[str], limit: int | None = None) -> list[ClaimRecord]:
        wanted = set(run_ids)
        with self._lock:
            held = [c for c in self._claims.values() if c.holder.run_id in wanted]
        return sorted(held, key=lambda c: c.key)[:limit]

    def quarantined_outcomes(self) -> list[QuarantinedOutcome]:
        with self._lock:
            found = [v for v in self._aside.values() if v.status not in (PENDING, APPLYING)]
        return sorted(found, key=lambda v: (v.at, v.key))
