"""Paged fan-outs: a fan-out wider than the memory cap (`CoordinatorSettings.memory_cap`)
is not held whole. Its items are created a slice at a time, as the queues have room; a
completed item leaves memory (its run counts it); when the last one completes, the steps
that collect them get a reference to the items' results, which they read from the store a
page at a time (coordinator/collection.py).

So the coordinator's memory holds a window of a fan-out plus counters, whatever its width.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from wfray.application.batch import Batch
from wfray.coordinator.collection import collection
from wfray.coordinator.compensator import Compensator
from wfray.coordinator.durable import DurableStore
from wfray.coordinator.state import CoordinatorState
from wfray.domain import engine
from wfray.domain.status import RunStatus

SLICE = 4096  # items created per turn at most: a turn's commit stays short


class FanOuts:
    def __init__(
        self,
        state: CoordinatorState,
        durable: DurableStore,
        compensator: Compensator,
        wake: asyncio.Event,
    ) -> None:
        self.state = state
        self.durable = durable
        self.compensator = compensator  # a fan-out whose results cannot be collected fails
        self.wake = wake

    def complete(self, batch: Batch, now: datetime, touched: set[str]) -> None:
        """Fan-outs whose results were collected after the last commit complete now."""
        memory = self.state
        collected, memory.collected = memory.collected, []
        for run_id, step, result in collected:
            state = memory.runs.get(run_id)
            if state is None:
                continue
            touched.add(run_id)
            changes = engine.items_collected(state, step, result, now)
            memory.record(state, changes, batch)
            if changes.run_changed is not None and state.run.status is RunStatus.FAILED:
                self.compensator.run_ended(state, batch, now)  # it could not be collected

    def create(self, batch: Batch, now: datetime, touched: set[str]) -> None:
        """Create the next items of paged fan-outs, as many as the queues have room for
        (never past queued tasks that wait in the store: those are paged in first)."""
        memory = self.state
        room = memory.settings.memory_cap - memory.queues.held
        for run_id in sorted(memory.fanning):
            if room <= 0:
                return
            state = memory.runs.get(run_id)
            if state is None or state.finished or not state.next_item:
                memory.fanning.discard(run_id)
                continue
            if memory.queues.overflowing(state.run.queue):
                continue  # older tasks of its queue wait in the store: they go first
            created = 0
            for step in list(state.next_item):
                changes = engine.create_items(state, step, min(room, SLICE), now)
                room -= len(changes.new_tasks)
                created += len(changes.new_tasks)
                memory.record(state, changes, batch)
                if room <= 0:
                    break
            if created:
                touched.add(run_id)
            else:  # its fan-outs stopped (the run failed or was cancelled): until a resume
                memory.fanning.discard(run_id)
        if memory.fanning and room > 0:
            self.wake.set()

    async def collect(self) -> None:
        """Collect the fan-outs whose items all completed (after the commit that recorded
        the last one), for the next turn."""
        memory = self.state
        pending, memory.to_collect = memory.to_collect, []
        for run_id, step in pending:
            state = memory.runs.get(run_id)
            if state is not None:
                limit = memory.settings.max_result_bytes
                result = await collection(self.durable, state, step, limit)
                memory.collected.append((run_id, step, result))
        if pending:
            self.wake.set()
