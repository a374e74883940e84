"""A run of the local wfray as a test sees it: the same calls as `wfray.RunHandle`."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from wfray.application.messages import RunView
from wfray.client.handle import RunCalls, RunHandle
from wfray.domain.errors import WaitTimeoutError
from wfray.sdk.definition import Workflow

if TYPE_CHECKING:
    from wfray.testing.engine import Quiet


class LocalRunCalls(RunCalls, Protocol):
    """What a local run's handle asks of the local wfray that made it (LocalWfray is one)."""

    def result_of(self, run_id: str, flow: Workflow | None, timeout: float = ...) -> Any: ...


class LocalRunHandle(RunHandle):
    """One run: its status, its result, its history (wfray.RunHandle's calls), waiting on
    the fake clock's terms."""

    client: LocalRunCalls

    def __init__(self, client: LocalRunCalls, run_id: str, flow: Workflow | None) -> None:
        super().__init__(client, run_id, flow)

    def __repr__(self) -> str:
        return f"LocalRunHandle({self.run_id!r})"

    def result(self, timeout: float = 60.0) -> Any:
        """The run's result. Raises RunFailedError if the run failed, WaitTimeoutError if it
        is still going: at once when nothing can happen until the fake clock moves, else
        after `timeout` seconds of real time."""
        return self.client.result_of(self.run_id, self.flow, timeout)


def unfinished(view: RunView, quiet: Quiet, timeout: float, now: datetime) -> WaitTimeoutError:
    """Why a run is not finished yet, and what would move it on."""
    still = f"run {view.run_id} is still {view.status.value}"
    if not quiet.idle:
        busy = "; ".join(quiet.busy) or "the engine was still busy"
        return WaitTimeoutError(f"{still} after {timeout:g}s of real time: {busy}")
    if quiet.next_due is None:
        return WaitTimeoutError(
            f"{still}, and nothing is due at any time: no retry, timer, deadline or schedule "
            "will move it on (does a step wait for something outside wfray?)"
        )
    return WaitTimeoutError(
        f"{still}, and nothing happens until the fake clock moves: the next thing is due "
        f"at {quiet.next_due.isoformat()} ({quiet.next_due - now} from now); call "
        "clock.advance(...) first"
    )
