"""The coordinator's side of the executors: dispatch, drain, acknowledge, reconcile.

Executors own the running attempts and keep every outcome until the coordinator acknowledges
it after its commit. After a restart of either side, a snapshot of the executor tells which
attempts still run there; those it no longer knows are recorded as lost and retried.

An executor's id is its pool's name ("io"), or the pool's name, a dot and a number ("io.1")
when a pool has several; each attempt goes to the one of its pool with the fewest running.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from wfray.application.messages import Dispatch, ExecutorSnapshot, Outcome
from wfray.application.moments import Moment, reached
from wfray.application.ports import Clock, StepExecutor
from wfray.coordinator.durable import DurableStore
from wfray.coordinator.heartbeats import HeartbeatWatch
from wfray.coordinator.loading import RunLoader
from wfray.coordinator.settings import CoordinatorSettings
from wfray.coordinator.state import CoordinatorState
from wfray.domain.queueing import order_key
from wfray.domain.records import AttemptKey, AttemptRecord
from wfray.domain.run_state import RunState
from wfray.domain.status import AttemptStatus, TaskStatus

Inbox = list[tuple[str, Outcome]]  # outcomes that arrived, by executor, for the next turn

log = logging.getLogger("wfray.coordinator")

LOST_ERROR = "wfray.AttemptLost"
# A safety net: even with no sign of trouble, compare with each executor this often, so an
# attempt whose dispatch vanished without an error cannot stay "running" for ever.
RECONCILE_EVERY_S = 20.0
# After an executor restarted, new attempts go to the others of its pool for this long:
# the first calls over a restarted actor's connection may fail.
SETTLING = timedelta(seconds=5)
EPOCH_COUNTER = "wfray:coordinator-epoch"  # one per coordinator start: fences (outbox.py)


def pool_of(executor: str) -> str:
    return executor.partition(".")[0]


@dataclass(eq=False)
class Reconciler:
    state: CoordinatorState
    executors: dict[str, StepExecutor]
    durable: DurableStore
    loader: RunLoader
    heartbeats: HeartbeatWatch
    clock: Clock
    settings: CoordinatorSettings
    inbox: Inbox
    wake: asyncio.Event
    incarnations: dict[str, str] = field(default_factory=dict, init=False)
    acks: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int), init=False)
    unsent: set[AttemptKey] = field(default_factory=set, init=False)
    delivered: dict[AttemptKey, int] = field(default_factory=dict, init=False)
    deliveries: int = field(default=0, init=False)
    _drainers: list[asyncio.Task[None]] = field(default_factory=list, init=False)
    _senders: set[asyncio.Task[None]] = field(default_factory=set, init=False)
    # pools a dispatch may not have reached
    _suspect: set[str] = field(default_factory=set, init=False)
    # calls to the executors and what they carried: batch sizes, for operators
    traffic: Counter[str] = field(default_factory=Counter, init=False)
    # outcomes each executor held, unacknowledged, when it last answered (health.py)
    outbox_sizes: dict[str, int] = field(default_factory=dict, init=False)
    shards: dict[str, list[str]] = field(init=False)  # pool -> its executors
    # restarted executors, until when
    settling: dict[str, datetime] = field(default_factory=dict, init=False)
    # taken from the store at recovery, before any executor is asked
    epoch: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.shards = defaultdict(list)
        for executor in sorted(self.executors):
            self.shards[pool_of(executor)].append(executor)

    def executor_for(self, pool: str) -> str:
        """The executor of `pool` with the fewest attempts running; the pool's own name if it
        has none (the dispatch then fails loudly and the attempt is judged lost)."""
        shards = self.shards.get(pool)
        if not shards:
            return pool
        if len(shards) == 1:
            return shards[0]
        if self.settling:
            now = self.clock.now()
            settled = [e for e in shards if self.settling.get(e, now) <= now]
            shards = settled or shards
        return min(shards, key=self.state.running_on.__getitem__)

    def incarnation(self, pool: str) -> str:
        return self.incarnations.get(pool, "")

    # -- recovery ------------------------------------------------------------------------------

    def _rewatch(self, key: AttemptKey, attempt: AttemptRecord) -> None:
        """Watch a recovered attempt's heartbeats again, with a fresh window: the silence
        may have been the coordinator's own downtime."""
        owner = self.state.runs[attempt.run_id]
        timeout = owner.schema.step(attempt.step).heartbeat_timeout_s
        if timeout is not None and attempt.kind == "step":
            self.heartbeats.watch(key, timeout, self.clock.now())

    async def recover(self) -> None:
        """Rebuild memory from the store and the executors (at a start)."""
        memory, durable, store = self.state, self.durable, self.durable.store
        self.epoch = await durable.call(store.next_value, EPOCH_COUNTER)
        runs, _, attempts = await durable.call(store.load_active, False)
        self._hold(await self.loader.adopt(runs), attempts)
        for run_id, deadline in await durable.call(store.pending_deadlines):
            memory.timers.deadline_at(deadline, run_id)
        memory.seq = await durable.call(store.max_task_seq)
        memory.queued_count = await durable.call(store.count_queued)
        for queue in await durable.call(store.queued_queues):
            memory.queues.mark_unpaged(queue)
        for pool in self.executors:
            try:
                await self.reconcile(pool)
            except Exception as exc:  # the drainer retries it
                log.warning("executor %s not reachable at start: %s", pool, exc)
        self._abandon_unconfigured()
        log.info(
            "recovered %d active runs, %d running attempts, %d queued tasks",
            len(runs),
            len(attempts),
            memory.queued_count,
        )
        self.wake.set()

    async def reload(self, run_ids: set[str]) -> None:
        """Return these runs to what the store holds, after a refused commit set them aside
        (poison.py): their memory is let go and loaded again as at a start. The other runs,
        the executors and their outboxes are left as they are."""
        if not run_ids:
            return
        memory, durable, store = self.state, self.durable, self.durable.store
        memory.unload(run_ids)
        found = await durable.call(store.find_runs, sorted(run_ids))
        states = await self.loader.adopt(list(found.values()))
        attempts = await durable.call(store.running_attempts, sorted(run_ids))
        # their heartbeats stay watched as they were (a worker still starting keeps its
        # grace); a watch of an attempt not held any more is passed over when it comes due
        self._hold(states, attempts, rewatch=False)
        for state in states:
            run = state.run
            if run.deadline_at is not None and not run.status.finished:
                memory.timers.deadline_at(run.deadline_at, run.run_id)
            queued = [t for t in state.tasks.values() if t.status is TaskStatus.QUEUED]
            memory.queued_count += len(queued)
            for task in sorted(queued, key=order_key):
                memory.queues.push(task)  # as a page from the store would bring it
        self.wake.set()

    def _hold(
        self, states: list[RunState], attempts: list[AttemptRecord], rewatch: bool = True
    ) -> None:
        """Take up runs loaded from the store: the timers of their waiting tasks, and their
        running attempts (each holding its task's slot; with `rewatch`, its heartbeats
        watched afresh)."""
        memory = self.state
        for state in states:
            memory.retouch.add(state.run.run_id)  # a compensation may be ready to go on
            for task in state.tasks.values():
                waiting = task.status in (TaskStatus.RETRYING, TaskStatus.COMPENSATING)
                if waiting and task.ready_at is not None:
                    memory.timers.retry_at(task.ready_at, task)
        for attempt in attempts:
            key = (attempt.run_id, attempt.step, attempt.map_index, attempt.attempt)
            memory.attempt_started(key, attempt)
            self.delivered.setdefault(key, 0)
            owner = memory.runs.get(attempt.run_id)
            held = owner.tasks.get(attempt.task_key) if owner else None
            if held is not None and held.status in (TaskStatus.RUNNING, TaskStatus.COMPENSATING):
                memory.queues.started(held)  # its slot is taken until its outcome frees it
                if rewatch:
                    self._rewatch(key, attempt)

    async def reconcile(self, pool: str) -> None:
        """Compare what the executor runs with what the store says runs there."""
        mark = self.deliveries
        executor = self.executors[pool]
        snapshot: ExecutorSnapshot = await executor.snapshot(self.acks[pool], self.epoch)
        changed = self.incarnations.get(pool) not in (None, snapshot.incarnation)
        if changed:
            self.settling[pool] = self.clock.now() + SETTLING
        self.incarnations[pool] = snapshot.incarnation
        self.outbox_sizes[pool] = len(snapshot.outcomes)
        known = set(snapshot.in_flight) | {o.attempt_key for o in snapshot.outcomes}
        self.inbox.extend((pool, o) for o in snapshot.outcomes)
        now = self.clock.now()
        lost = 0
        for key, attempt in list(self.state.attempts.items()):
            if attempt.executor != pool or key in known or key in self.unsent:
                continue
            if self.delivered.get(key, mark + 1) > mark:
                continue  # delivered after the snapshot was asked for: not judged yet
            self.inbox.append((pool, lost_outcome(attempt, pool, changed, now)))
            lost += 1
        if lost:
            log.warning("executor %s: %d attempts lost", pool, lost)
        self.wake.set()

    def _abandon_unconfigured(self) -> None:
        """Attempts recorded on an executor this coordinator no longer has (started with
        fewer io executors than before) are lost: no drain will ever bring their outcomes.
        The host stopped such executors before this coordinator started."""
        now = self.clock.now()
        for attempt in list(self.state.attempts.values()):
            if attempt.executor not in self.executors:
                why = "is no longer configured (fewer io executors than before)"
                lost = lost_outcome(attempt, attempt.executor, True, now, why)
                self.inbox.append((attempt.executor, lost))

    # -- steady state --------------------------------------------------------------------------

    def start_drainers(self) -> None:
        for pool in self.executors:
            self._drainers.append(
                asyncio.create_task(self._drain(pool), name=f"wfray-drain-{pool}")
            )

    async def stop_drainers(self) -> None:
        for task in [*self._drainers, *self._senders]:
            task.cancel()
        await asyncio.gather(*self._drainers, *self._senders, return_exceptions=True)
        self._drainers.clear()

    async def _drain(self, pool: str) -> None:
        executor = self.executors[pool]
        delay = 0.1
        loop = asyncio.get_running_loop()
        checked = loop.time()
        while not self.durable.stopping:
            try:
                wait_s = self.settings.drain_wait_s
                drained = await executor.drain(self.acks[pool], wait_s, self.epoch)
                due = loop.time() - checked > RECONCILE_EVERY_S or pool in self._suspect
                if drained.incarnation != self.incarnations.get(pool) or due:
                    self._suspect.discard(pool)
                    checked = loop.time()
                    await self.reconcile(pool)  # its snapshot holds these outcomes too
                    continue
                delay = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("executor %s unreachable (%s); retrying in %.1fs", pool, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                try:
                    await self.reconcile(pool)
                except Exception as again:
                    log.debug("reconcile of %s failed: %s", pool, again)
                continue
            self.traffic["drains"] += 1
            self.outbox_sizes[pool] = drained.held
            if drained.outcomes:
                self.traffic["drained_outcomes"] += len(drained.outcomes)
                self.inbox.extend((pool, o) for o in drained.outcomes)
                self.wake.set()

    def acknowledge(self, acks: dict[str, int]) -> None:
        for pool, seq in acks.items():
            if seq > self.acks[pool]:
                self.acks[pool] = seq

    def send(self, dispatches: list[Dispatch]) -> None:
        by_pool: dict[str, list[Dispatch]] = defaultdict(list)
        for dispatch in dispatches:
            attempt = self.state.attempts.get(dispatch.attempt_key)
            if attempt is None:
                continue  # settled before it was sent (its run was cancelled meanwhile)
            by_pool[attempt.executor].append(dispatch)
            self.unsent.add(dispatch.attempt_key)
        for pool, group in by_pool.items():
            self.traffic["dispatch_calls"] += 1
            self.traffic["dispatches"] += len(group)
            task = asyncio.create_task(self._send(pool, group))
            self._senders.add(task)
            task.add_done_callback(self._senders.discard)

    async def sent(self) -> None:
        """Wait until the dispatches and cancels under way have been handed over."""
        await asyncio.gather(*self._senders, return_exceptions=True)

    def stop(self, keys: list[AttemptKey]) -> None:
        """Ask the executors to cancel these running attempts (their outcomes follow)."""
        by_pool: dict[str, list[AttemptKey]] = defaultdict(list)
        for key in keys:
            attempt = self.state.attempts.get(key)
            if attempt is not None:
                by_pool[attempt.executor].append(key)
        for pool, group in by_pool.items():
            self.cancel_in(pool, group)

    def cancel_in(self, pool: str, keys: list[AttemptKey]) -> None:
        executor = self.executors.get(pool)
        if executor is None:
            return
        task = asyncio.create_task(_cancel_quietly(pool, executor, keys))
        self._senders.add(task)
        task.add_done_callback(self._senders.discard)

    async def _send(self, pool: str, group: list[Dispatch]) -> None:
        executor = self.executors.get(pool)
        try:
            if executor is None:
                raise LookupError(f"no executor for pool {pool!r}")
            await executor.dispatch(group, self.epoch)
            steps, workflows = {d.step for d in group}, {d.workflow for d in group}
            kinds = {d.kind for d in group}
            reached(
                Moment.COORDINATOR_AFTER_DISPATCH, workflows=workflows, steps=steps, kinds=kinds
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("dispatch of %d attempts to %s failed: %s", len(group), pool, exc)
            self._suspect.add(pool)  # the next drain compares: what did not arrive is lost
        finally:
            self.deliveries += 1
            for dispatch in group:
                self.unsent.discard(dispatch.attempt_key)
                self.delivered[dispatch.attempt_key] = self.deliveries
        # delivered keys are only needed until their outcome arrives
        if len(self.delivered) > 4 * max(1, len(self.state.attempts)) + 1024:
            self.delivered = {k: v for k, v in self.delivered.items() if k in self.state.attempts}


async def _cancel_quietly(pool: str, executor: StepExecutor, keys: list[AttemptKey]) -> None:
    try:
        await executor.cancel(keys)
    except Exception as exc:  # a dead executor has nothing left to cancel
        log.warning("cancel of %d attempts on %s failed: %s", len(keys), pool, exc)


def lost_outcome(
    attempt: AttemptRecord, pool: str, restarted: bool, now: datetime, why: str | None = None
) -> Outcome:
    if why is None:
        why = "restarted" if restarted else "does not know it (it died or never received it)"
    key = (attempt.run_id, attempt.step, attempt.map_index, attempt.attempt)
    message = f"attempt lost: executor {pool!r} {why}"
    outcome = Outcome.ended(key, AttemptStatus.LOST, LOST_ERROR, message, attempt.started_at)
    outcome.finished_at = now
    return outcome
