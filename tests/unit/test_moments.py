"""Which armed moments a process obeys: workflow, step and kind must all match.

A matching moment kills the process that reaches it, so these tests reach only moments
that must not fire (the firing itself is proven on Ray in tests/fault/test_chaos_moments.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from wfray.application.moments import _matches, reached
from wfray.testing.chaos import Chaos, Moment


@pytest.mark.parametrize(
    ("wanted", "kinds", "matches"),
    [
        ({"workflow": "saga", "step": None, "kind": "compensation"}, {"compensation"}, True),
        ({"workflow": "saga", "step": None, "kind": "compensation"}, {"step"}, False),
        ({"workflow": "saga", "step": None, "kind": "compensation"}, set(), False),
        ({"workflow": "saga", "step": None, "kind": None}, set(), True),
        ({"workflow": "saga", "step": None, "kind": "step"}, {"step", "compensation"}, True),
    ],
)
def test_a_kind_matches_when_the_turn_moved_an_attempt_of_that_kind(
    wanted: dict[str, str | None], kinds: set[str], matches: bool
) -> None:
    assert _matches(wanted, {"saga"}, {"charge"}, kinds) is matches


def test_an_arming_for_another_kind_stays_armed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chaos = Chaos(tmp_path)
    monkeypatch.setenv("WFRAY_CHAOS_DIR", str(tmp_path))
    armed = chaos.arm(Moment.COORDINATOR_AFTER_COMMIT, workflow="saga", kind="compensation")

    reached(Moment.COORDINATOR_AFTER_COMMIT, workflows={"saga"}, steps={"x"}, kinds={"step"})
    reached(Moment.COORDINATOR_BEFORE_COMMIT, workflows={"saga"}, kinds={"compensation"})

    assert chaos.fired(armed) is None
    assert chaos.disarm(armed)  # still armed: nothing took it


def test_an_unknown_kind_is_refused_when_arming(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="kind is 'step' or 'compensation'"):
        Chaos(tmp_path).arm(Moment.STEP_STARTED, kind="undo")
