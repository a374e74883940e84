"""How the client reaches a coordinator: one command at a time, with its answer back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from wfray.application.client_commands import Command, R


class Transport(Protocol):
    def call(
        self,
        command: Command[R],
        *,
        timeout_s: float = ...,
        before_resend: Callable[[], None] | None = ...,
    ) -> R:
        """The coordinator's answer to `command`, riding out its restarts until `timeout_s`
        has passed; `before_resend` runs before a command is sent again (its first sending
        may have been carried out though its answer was lost)."""
        ...
