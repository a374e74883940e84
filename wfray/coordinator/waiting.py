"""Callers waiting for runs: their futures, answered after the commit that finished a run,
and views that never show a state the store does not hold yet."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from wfray.application.messages import RunView, view_of
from wfray.coordinator.durable import DurableStore
from wfray.coordinator.state import CoordinatorState
from wfray.domain.records import RunRecord


class Waiting:
    def __init__(self, state: CoordinatorState, durable: DurableStore) -> None:
        self.state = state
        self.durable = durable
        self.waiters: dict[str, list[asyncio.Future[RunView]]] = {}

    async def wait(self, run_ids: Sequence[str], timeout_s: float) -> list[RunView]:
        loop = asyncio.get_running_loop()
        futures: dict[str, asyncio.Future[RunView]] = {}
        for run_id in run_ids:
            future: asyncio.Future[RunView] = loop.create_future()
            self.waiters.setdefault(run_id, []).append(future)
            futures[run_id] = future
        try:
            for view in await self.views(run_ids):
                if view.status.finished and not futures[view.run_id].done():
                    futures[view.run_id].set_result(view)
            pending = [f for f in futures.values() if not f.done()]
            if pending:
                await asyncio.wait(pending, timeout=timeout_s)
        finally:
            for run_id, future in futures.items():
                waiting = self.waiters.get(run_id, [])
                if future in waiting:
                    waiting.remove(future)
                if not waiting:
                    self.waiters.pop(run_id, None)
        done = {rid: f.result() for rid, f in futures.items() if f.done()}
        rest = [rid for rid in run_ids if rid not in done]
        if rest:
            for view in await self.views(rest):
                done[view.run_id] = view
        return [done[rid] for rid in run_ids if rid in done]

    async def views(self, run_ids: Sequence[str]) -> list[RunView]:
        # Memory runs ahead of the store while a turn commits: never report a state that
        # is not durable yet (a crash now would take it back).
        await self.durable.committed()
        runs = self.state.runs
        missing = [rid for rid in run_ids if rid not in runs]
        stored = await self.durable.call(self.durable.store.find_views, missing) if missing else {}
        views = []
        for rid in run_ids:
            if rid in runs:
                views.append(view_of(runs[rid].run))
            elif rid in stored:
                views.append(stored[rid])
        return views

    def finished(self, run: RunRecord) -> None:
        """The run's end is committed: answer whoever waits for it."""
        view = view_of(run)
        for future in self.waiters.pop(run.run_id, []):
            if not future.done():
                future.set_result(view)
