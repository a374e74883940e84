"""Moments: named points in the engine where a test may have the process killed, exactly
there, to prove what a crash at that point does (wfray.testing.chaos arms them).

A moment is armed by a file in the folder named by WFRAY_CHAOS_DIR: `<moment>.<id>.armed`,
holding which workflow, step and kind of attempt it waits for. The first process to reach a
matching moment takes the file (an atomic rename to `.fired`, so one arming kills once),
notes its pid in it and kills itself with SIGKILL: no cleanup, no flush, as a crash. Without
WFRAY_CHAOS_DIR a moment costs one environment lookup.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Collection
from enum import StrEnum
from pathlib import Path

CHAOS_DIR_ENV = "WFRAY_CHAOS_DIR"
ARMED = ".armed"
FIRED = ".fired"


class Moment(StrEnum):
    COORDINATOR_BEFORE_COMMIT = "coordinator.before_commit"  # a turn decided, nothing stored
    COORDINATOR_AFTER_COMMIT = "coordinator.after_commit"  # stored, nothing sent or answered
    COORDINATOR_AFTER_DISPATCH = "coordinator.after_dispatch"  # an executor took the attempts
    STEP_STARTED = "step.started"  # a step's (or compensation's) function is about to run
    STEP_RETURNED = "step.returned"  # it returned; its outcome has not left the worker


def reached(
    moment: Moment,
    *,
    workflows: Collection[str] = (),
    steps: Collection[str] = (),
    kinds: Collection[str] = (),
) -> None:
    """Die here if a test armed this moment for one of these workflows, steps and kinds
    ("step", "compensation")."""
    root = os.environ.get(CHAOS_DIR_ENV)
    if root:
        _fire_if_armed(Path(root), moment, workflows, steps, kinds)


def _fire_if_armed(
    root: Path,
    moment: Moment,
    workflows: Collection[str],
    steps: Collection[str],
    kinds: Collection[str],
) -> None:
    prefix = f"{moment.value}."
    try:
        names = [n for n in os.listdir(root) if n.startswith(prefix) and n.endswith(ARMED)]
    except OSError:
        return
    for name in sorted(names):
        armed = root / name
        try:
            wanted = json.loads(armed.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # taken meanwhile, or still being written
        if not _matches(wanted, workflows, steps, kinds):
            continue
        fired = armed.with_name(name[: -len(ARMED)] + FIRED)
        try:
            os.rename(armed, fired)  # one process wins the arming
        except OSError:
            continue
        with contextlib.suppress(OSError):
            fired.write_text(json.dumps({**wanted, "pid": os.getpid()}), encoding="utf-8")
        os.kill(os.getpid(), signal.SIGKILL)


def _matches(
    wanted: dict[str, str | None],
    workflows: Collection[str],
    steps: Collection[str],
    kinds: Collection[str],
) -> bool:
    workflow, step, of_kind = wanted.get("workflow"), wanted.get("step"), wanted.get("kind")
    return (
        (workflow is None or workflow in workflows)
        and (step is None or step in steps)
        and (of_kind is None or of_kind in kinds)
    )
