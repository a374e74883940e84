"""Tasks the API attack tests run; a module of its own so Ray workers and the API's replica
import it by path (WFRAY_MODULES)."""

from __future__ import annotations

import time
from pathlib import Path

from wfray.sdk.context import StepContext
from wfray.sdk.tasks import task


@task(pool="io")
def shout(ctx: StepContext, lines: int = 3, long_chars: int = 0) -> int:
    """Logs `lines` numbered lines, then one line of `long_chars` characters if asked."""
    for i in range(lines):
        ctx.logger.info("line %d", i)
    if long_chars:
        ctx.logger.info("x" * long_chars)
    return lines


@task(pool="io")
def held(ctx: StepContext, gate: str) -> str:
    """Logs a line, then runs until the test creates `gate`/open (at most a minute)."""
    ctx.logger.info("waiting at the gate")
    deadline = time.monotonic() + 60
    while not Path(gate, "open").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return "through"
