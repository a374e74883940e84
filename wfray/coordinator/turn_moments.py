"""The moments of a loop turn a test may kill the coordinator at (application/moments.py),
matched against what the turn moved: the workflows of its runs, the steps of its outcomes
and dispatches, and their kinds (a step, or a compensation).

Without WFRAY_CHAOS_DIR each costs one environment lookup, not the sets below.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from wfray.application.messages import Dispatch, Outcome
from wfray.application.moments import CHAOS_DIR_ENV, Moment, reached
from wfray.coordinator.state import CoordinatorState


def kinds_ending(state: CoordinatorState, outcomes: list[tuple[str, Outcome]]) -> set[str]:
    """Whether the attempts these outcomes end are steps or compensations: read before the
    outcomes are applied, which forgets the attempts."""
    if not os.environ.get(CHAOS_DIR_ENV):
        return set()
    keys = ((o.run_id, o.step, o.map_index, o.attempt) for _, o in outcomes)
    return {state.attempts[key].kind for key in keys if key in state.attempts}


@dataclass(slots=True)
class Moved:
    """What one turn moved."""

    state: CoordinatorState
    touched: set[str]
    outcomes: list[tuple[str, Outcome]]
    dispatches: list[Dispatch]
    ended_kinds: set[str]

    def reached(self, moment: Moment) -> None:
        if not os.environ.get(CHAOS_DIR_ENV):
            return
        runs = self.state.runs
        workflows = {runs[r].run.workflow for r in self.touched if r in runs}
        steps = {o.step for _, o in self.outcomes} | {d.step for d in self.dispatches}
        kinds = self.ended_kinds | {d.kind for d in self.dispatches}
        reached(moment, workflows=workflows, steps=steps, kinds=kinds)
