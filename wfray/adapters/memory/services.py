"""StepServices for an in-process Coordinator (tests without Ray).

Sync steps run in threads: each call is handed to the coordinator's event loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter

from wfray.application.arg_text import arg_text
from wfray.application.messages import RunView, SubmitRequest
from wfray.application.ports import BlobStore
from wfray.application.views import ChildStart, ChildStatus, ClaimView
from wfray.coordinator.collection import read_page
from wfray.domain.ids import new_run_id
from wfray.domain.records import AttemptKey, LogRecord
from wfray.sdk.definition import encode_input, resolve_workflow, subscribers
from wfray.sdk.events import unique_keys, validated_inputs

if TYPE_CHECKING:
    from wfray.coordinator.coordinator import Coordinator

CALL_TIMEOUT_S = 30.0


class InlineStepServices:
    """`blobs`: where the executors put large results, for `wait_runs` to read them back."""

    def __init__(self, blobs: BlobStore | None = None) -> None:
        self.blobs = blobs
        self.coordinator: Coordinator | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def bind(self, coordinator: Coordinator) -> None:
        self.coordinator = coordinator
        self.loop = asyncio.get_running_loop()

    def _c(self) -> tuple[Coordinator, asyncio.AbstractEventLoop]:
        if self.coordinator is None or self.loop is None:
            raise RuntimeError("InlineStepServices is not bound to a coordinator")
        return self.coordinator, self.loop

    def _call(self, coroutine: Any, timeout_s: float = CALL_TIMEOUT_S) -> Any:
        _, loop = self._c()
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout_s)

    def heartbeat(self, key: AttemptKey, progress_json: str | None) -> None:
        c, loop = self._c()
        loop.call_soon_threadsafe(c.heartbeat, [(key, progress_json)])

    def logs(self, lines: list[LogRecord]) -> bool:
        c, loop = self._c()
        # not waited for: the executor and the coordinator share this process and its fate,
        # and the loop that would commit them may be the one calling (an async step)
        asyncio.run_coroutine_threadsafe(c.append_logs(lines), loop)
        return True

    def next_value(self, counter: str) -> int:
        c, _ = self._c()
        value: int = self._call(c.next_value(counter))
        return value

    def claim(self, key: str, attempt: AttemptKey, ttl_s: float) -> ClaimView:
        c, _ = self._c()
        view: ClaimView = self._call(c.claims.claim(key, attempt, ttl_s))
        return view

    def finish_claim(self, key: str, attempt: AttemptKey, result_json: str) -> ClaimView:
        c, _ = self._c()
        view: ClaimView = self._call(c.claims.done(key, attempt, result_json))
        return view

    def claimed(self, key: str, asker: AttemptKey) -> ClaimView | None:
        c, _ = self._c()
        view: ClaimView | None = self._call(c.claims.read(key, asker))
        return view

    def item_results(
        self, run_id: str, step: str, start: int, limit: int
    ) -> list[tuple[int, str | None, str | None]]:
        c, _ = self._c()
        # read in the asking step's thread: through the loop it would wait for a thread of
        # the pool its own attempt may be holding (steps prepare there, see step_runner.py)
        return read_page(c.durable.store, run_id, step, start, limit)

    def publish(self, name: str, payload: Any, event_id: str) -> list[str]:
        c, _ = self._c()
        flows = subscribers(name)
        inputs = validated_inputs(name, payload, flows)
        keys = unique_keys(name, inputs, flows)
        payload_json = TypeAdapter(Any).dump_json(payload).decode()
        if flows:  # ours are known to wfray before it, as the Ray client makes sure
            self._call(c.register([flow.schema for flow in flows]))
        ids: list[str] = self._call(
            c.publish(name, payload_json, event_id, inputs=inputs, keys=keys)
        )
        return ids

    def start_runs(self, children: ChildStart) -> None:
        c, _ = self._c()
        flow = resolve_workflow(children.workflow)  # a Workflow, a name or a @wfray.task
        placement = children.placement
        requests = [
            SubmitRequest(
                run_id=run_id or new_run_id(),
                workflow=flow.name,
                version=flow.schema.version,
                input_json=(input_json := encode_input(flow, value)),
                unique_key=flow.unique_key(input_json),
                parent_run_id=children.parent_run_id,
                trigger="parent",
                trigger_id=children.trigger_id,
                queue=placement.queue,
                priority=placement.priority,
                concurrency_key=key,
            )
            for run_id, value, key in zip(
                children.run_ids, children.inputs, children.concurrency_keys(), strict=True
            )
        ]
        self._call(c.register([flow.schema]))
        self._call(c.submit(requests))

    def wait_runs(self, run_ids: Sequence[str], timeout_s: float) -> list[ChildStatus]:
        c, _ = self._c()
        views = self._call(c.wait(list(run_ids), timeout_s), timeout_s + CALL_TIMEOUT_S)
        return [ChildStatus(v.run_id, v.status.value, self._result(v), v.error) for v in views]

    def _result(self, view: RunView) -> Any:
        """A run's result, read back from the blob store if it went there (as on Ray)."""
        if view.result_json is not None:
            return TypeAdapter(Any).validate_json(view.result_json)
        if view.result_ref is not None:
            return TypeAdapter(Any).validate_json(arg_text(json.loads(view.result_ref), self.blobs))
        return None
