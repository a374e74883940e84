"""The client's line to the coordinator actor: found by name, sent one command per call (its
`handle` method answers them all), retried while it restarts, its own errors raised without
Ray's frames."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import ray
from ray import exceptions as rex

from wfray.adapters.ray.host import COORDINATOR_NAME
from wfray.adapters.ray.versions import check_actor
from wfray.application.client_commands import Command, R
from wfray.config import Settings
from wfray.domain.errors import CoordinatorUnavailableError, WaitTimeoutError, WfrayError

RETRYABLE = (rex.ActorUnavailableError, rex.ActorDiedError, rex.GetTimeoutError)


class CoordinatorLink:
    def __init__(self, settings: Settings, handle: Any = None, trusted: bool = False) -> None:
        self.settings = settings
        self._handle = handle
        # skip the versions check: for the processes running steps, whose executor the
        # coordinator checked before it dispatched a step there (a blocking call inside an
        # io executor's event loop, and a round trip, saved)
        self.trusted = trusted
        self._checked = False  # the handle's versions are this process's (versions.py)

    def forget(self) -> None:
        """The actor was stopped: look it up again on the next call."""
        self._handle = None
        self._checked = False

    @property
    def handle(self) -> Any:
        """The coordinator's handle, found by name if need be and checked to run this wfray
        before its first use (VersionMismatchError otherwise)."""
        if self._handle is None:
            self._handle = ray.get_actor(COORDINATOR_NAME, namespace=self.settings.namespace)
            self._checked = False
        if not (self._checked or self.trusted):
            who = f"the coordinator in Ray namespace {self.settings.namespace!r}"
            check_actor(self._handle, who, "this client")
            self._checked = True
        return self._handle

    def call(
        self,
        command: Command[R],
        *,
        timeout_s: float = 60.0,
        before_resend: Callable[[], None] | None = None,
    ) -> R:
        """Send the coordinator a command, riding out its restarts until `timeout_s` has passed.

        `before_resend` runs before the call is sent again (the first send may have been
        carried out even though its answer was lost).
        """
        asked = type(command).__name__
        deadline = time.monotonic() + timeout_s
        delay = 0.05
        sent = False
        while True:
            left = deadline - time.monotonic()
            try:
                if sent and before_resend is not None:
                    before_resend()
                sent = True
                ref = self.handle.handle.remote(command)
                answer: R = ray.get(ref, timeout=max(0.1, left))
                return answer
            except rex.RayTaskError as exc:
                if isinstance(exc.cause, WfrayError):
                    raise exc.cause from None  # the coordinator's own error, without Ray's frames
                raise
            except RETRYABLE as exc:
                if time.monotonic() + delay >= deadline:
                    raise WaitTimeoutError(
                        f"the coordinator did not answer {asked} within {timeout_s}s: {exc}"
                    ) from exc
                if isinstance(exc, rex.ActorDiedError):
                    # stopped for good (`wfray upgrade` replaces it): a successor may take
                    # its name, and only a lookup by name finds it
                    self.forget()
            except ValueError as exc:  # the named actor is gone: look it up again
                if time.monotonic() + delay >= deadline:
                    raise CoordinatorUnavailableError(
                        f"no wfray coordinator in Ray namespace {self.settings.namespace!r} "
                        f"answered {asked} within {timeout_s}s ({exc}); start it with "
                        "`wfray start` or `wfray.connect()`"
                    ) from None
                self.forget()
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
