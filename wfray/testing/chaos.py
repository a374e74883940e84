"""Crash injection for your own test suite, on a local Ray: kill wfray's coordinator or the
worker running a named step at a named moment, then check that your workflow's side effects
happened the right number of times.

A moment is a hook point in wfray's code (wfray.application.moments): the process that
reaches an armed moment kills itself exactly there with SIGKILL, once per arming. No sleeps
decide when the crash happens. The moments:

- ``Moment.COORDINATOR_BEFORE_COMMIT``: the coordinator decided a turn, nothing is stored;
- ``Moment.COORDINATOR_AFTER_COMMIT``: stored, nothing sent to executors or answered yet;
- ``Moment.COORDINATOR_AFTER_DISPATCH``: an executor took the attempts of a step;
- ``Moment.STEP_STARTED``: a step's (or, with ``kind="compensation"``, its compensation's)
  function is about to run, in the process that runs it (a Ray worker for cpu steps, the io
  executor's actor for io steps);
- ``Moment.STEP_RETURNED``: the function returned, its outcome has not left that process:
  the side effect happened and wfray does not know it yet.

Usage (pytest)::

    chaos = Chaos(tmp_path)
    os.environ.update(chaos.env)          # before ray.init(): Ray's processes inherit it
    ray.init(address="local")
    client = wfray.connect()              # or wfray.start(...) as your tests do
    arming = chaos.arm(Moment.STEP_RETURNED, workflow="billing", step="charge")
    run = client.submit(billing, {...})
    chaos.wait_fired(arming)              # the worker died right after charging
    run.result(timeout=60)                # wfray retried the step
    assert chaos.count("charge:order-1") == 2     # at least once: your step must dedupe

Steps record their side effects with ``record_effect(name)`` (a line appended to a file in
the chaos folder, safe across processes), so a test can count them after the crash.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wfray.application.moments import ARMED, CHAOS_DIR_ENV, FIRED, Moment
from wfray.domain.errors import WaitTimeoutError

__all__ = ["Arming", "Chaos", "Moment", "record_effect"]

EFFECTS = "effects.log"


@dataclass(frozen=True, slots=True)
class Arming:
    moment: Moment
    id: str
    workflow: str | None
    step: str | None
    kind: str | None

    @property
    def stem(self) -> str:
        return f"{self.moment.value}.{self.id}"


class Chaos:
    """Arms moments in one folder; every process started with ``env`` obeys them."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    @property
    def env(self) -> dict[str, str]:
        """The environment Ray's processes need (os.environ before ray.init, or a job's
        runtime_env env_vars)."""
        return {CHAOS_DIR_ENV: str(self.folder)}

    def arm(
        self,
        moment: Moment,
        *,
        workflow: str | None = None,
        step: str | None = None,
        kind: str | None = None,
    ) -> Arming:
        """Kill the next process that reaches `moment` for this workflow and step (None:
        any); `kind` tells a step ("step") from its compensation ("compensation")."""
        if kind not in (None, "step", "compensation"):
            raise ValueError(f"kind is 'step' or 'compensation' (or None: both), got {kind!r}")
        arming = Arming(Moment(moment), uuid.uuid4().hex, workflow, step, kind)
        spec = {"workflow": workflow, "step": step, "kind": kind}
        draft = self.folder / f".{arming.stem}.draft"
        draft.write_text(json.dumps(spec), encoding="utf-8")
        os.replace(draft, self.folder / f"{arming.stem}{ARMED}")  # seen whole or not at all
        return arming

    def disarm(self, arming: Arming) -> bool:
        """Take back an arming that has not fired; False if it fired already."""
        try:
            (self.folder / f"{arming.stem}{ARMED}").unlink()
        except FileNotFoundError:
            return False
        return True

    def fired(self, arming: Arming) -> dict[str, Any] | None:
        """What the killed process noted (its pid among it), or None while armed."""
        path = self.folder / f"{arming.stem}{FIRED}"
        try:
            found: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None
        return found if "pid" in found else None

    def wait_fired(self, arming: Arming, timeout_s: float = 60) -> int:
        """Wait until the armed moment killed a process; returns its pid."""
        deadline = time.monotonic() + timeout_s
        while (found := self.fired(arming)) is None:
            if time.monotonic() > deadline:
                raise WaitTimeoutError(
                    f"{arming.moment.value} (workflow={arming.workflow!r}, step="
                    f"{arming.step!r}, kind={arming.kind!r}) was not reached within "
                    f"{timeout_s:g}s; are Ray's processes started with Chaos.env?"
                )
            time.sleep(0.02)  # a file another process writes: polled, with a deadline
        return int(found["pid"])

    def effects(self) -> Counter[str]:
        """How often steps recorded each side effect (record_effect)."""
        path = self.folder / EFFECTS
        return Counter(path.read_text(encoding="utf-8").splitlines() if path.exists() else [])

    def count(self, effect: str) -> int:
        return self.effects()[effect]


def record_effect(name: str) -> None:
    """From a step: note that a side effect happened (one line, appended atomically)."""
    folder = os.environ.get(CHAOS_DIR_ENV)
    if not folder:
        raise RuntimeError(f"record_effect needs {CHAOS_DIR_ENV}: start Ray with Chaos.env")
    if "\n" in name or "\x00" in name:
        raise ValueError("an effect's name is one line of text")
    line = (name + "\n").encode("utf-8")
    fd = os.open(Path(folder) / EFFECTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
