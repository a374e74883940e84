"""Tells the Ray autoscaler what the backlog needs, beside the coordinator in its actor.

Every few seconds the queued and running tasks become a list of resource bundles
(`wfray.coordinator.scaling`), handed to `ray.autoscaler.sdk.request_resources` only when it
changed. The request is persistent in Ray until replaced, so a drained backlog sends an
empty list, which releases it and lets idle nodes time out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from wfray.config import Settings
from wfray.coordinator.coordinator import Coordinator
from wfray.coordinator.scaling import Bundle, count_backlog, demand

log = logging.getLogger("wfray.autoscale")

Request = Callable[[list[Bundle]], None]


def max_bundles(settings: Settings) -> dict[str, int]:
    """The cap per pool; a pool capped at 0 asks for nothing. An io attempt holds no slot of
    its own (its executor holds one), so io slots beyond one per io executor would bring up
    nodes that nothing runs on."""
    return {
        "cpu": settings.autoscale_max_cpu_bundles,
        "io": min(settings.autoscale_max_io_bundles, settings.io_executors),
    }


def enabled(settings: Settings) -> bool:
    return any(cap > 0 for cap in max_bundles(settings).values())


def ray_request(bundles: list[Bundle]) -> None:
    from ray.autoscaler.sdk import request_resources

    request_resources(bundles=bundles)


class BacklogScaler:
    """Turns the coordinator's backlog into resource requests, only when they change."""

    def __init__(
        self, coordinator: Coordinator, caps: dict[str, int], request: Request = ray_request
    ) -> None:
        self.coordinator = coordinator
        self.caps = caps
        self.request = request
        self.requested: list[Bundle] | None = None  # None: nothing sent yet by this process

    async def step(self) -> bool:
        """Send the demand if it changed; True when a request was sent.

        The first step always sends, so a restarted coordinator replaces whatever its
        predecessor had asked for.
        """
        wanted = demand(count_backlog(self.coordinator.state.runs.values()), self.caps)
        if wanted == self.requested:
            return False
        await asyncio.to_thread(self.request, wanted)
        log.info("requested %d bundles from the autoscaler", len(wanted))
        self.requested = wanted
        return True

    async def run_forever(self, interval_s: float) -> None:
        """Step every `interval_s`; a failed request (GCS busy) is retried on the next turn."""
        while True:
            try:
                await self.step()
            except Exception as exc:
                log.warning("resource request failed, retrying in %.1fs: %s", interval_s, exc)
            await asyncio.sleep(interval_s)
