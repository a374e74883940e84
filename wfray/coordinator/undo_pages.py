"""Undoing a paged fan-out: its completed items wait in the store, and are paged back in as
their run is undone (`wfray.domain.saga`), a page once the page before is undone, so the
coordinator holds a window of them, whatever the fan-out's width."""

from __future__ import annotations

import asyncio

from wfray.coordinator.durable import DurableStore
from wfray.coordinator.state import CoordinatorState
from wfray.domain import engine, saga
from wfray.domain.status import RunStatus

PAGE = 4096  # items paged in at most at once (and never more than the memory cap)


class UndoPages:
    def __init__(self, state: CoordinatorState, durable: DurableStore, wake: asyncio.Event):
        self.state = state
        self.durable = durable
        self.wake = wake

    async def page_in(self) -> None:
        """After the commit (what was undone is stored): the next page of each paged
        fan-out being undone whose page before is done, for the next turn."""
        memory = self.state
        limit = max(1, min(PAGE, memory.settings.memory_cap))
        for run_id in sorted(memory.undoing):
            state = memory.runs.get(run_id)
            if state is None or not state.undo_from:
                memory.undoing.discard(run_id)
                continue
            if state.run.status is not RunStatus.COMPENSATING or engine.attempts_running(state):
                continue  # an item still running may yet complete: read past it, it is lost
            for step in [s for s in state.undo_from if saga.wants_page(state, s)]:
                start = state.undo_from[step]
                items = await self.durable.call(
                    self.durable.store.completed_items, run_id, step, start, limit
                )
                saga.paged_in(state, step, items, limit)
                memory.retouch.add(run_id)
                self.wake.set()
