"""StepServices on Ray: a running step talks to the coordinator actor by name."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import ray

from wfray.application.client_commands import (
    AppendLogs,
    Claim,
    FinishClaim,
    ReadClaim,
    ReadItemResults,
)
from wfray.application.views import ChildStart, ChildStatus, ClaimView
from wfray.application.wire import Sealed
from wfray.config import load_settings
from wfray.domain.records import AttemptKey, LogRecord

if TYPE_CHECKING:
    from wfray.adapters.ray.client import RayClient

log = logging.getLogger("wfray.step")


class RayStepServices:
    def __init__(self, namespace: str, blob_root: str | None) -> None:
        self.namespace = namespace
        self.blob_root = blob_root
        self._client: RayClient | None = None

    @property
    def client(self) -> RayClient:
        if self._client is None:
            from wfray.adapters.ray.client import RayClient

            settings = load_settings(namespace=self.namespace, blob_root=self.blob_root)
            self._client = RayClient(settings, trusted=True)  # see CoordinatorLink.trusted
        return self._client

    def heartbeat(self, key: AttemptKey, progress_json: str | None) -> None:
        # Fire and forget: a heartbeat lost to a coordinator restart is followed by the
        # next one, and the watch restarts with a full window after a restart anyway.
        try:
            self.client.handle.heartbeat.remote([(key, progress_json)])
        except (ValueError, ray.exceptions.RayError) as exc:
            self.client.link.forget()  # look the coordinator up again next time
            log.warning("heartbeat not delivered: %s", exc)

    def report(self, pool: str, outcome: Sealed) -> None:
        """Fire and forget: the executor holds the durable copy of the outcome."""
        try:
            self.client.handle.report.remote(pool, outcome)
        except (ValueError, ray.exceptions.RayError) as exc:
            self.client.link.forget()
            log.debug("outcome not reported directly: %s", exc)

    def logs(self, lines: list[LogRecord]) -> bool:
        try:
            # answered once committed: a coordinator that dies first leaves them with us
            sent = self.client.handle.handle.remote(AppendLogs(lines))
            committed: bool = ray.get(sent, timeout=30)
            return committed
        except (ValueError, ray.exceptions.RayError) as exc:
            self.client.link.forget()
            log.warning("%d log lines not delivered yet: %s", len(lines), exc)
            return False

    def next_value(self, counter: str) -> int:
        value: int = self.client.next_value(counter)
        return value

    def claim(self, key: str, attempt: AttemptKey, ttl_s: float) -> ClaimView:
        # answered once committed; a resend after a lost answer gets the claim back
        return self.client.call(Claim(key, attempt, ttl_s))

    def finish_claim(self, key: str, attempt: AttemptKey, result_json: str) -> ClaimView:
        return self.client.call(FinishClaim(key, attempt, result_json))

    def claimed(self, key: str, asker: AttemptKey) -> ClaimView | None:
        return self.client.call(ReadClaim(key, asker))

    def item_results(
        self, run_id: str, step: str, start: int, limit: int
    ) -> list[tuple[int, str | None, str | None]]:
        return self.client.call(ReadItemResults(run_id, step, start, limit))

    def publish(self, name: str, payload: Any, event_id: str) -> list[str]:
        ids: list[str] = self.client.publish(name, payload, id=event_id)
        return ids

    def start_runs(self, children: ChildStart) -> None:
        if children.inputs:
            self.client.submit_many(
                children.workflow,
                children.inputs,
                run_ids=children.run_ids,
                parent_run_id=children.parent_run_id,
                trigger="parent",
                trigger_id=children.trigger_id,
                queue=children.placement.queue,
                priority=children.placement.priority,
                concurrency_keys=children.placement.concurrency_keys,
            )

    def wait_runs(self, run_ids: Sequence[str], timeout_s: float) -> list[ChildStatus]:
        views = self.client.wait(run_ids, timeout=timeout_s)
        statuses = []
        for view in views:
            result = self.client.decode(view, None) if view.status.value == "completed" else None
            statuses.append(ChildStatus(view.run_id, view.status.value, result, view.error))
        return statuses
